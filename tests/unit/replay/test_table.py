"""``table()``'s fold: the latest value per key as of a position, tombstones deleting, against a plain
reference fold of the same records in offset order."""

from __future__ import annotations

import random

import polars as pl
import pytest

from kstream_lab.replay.table import latest_per_key

pytestmark = pytest.mark.unit


def records(seed: int, n: int = 400) -> list[dict]:
    """Updates of 12 keys over 3 partitions (a key keeps its partition), with tombstones and null keys."""
    rng = random.Random(seed)
    next_offset = {0: 0, 1: 0, 2: 0}
    out = []
    for i in range(n):
        key = None if rng.random() < 0.03 else f"k{rng.randrange(12):02d}"
        p = rng.randrange(3) if key is None else int(key[1:]) % 3
        tomb = key is not None and rng.random() < 0.15
        out.append(
            {
                "partition": p,
                "offset": next_offset[p],
                "timestamp": 1_000 + i,
                "key": key,
                "amount_cents": None if tomb else rng.randrange(10**6),
                "tombstone": tomb,
            }
        )
        next_offset[p] += rng.choice((1, 1, 1, 3))  # compaction and transaction markers leave gaps
    return out


def reference(recs: list[dict]) -> dict[str, tuple[int, int, int | None]]:
    state: dict[str, tuple[int, int, int | None]] = {}
    for r in sorted(recs, key=lambda r: (r["partition"], r["offset"])):
        if r["key"] is None:
            continue
        if r["tombstone"]:
            state.pop(r["key"], None)
        else:
            state[r["key"]] = (r["partition"], r["offset"], r["amount_cents"])
    return state


@pytest.mark.parametrize("seed", range(5))
def test_the_table_at_each_position_equals_the_reference_fold(seed: int) -> None:
    recs = records(seed)
    for cut in (0, 1, 57, 200, 399, 400):  # the position: the first `cut` records (all partitions)
        upto = recs[:cut]
        rows = pl.DataFrame(
            [{k: v for k, v in r.items() if k != "tombstone"} for r in upto],
            schema={
                "partition": pl.Int32,
                "offset": pl.Int64,
                "timestamp": pl.Int64,
                "key": pl.String,
                "amount_cents": pl.Int64,
            },
        )
        dead = [(r["partition"], r["offset"]) for r in upto if r["tombstone"]]
        got = latest_per_key("t", rows, dead)
        want = reference(upto)
        assert got["key"].to_list() == sorted(want)
        assert {k: (p, o, a) for k, p, o, a in got.select("key", "partition", "offset", "amount_cents").rows()} == want
        assert got.columns == rows.columns


def test_a_key_in_two_partitions_takes_the_later_record() -> None:
    rows = pl.DataFrame(
        {"partition": [0, 1, 0], "offset": [0, 0, 1], "timestamp": [5, 9, 7], "key": ["a", "a", "b"], "v": [1, 2, 3]},
        schema_overrides={"partition": pl.Int32},
    )
    got = latest_per_key("t", rows, [])
    assert got.select("key", "v").rows() == [("a", 2), ("b", 3)]
    assert latest_per_key("t", rows, [(1, 0)]).select("key", "v").rows() == [("b", 3)]  # the later record: a tombstone
