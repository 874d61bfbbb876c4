"""Scheduled notebook runs from ``pipelines/schedules.yaml``.

Policy on misfires (the scheduler was down when runs were due): **coalesce**. At start-up, a job
whose most recent due time passed without a recorded run, and is no older than the job's
``misfire_grace`` (default 1h), runs once right away; older misses are skipped, and never replayed
one by one. A job never overlaps itself: if it is still running when due again, that occurrence is
recorded as ``skipped``. Each run is a child process (``kstream-lab schedule once JOB``), so a
crashing notebook or kernel cannot take the scheduler down.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError
from kstream_lab.notebooks import runlog
from kstream_lab.settings import Settings


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    cron: str
    notebook: str
    parameters: dict[str, object] = Field(default_factory=dict)
    timeout_s: int = Field(default=600, gt=0)
    misfire_grace_s: int = Field(default=3600, ge=0, alias="misfire_grace")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r} (5 fields, or 6 with seconds last)")
        return value

    @field_validator("misfire_grace_s", mode="before")
    @classmethod
    def _grace(cls, value: object) -> object:
        return parse_duration_ms(value) // 1000 if isinstance(value, str) else value

    def next_after(self, ts: float) -> float:
        return croniter(self.cron, datetime.fromtimestamp(ts, UTC)).get_next(float)

    def prev_before(self, ts: float) -> float:
        return croniter(self.cron, datetime.fromtimestamp(ts, UTC)).get_prev(float)


class Schedules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    jobs: dict[str, Job]


def load_schedules(path: Path) -> Schedules:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read schedules file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    for name, body in (data.get("jobs") or {}).items():
        if isinstance(body, dict):
            body.setdefault("name", name)
    try:
        return Schedules.model_validate(data)
    except ValidationError as exc:
        msgs = [
            f"{path}: {'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError("; ".join(msgs)) from None


def job(schedules: Schedules, name: str) -> Job:
    try:
        return schedules.jobs[name]
    except KeyError:
        raise ConfigError(f"no job {name!r}", hint=f"jobs: {', '.join(schedules.jobs)}") from None


def run_job(settings: Settings, j: Job) -> runlog.RunRecord:
    """Run one job now, in this process (what `schedule once` and each scheduler child do)."""
    from kstream_lab.notebooks.runner import run_notebook

    return run_notebook(settings, j.notebook, dict(j.parameters), job=j.name, timeout_s=j.timeout_s)


@dataclass
class Scheduler:
    """Runs due jobs as child processes; coalesces misfires; never overlaps a job with itself."""

    settings: Settings
    schedules: Schedules
    schedules_file: Path
    running: dict[str, subprocess.Popen] = field(default_factory=dict)
    next_due: dict[str, float] = field(default_factory=dict)

    def start(self, now: float) -> list[str]:
        """Plan next due times; return the jobs to run now because of a misfire within grace."""
        catch_up = []
        for name, j in self.schedules.jobs.items():
            due = j.prev_before(now)
            last = runlog.last_started(self.settings, name)
            if last is not None and last < due and now - due <= j.misfire_grace_s:
                catch_up.append(name)
            self.next_due[name] = j.next_after(now)
        return catch_up

    def tick(self, now: float) -> list[str]:
        """Reap finished children, launch jobs that are due; return the launched names."""
        for name, proc in list(self.running.items()):
            if proc.poll() is not None:
                del self.running[name]
        launched = []
        for name, due in sorted(self.next_due.items(), key=lambda kv: kv[1]):
            if due <= now:
                self.next_due[name] = self.schedules.jobs[name].next_after(now)
                if self.launch(name):
                    launched.append(name)
        return launched

    def launch(self, name: str) -> bool:
        if name in self.running:
            self._record_skip(name)
            return False
        cmd = [sys.executable, "-m", "kstream_lab", "schedule", "once", name, "--file", str(self.schedules_file)]
        self.running[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        return True

    def _record_skip(self, name: str) -> None:
        j = self.schedules.jobs[name]
        now = time.time()
        runlog.save(
            self.settings,
            runlog.RunRecord(
                run_id=f"skip-{uuid.uuid4().hex[:10]}",
                notebook=j.notebook,
                parameters=dict(j.parameters),
                started_at=now,
                status="skipped",
                job=name,
                duration_s=0.0,
                error="previous run of this job still running",
            ),
        )

    def run(self, *, duration_s: float | None = None, poll_s: float = 0.5) -> None:
        """Loop until interrupted (or for ``duration_s``), then wait for running children."""
        start = time.time()
        for name in self.start(start):
            self.launch(name)
        try:
            while duration_s is None or time.time() - start < duration_s:
                self.tick(time.time())
                time.sleep(poll_s)
        finally:
            for proc in self.running.values():
                proc.wait()
