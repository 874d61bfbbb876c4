"""The live part of ``kstream-lab demo``: orders posted to the order service and a terminal summary.

The poster sends realistic orders (the generator's skewed customers and log-normal totals) over HTTP
at a fixed rate, so every order takes the production path: validation, Avro, idempotent producer,
enricher, aggregator, sink. The summary scrapes each process's /metrics endpoint and reads the sink
through a short read-only connection, the same way the dashboard does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator.orders import OrderGenerator
from kstream_lab.sinks.base import AggregateSink
from kstream_lab.workers.components import names
from kstream_lab.workers.supervisor import Supervisor


class OrderPoster(threading.Thread):
    """Posts generated orders to ``url`` at ``rate``/s until stopped; counts HTTP outcomes."""

    def __init__(self, url: str, rate: float, *, seed: int = 1, stop: threading.Event | None = None) -> None:
        super().__init__(daemon=True, name="order-poster")
        self.url, self.rate, self.seed = url, rate, seed
        self.stop = stop or threading.Event()
        self.outcomes: Counter = Counter()

    def run(self) -> None:
        gen = OrderGenerator(
            seed=self.seed,
            start_ms=int(time.time() * 1000),
            partitions=1,
            window=WindowSpec.model_validate({"size": "60s"}),
        )
        t0, sent = time.monotonic(), 0
        with httpx.Client(timeout=10) as client:
            for order in gen:
                if self.stop.is_set():
                    return
                if order.value is None:  # a poison record (none at the default poison_fraction 0): no JSON body
                    continue
                body = {k: order.value[k] for k in ("customer_id", "total_cents", "currency", "item_count")}
                try:
                    self.outcomes[str(client.post(self.url, json=body).status_code)] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                sent += 1
                ahead = sent / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    self.stop.wait(ahead)


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample of a /metrics page (empty when unreachable)."""
    try:
        text = httpx.get(url, timeout=1).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "service")
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def _sum(metrics: dict[str, float], prefix: str) -> int:
    """Sum of the samples whose ``name{labels}`` starts with ``prefix`` (a name, or a name and first label)."""
    if "{" not in prefix:
        prefix += "{"
    return int(sum(v for k, v in metrics.items() if k.startswith(prefix)))


def summary_lines(sup: Supervisor, poster: OrderPoster, sink: AggregateSink, elapsed: float) -> list[str]:
    ok = poster.outcomes.get("202", 0)
    rejected = sum(v for k, v in poster.outcomes.items() if k != "202")
    lines = [f"t={elapsed:5.0f}s  orders accepted {ok:>7}  not accepted {rejected:>5}"]
    for name in names("worker"):
        m = scrape(sup.url(name))
        if not m:
            lines.append(f"  {name:<11} (no metrics yet)")
            continue
        breaker = m.get("kstream_breaker_state{breaker=customer-service}")
        extra = f"  breaker {['closed', 'half-open', 'open'][int(breaker)]}" if breaker is not None else ""
        lines.append(
            f"  {name:<11} consumed {_sum(m, 'kstream_consumed_total'):>7}  produced "
            f"{_sum(m, 'kstream_produced_total'):>7}  dlq {_sum(m, 'kstream_dlq_total'):>4}  late "
            f"{_sum(m, 'kstream_late_total'):>4}  lag {_sum(m, 'kstream_consumer_lag'):>5}{extra}"
        )
    try:
        rows = sink.read()
    except Exception as exc:  # the summary must never stop the demo
        return [*lines, f"  sink: {exc}"]
    by_window: dict[int, Counter] = {}
    finals: dict[int, bool] = {}
    for r in rows:
        by_window.setdefault(r["window_start"], Counter())[r["tier"]] += r["total_cents"]
        finals[r["window_start"]] = finals.get(r["window_start"], True) and r["final"]
    for ws in sorted(by_window)[-3:]:
        when = time.strftime("%H:%M", time.gmtime(ws / 1000))
        tiers = "  ".join(f"{t} {c / 100:,.2f}" for t, c in sorted(by_window[ws].items()))
        lines.append(f"  window {when} UTC {'final ' if finals[ws] else 'open  '} {tiers}")
    return lines


def drain(sup: Supervisor, accepted: int, timeout: float = 15.0) -> bool:
    """Wait until every accepted order has flowed through enricher, aggregator and sink (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = {name: scrape(sup.url(name)) for name in names("worker")}
        enr, agg, sink = m["enricher"], m["aggregator"], m["sink"]
        if (
            _sum(enr, "kstream_consumed_total") >= accepted
            and _sum(agg, "kstream_consumed_total")
            >= _sum(enr, f"kstream_produced_total{{topic={sup.config.enricher.output}")
            and _sum(sink, "kstream_consumed_total")
            >= _sum(agg, f"kstream_produced_total{{topic={sup.config.aggregator.output}")
        ):
            return True
        time.sleep(0.3)
    return False
