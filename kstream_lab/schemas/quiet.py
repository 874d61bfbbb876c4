"""Keep Rust panic reports of the bulk readers off stderr; let everything else through.

Polars' Avro reader panics on some corrupt blocks instead of returning an error. The bulk decoders
catch the panic and fall back to record-by-record decoding, so nothing is lost -- but Rust's panic
hook has already written ``thread '<unnamed>' panicked at ...`` (and, with RUST_BACKTRACE set, a
whole backtrace) to the process's stderr, which in a notebook looks like a crash. Python cannot
replace Rust's panic hook, so while a bulk read runs, file descriptor 2 points at a temporary file;
afterwards, every line that is not part of a panic report is written back to the real stderr, in
order. Threads share one redirection (reference-counted under a lock), so concurrent reads nest.

The cost: other threads' stderr output during a read (a few milliseconds) arrives when it ends,
and a hard crash inside the read (a segfault) would leave its report in the deleted temporary
file. faulthandler set up on a duplicate of stderr (as pytest does) is not affected.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_PANIC_START = re.compile(rb"^thread '.*' .*panicked at ")

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_sink = None


def strip_panic_reports(text: bytes) -> bytes:
    """``text`` without Rust panic reports.

    A report is the "thread '...' panicked at FILE:LINE:COL:" line, the one-line message after it,
    then any of: a "stack backtrace:" line, indented frame lines, "note: ..." lines, blank lines.
    A blank line right before a report belongs to it too. Everything else is kept as it was.
    """
    out: list[bytes] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _PANIC_START.match(line):
            out.append(line)
            i += 1
            continue
        if out and not out[-1].strip():
            out.pop()
        i += 2  # the "panicked at" line and its message
        while i < len(lines) and (
            not lines[i].strip()
            or lines[i][:1] in (b" ", b"\t")
            or lines[i].startswith((b"stack backtrace:", b"note: "))
        ):
            i += 1
    return b"".join(out)


@contextmanager
def rust_panics_muted() -> Iterator[None]:
    """Within the block, Rust panic reports written to fd 2 are dropped; other output is kept.

    Where fd 2 cannot be redirected (closed, no temporary directory) the block just runs unmuted:
    a noisy report is better than failing the read it would have muted.
    """
    global _depth
    with _lock:
        if _depth == 0 and not _redirect():
            muted = False
        else:
            _depth += 1
            muted = True
    try:
        yield
    finally:
        if muted:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _restore()


def _redirect() -> bool:
    global _saved_fd, _sink
    for stream in (sys.stderr, sys.__stderr__):
        with suppress(AttributeError, OSError, ValueError):  # closed or detached
            if stream is not None:
                stream.flush()
    try:
        sink = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by _restore, after the last reader leaves
    except OSError:
        return False
    if sink.fileno() <= 2:  # it took a standard descriptor's number: fd 2 was closed, nothing to mute
        sink.close()
        return False
    try:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
    except OSError:
        sink.close()
        return False
    _saved_fd, _sink = saved, sink
    return True


def _restore() -> None:
    global _saved_fd, _sink
    assert _saved_fd is not None and _sink is not None
    os.dup2(_saved_fd, 2)
    os.close(_saved_fd)
    _sink.seek(0)
    kept = strip_panic_reports(_sink.read())
    _sink.close()
    _saved_fd, _sink = None, None
    with suppress(OSError):  # the original stderr went away meanwhile: nothing to write to
        while kept:
            kept = kept[os.write(2, kept) :]
