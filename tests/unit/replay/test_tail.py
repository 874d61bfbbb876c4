"""kstream_lab.tail without a broker: its argument checks, its poll loop and how it accumulates frames."""

from __future__ import annotations

import polars as pl
import pytest

import kstream_lab
from kstream_lab.replay import tail as tail_mod
from kstream_lab.replay.reader import RangeError
from kstream_lab.replay.tail import Accumulated, TailArgs, TailError, check_args, run_polls, status_line
from kstream_lab.settings import Settings

pytestmark = pytest.mark.unit

# Nothing listens there: an argument check that reached for the broker would fail differently.
NOWHERE = Settings(bootstrap_servers="127.0.0.1:1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topic": "bad topic!"}, "tail: 'bad topic!' is not a topic name (a topic name is 1-249 characters"),
        ({"topic": ""}, "tail: '' is not a topic name"),
        ({"topic": "x" * 250}, f"tail: {'x' * 250!r} is not a topic name"),
        ({"every": "soon"}, "tail: every='soon': "),
        ({"every": 0}, "tail: every=0 must be a positive duration"),
        ({"every": True}, "tail: every=True is not a duration"),
        ({"max_records": 0}, "tail: max_records=0 must be a positive int (e.g. max_records=1000)"),
        ({"max_records": 2.5}, "tail: max_records=2.5 must be a positive int"),
        ({"max_seconds": -1}, "tail: max_seconds=-1 must be a positive number (a notebook cell must end"),
        ({"max_seconds": float("inf")}, "tail: max_seconds=inf must be a positive number"),
        ({"show": -1}, "tail: show=-1 must be a non-negative int"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_any_read(kwargs, message) -> None:
    args = {"topic": "orders", "every": "1s", "max_records": 10, "max_seconds": 5, "show": 3, **kwargs}
    topic = args.pop("topic")
    with pytest.raises(TailError) as info:
        kstream_lab.tail(topic, settings=NOWHERE, **args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_bad_start_is_told_before_the_broker_is_asked() -> None:
    with pytest.raises(RangeError, match="not a position: 'yesterday'"):
        kstream_lab.tail("orders", start="yesterday", settings=NOWHERE)
    with pytest.raises(RangeError, match="offset must not be negative: -3"):
        list(tail_mod.iter_tail("orders", start=-3, settings=NOWHERE))


def test_arguments_parse() -> None:
    assert check_args("orders.v1_x-y", "250ms", 5, 2, 0) == TailArgs("orders.v1_x-y", 0.25, 5, 2.0, 0)
    assert check_args("t", 2, 1, 0.5, 10) == TailArgs("t", 2.0, 1, 0.5, 10)


def frame(partition: int, offsets: range, **extra: list) -> pl.DataFrame:
    return pl.DataFrame(
        {"partition": [partition] * len(offsets), "offset": list(offsets), "v": [o * 10 for o in offsets], **extra}
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_polls_advance_positions_and_stop_at_max_records() -> None:
    answers = [
        (frame(0, range(0, 3)), {0: 3, 1: 0}),
        (frame(0, range(0, 0)), {0: 3, 1: 0}),
        (pl.concat([frame(0, range(3, 5)), frame(1, range(0, 2))]), {0: 5, 1: 2}),
        (frame(1, range(2, 9)), {0: 5, 1: 9}),  # never reached
    ]
    seen: list[dict[int, int]] = []

    def poll(positions):
        seen.append(dict(positions))
        return answers[len(seen) - 1]

    clock = FakeClock()
    out = list(run_polls(poll, {0: 0, 1: 0}, TailArgs("t", 1.0, 6, 30.0, 0), clock=clock, sleep=clock.sleep))
    assert [f.height for f in out] == [3, 0, 3]
    assert seen == [{0: 0, 1: 0}, {0: 3, 1: 0}, {0: 3, 1: 0}]
    last = out[-1]
    assert last["partition"].to_list() == [0, 0, 1] and last["offset"].to_list() == [3, 4, 0]
    assert clock.sleeps == [1.0, 1.0]  # one poll a second, none after the cap was reached


def test_polls_stop_at_max_seconds_without_sleeping_past_it() -> None:
    calls = []

    def poll(positions):
        calls.append(positions)
        return frame(0, range(0, 0)), positions

    clock = FakeClock()
    out = list(run_polls(poll, {0: 7}, TailArgs("t", 0.4, 100, 1.0, 0), clock=clock, sleep=clock.sleep))
    assert len(calls) == 3 and len(out) == 3 and all(f.height == 0 for f in out)
    assert clock.sleeps == [0.4, 0.4, 0.2]  # the last wait ends at the deadline
    assert clock.now == pytest.approx(101.0)


def test_accumulated_caps_keeps_order_and_aligns_new_fields() -> None:
    acc = Accumulated(max_records=5)
    empty = frame(0, range(0, 0))
    assert acc.add(empty).height == 0 and acc.frame().columns == ["partition", "offset", "v"]
    assert acc.add(frame(0, range(0, 2)), seconds=2.0).height == 2 and acc.last_rate == 1.0
    assert acc.add(frame(1, range(0, 2), w=["a", "b"])).height == 2
    taken = acc.add(frame(2, range(0, 4)), seconds=0.5)
    assert taken["offset"].to_list() == [0] and acc.full and acc.count == 5 and acc.last_rate == 2.0
    out = acc.frame()
    assert out.columns == ["partition", "offset", "v", "w"]
    assert out.rows() == [(0, 0, 0, None), (0, 1, 10, None), (1, 0, 0, "a"), (1, 1, 10, "b"), (2, 0, 0, None)]
    assert acc.add(frame(3, range(0, 1))).height == 0 and acc.count == 5


def test_tail_returns_everything_it_took_and_updates_one_display(monkeypatch) -> None:
    polls = [frame(0, range(0, 0)), frame(0, range(0, 2)), frame(0, range(0, 0)), frame(1, range(0, 1))]
    monkeypatch.setattr(tail_mod, "_polls", lambda *a, **k: (p for p in polls))
    clock = iter(float(t) for t in range(100))  # one second per look at the clock
    monkeypatch.setattr(tail_mod.time, "monotonic", lambda: next(clock))
    updates: list[tuple[str, object]] = []

    class Handle:
        def __init__(self, name: str) -> None:
            self.name = name

        def update(self, obj, raw: bool = False) -> None:
            updates.append((self.name, obj))

    handles = iter([Handle("status"), Handle("chart"), Handle("table")])
    shown: list[object] = []

    def display(obj, display_id, raw: bool = False):
        shown.append(obj)
        return next(handles)

    monkeypatch.setattr("IPython.display.display", display)
    out = kstream_lab.tail("orders", max_records=10, show=2, display=True)
    assert out.rows() == [(0, 0, 0), (0, 1, 10), (1, 0, 0)]
    status = [repr(o) for n, o in updates if n == "status"]
    assert len(status) == 6  # before the first poll, one per poll, and the final one
    assert status[-1] == "tail orders: 3 records in 5.0s (0.6/s overall, 1.0/s last poll), stopped"
    assert all(s.endswith(", following") for s in status[:-1])
    assert repr(shown[0]) == "tail orders: starting"
    # The live chart: shown at the first poll, then the same output redrawn with each poll's rate.
    charts = [shown[1]] + [o for n, o in updates if n == "chart"]
    assert len(charts) == 4
    assert charts[-1][tail_mod.VEGA_LITE]["data"]["values"] == [
        {"seconds": 1.0, "records_per_s": 0.0},
        {"seconds": 2.0, "records_per_s": 2.0},
        {"seconds": 3.0, "records_per_s": 0.0},
        {"seconds": 4.0, "records_per_s": 1.0},
    ]
    assert charts[-1]["text/plain"] == "records/s per poll: 4 polls, last 1.0/s at 4.0s"
    assert shown[2]["offset"].to_list() == [0, 1]  # the newest records, shown with the first ones
    tables = [o for n, o in updates if n == "table"]
    assert len(tables) == 3 and [t["offset"].to_list() for t in tables] == [[0, 1], [1, 0], [1, 0]]


def test_the_rate_chart_is_vega_lite_with_readable_axes() -> None:
    bundle = tail_mod.rate_chart("orders", [])
    spec = bundle[tail_mod.VEGA_LITE]
    assert spec["$schema"].endswith("/vega-lite/v5.json") and spec["data"]["values"] == []
    assert spec["encoding"]["x"]["title"] == "seconds since the tail began"
    assert spec["encoding"]["y"]["title"] == "records/s"
    assert bundle["text/plain"] == "records/s per poll: 0 polls, last no poll yet"


def test_tail_without_a_kernel_shows_nothing_and_an_interrupt_returns_what_it_has(monkeypatch, capsys) -> None:
    def polls(*a, **k):
        yield frame(0, range(0, 2))
        raise KeyboardInterrupt

    monkeypatch.setattr(tail_mod, "_polls", polls)
    out = kstream_lab.tail("orders")
    assert out["offset"].to_list() == [0, 1]
    assert capsys.readouterr().out == ""


def test_status_line() -> None:
    acc = Accumulated(10, count=12, last_rate=2.5)
    assert status_line("orders", acc, 4.0, running=True) == (
        "tail orders: 12 records in 4.0s (3.0/s overall, 2.5/s last poll), following"
    )
    assert status_line("o", Accumulated(1), 0.0, running=False) == (
        "tail o: 0 records in 0.0s (0.0/s overall, 0.0/s last poll), stopped"
    )
