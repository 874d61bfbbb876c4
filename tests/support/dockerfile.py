"""The Dockerfile read as data, so the tests check and replay the image's steps rather than a copy of them.

No container runtime or base image can be fetched on these machines: the unit test checks the image's
structure, and the wheel-install test performs its install steps in a fresh venv, with the runtime
stage's environment (its paths mapped into the test's directories) and its entrypoint.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_VENV = "/opt/kstream-lab"  # the venv, at the same path in both stages
IMAGE_HOME = "/var/lib/kstream-lab"  # the non-root user's home and writable state


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str


def stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """Instructions per stage (each starts with its FROM); continuation lines joined, comments dropped."""
    out: list[list[Instruction]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            out.append([])
        out[-1].append(Instruction(keyword.upper(), args.strip()))
    return out


def env(stage: list[Instruction]) -> dict[str, str]:
    """The stage's ENV as it ends up (later ENV lines win; ``$NAME`` left for the caller)."""
    out: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            out.update(token.split("=", 1) for token in shlex.split(ins.args))  # type: ignore[arg-type]
    return out


def exec_form(stage: list[Instruction], keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD of a stage, in exec (JSON) form."""
    (last, *_) = [ins for ins in reversed(stage) if ins.keyword == keyword]
    return json.loads(last.args)


def mapped_env(venv: Path, home: Path, stage: int = -1) -> dict[str, str]:
    """A stage's ENV (default: the runtime's) with the image's paths mapped to ``venv`` and ``home``;
    ``$PATH`` expands to this process's PATH."""
    mapped = {}
    for key, value in env(stages()[stage]).items():
        value = value.replace(IMAGE_VENV, str(venv)).replace(IMAGE_HOME, str(home))
        mapped[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return mapped
