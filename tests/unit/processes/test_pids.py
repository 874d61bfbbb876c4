"""Pid files, liveness and the polite stop that every background process of kstream_lab goes through."""

import os
import socket
import subprocess
import sys
import time

from kstream_lab.processes import pid_alive, port_free, read_pid, started_at, terminate, write_pid


def test_terminate_polite_and_forced(tmp_path):
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "p.pid"
    pid_file.write_text(f"{polite.pid}\n")
    assert read_pid(pid_file) == polite.pid
    assert terminate(polite.pid, timeout=10) is True
    assert not pid_alive(polite.pid) and read_pid(pid_file) is None
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout.readline() == b"ready\n"
    assert terminate(stubborn.pid, timeout=0.5) is False
    assert not pid_alive(stubborn.pid)


def test_port_free_and_bad_pid_files(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert port_free(s.getsockname()[1]) is False
    assert read_pid(tmp_path / "missing.pid") is None
    (tmp_path / "junk.pid").write_text("not a pid")
    assert read_pid(tmp_path / "junk.pid") is None


def test_a_pid_file_older_than_its_process_is_stale(tmp_path):
    """The kernel reuses pids: a live process that started after the pid file was written is not the
    one the file names, so neither status nor stop may take it for that."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / "reused.pid"
        write_pid(pid_file, child.pid)
        assert read_pid(pid_file) == child.pid
        started = started_at(child.pid)
        assert started is not None and abs(started - time.time()) < 10
        os.utime(pid_file, (time.time() - 3600, time.time() - 3600))  # written an hour before it started
        assert read_pid(pid_file) is None
    finally:
        child.kill()
        child.wait()
