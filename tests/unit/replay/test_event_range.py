"""The offsets that decide the windows starting in an event-time range, on a hand-worked partition."""

from __future__ import annotations

import polars as pl
import pytest

from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.replay.event_range import event_offsets, event_time_ms
from tests.support.paths import ROOT

pytestmark = pytest.mark.unit

SPEC = load_pipeline(ROOT / "pipelines/orders.yaml").aggregation()  # tumbling 60 s, grace 10 s
S = 1000


def times(rows: dict[int, list[int]]) -> pl.DataFrame:
    """partition -> event times (s) at offsets 0, 1, 2, ..."""
    return pl.DataFrame(
        [(p, o, t * S) for p, ts in rows.items() for o, t in enumerate(ts)],
        schema={"partition": pl.Int32, "offset": pl.Int64, "timestamp": pl.Int64},
        orient="row",
    )


def test_start_after_every_earlier_time_is_before_the_range_and_end_where_the_last_window_closed() -> None:
    # windows starting in [120 s, 240 s): the last one [180, 240) closes at watermark 250 s
    p0 = [10, 70, 119, 100, 121, 130, 180, 200, 251, 260, 300]
    #     0   1   2    3    4    5    6    7    8    9    10
    # before offset 4 every time is < 120 (offset 4 itself is 121); offset 8 brings the watermark to
    # 251 >= 250, where [180, 240) closes
    p1 = [200, 5, 130]  # the first record is in range already: start 0; never closes: end = the high offset
    p2: list[int] = []
    got = event_offsets(times({0: p0, 1: p1, 2: p2}), SPEC, 120 * S, 240 * S, {0: (0, 11), 1: (0, 3), 2: (0, 0)})
    assert got == {0: (4, 9), 1: (0, 3), 2: (0, 0)}


def test_the_read_range_caps_both_ends() -> None:
    p0 = [10, 70, 119, 100, 121, 130, 180, 200, 251, 260, 300]
    assert event_offsets(times({0: p0}), SPEC, 120 * S, 240 * S, {0: (5, 7)}) == {0: (5, 7)}


def test_times_are_times_not_offsets() -> None:
    assert event_time_ms("@1700000000000", "--event-from") == 1_700_000_000_000
    assert event_time_ms(1_700_000_000_000, "--event-from") == 1_700_000_000_000
    assert event_time_ms("2023-11-14T22:13:20+00:00", "--event-to") == 1_700_000_000_000
    assert event_time_ms("1h ago", "--event-from", now_ms=7_200_000) == 3_600_000
    with pytest.raises(ConfigError, match=r"--event-from: 'earliest' is not a time"):
        event_time_ms("earliest", "--event-from")
    with pytest.raises(ConfigError, match=r"--event-to: not a position: 'soon'"):
        event_time_ms("soon", "--event-to")
    with pytest.raises(ConfigError, match=r"must be after"):
        event_offsets(times({0: [1]}), SPEC, 10, 10, {0: (0, 1)})
