"""Rust panic reports of the bulk readers stay off stderr; other output written meanwhile is kept."""

from __future__ import annotations

import os
import random
import threading

from kstream_lab.schemas.avro import StaticSchemas
from kstream_lab.schemas.bulk import decode_avro_batch
from kstream_lab.schemas.quiet import rust_panics_muted, strip_panic_reports
from tests.support.avro import ORDER, encode, orders

SHORT = (
    b"\nthread '<unnamed>' (17963) panicked at crates/polars-arrow/src/io/avro/read/deserialize.rs:276:61:\n"
    b"range end index 5505 out of range for slice of length 2344\n"
    b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
)
FULL = (
    b"\nthread '<unnamed>' (17963) panicked at crates/polars-arrow/src/io/avro/read/deserialize.rs:276:61:\n"
    b"range end index 3140 out of range for slice of length 215\nstack backtrace:\n"
    b"   0: __rustc::rust_begin_unwind\n             at /rustc/library/std/src/panicking.rs:689:5\n"
    b"  33: _start\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n"
)


def test_panic_reports_are_cut_out_and_everything_else_kept_in_order() -> None:
    text = b"before\n" + SHORT + b"WARNING something else\n" + FULL + b"after\n"
    assert strip_panic_reports(text) == b"before\nWARNING something else\nafter\n"
    assert strip_panic_reports(b"no panic here\n\nat all\n") == b"no panic here\n\nat all\n"


def test_corrupt_avro_is_dead_lettered_without_a_panic_on_stderr(capfd) -> None:
    recs = orders(3000)
    values = [encode(ORDER, r, 3) for r in recs]
    rnd = random.Random(1)
    bad = list(range(0, 3000, 300))
    for i in bad:  # a valid frame, then garbage: polars' reader panics on some of these
        values[i] = values[i][:5] + bytes(rnd.randrange(256) for _ in range(40))
    batch = decode_avro_batch(values, StaticSchemas({3: ORDER}))
    assert sorted(f.index for f in batch.failures) == bad
    assert batch.frame.height == 3000 - len(bad)
    assert "panicked" not in capfd.readouterr().err


def test_other_output_written_while_muted_comes_through(capfd) -> None:
    before = os.fstat(2)
    with rust_panics_muted():
        os.write(2, b"a line from elsewhere\n")
        os.write(2, SHORT)
        with rust_panics_muted():  # nested (another thread's read): one redirection
            os.write(2, b"second line\n")
    assert capfd.readouterr().err == "a line from elsewhere\nsecond line\n"
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # fd 2 is back where it was


def test_threads_share_the_redirection_and_restore_it_once(capfd) -> None:
    before = os.fstat(2)
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        with rust_panics_muted():
            barrier.wait()
            os.write(2, b"thread %d\n" % n)
            os.write(2, FULL)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(capfd.readouterr().err.splitlines()) == [f"thread {n}" for n in range(4)]
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_without_a_stderr_to_redirect_the_read_still_runs() -> None:
    saved = os.dup(2)
    os.close(2)
    try:
        ran = False
        with rust_panics_muted():
            ran = True
        assert ran
    finally:
        os.dup2(saved, 2)
        os.close(saved)
