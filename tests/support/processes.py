"""Subprocesses the tests run: one ``kstream-lab`` command as a user types it, and stopping a started process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import ROOT


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    stdin: str | None = None,
    inherit_kstream: bool = True,
) -> subprocess.CompletedProcess:
    """``kstream-lab ARGS`` from the repository root with this interpreter (so the tree under test).

    ``env`` is laid over the test's own environment (without its ``KSTREAM_*`` variables unless
    ``inherit_kstream``: the session exports the plaintext broker's); stdout and stderr come back as text.
    """
    base = {k: v for k, v in os.environ.items() if inherit_kstream or not k.startswith("KSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "kstream_lab", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        cwd=ROOT,
        timeout=timeout,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL when it has not exited after ``timeout`` s: a test's process never outlives it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
