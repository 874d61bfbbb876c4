"""`pipeline watch` without a broker: which components count as dead, the back-off between restarts,
and `down` removing the pid file before it stops a process (so a watch never restarts it)."""

from __future__ import annotations

import re
import subprocess
import threading

from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.settings import Settings
from kstream_lab.workers import supervisor as sv
from tests.support.paths import ROOT


def make(tmp_path) -> sv.Supervisor:
    sup = sv.Supervisor(Settings(data_dir=tmp_path), load_pipeline(ROOT / "pipelines" / "orders.yaml"))
    (sup.home / "pids").mkdir(parents=True)
    (sup.home / "logs").mkdir(parents=True)
    return sup


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_component_whose_process_is_gone_without_down_is_dead(tmp_path):
    sup = make(tmp_path)
    alive = subprocess.Popen(["sleep", "30"])
    try:
        sup.pid_file("enricher").write_text(f"{dead_pid()}\n")
        sup.pid_file("sink").write_text(f"{alive.pid}\n")
        assert sup.died() == ["enricher"]  # no pid file at all (never started, or `down`): not dead
        assert sup.down(timeout=5) == {
            "sink": "stopped",
            "aggregator": "not running",
            "enricher": "not running",
            "order-service": "not running",
            "customer-service": "not running",
        }
        assert sup.died() == [] and not sup.pid_file("sink").exists()
    finally:
        alive.kill()
        alive.wait()


def test_a_component_that_keeps_dying_is_restarted_with_a_doubling_back_off(tmp_path, monkeypatch):
    monkeypatch.setattr(sv, "RESTART_S", 0.02)
    monkeypatch.setattr(sv, "RESTART_MAX_S", 0.08)
    sup = make(tmp_path)
    sup.log_file("aggregator").write_text("starting\nfatal: fenced by a newer instance\n")
    sup.pid_file("aggregator").write_text(f"{dead_pid()}\n")
    spawns: list[int] = []

    def spawn(name):  # every restart dies at once
        spawns.append(1)
        sup.pid_file(name).write_text(f"{dead_pid()}\n")

    monkeypatch.setattr(sup, "_spawn", spawn)
    monkeypatch.setattr(sup, "_wait_ready", lambda name, proc, timeout: None)
    reports: list[str] = []
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    sup.watch(stop, interval=0.005, report=reports.append)
    delays = [float(d) for d in re.findall(r"restarting in ([\d.]+)s", "\n".join(reports))]
    assert delays[:5] == [0.02, 0.04, 0.08, 0.08, 0.08] and len(spawns) in (len(delays), len(delays) - 1)
    assert reports[0] == "aggregator exited (fatal: fenced by a newer instance); restarting in 0.02s"
    assert "aggregator restarted (pid None)" in reports  # pid None: the fake restart died at once
