"""The enricher's tier client: TTL cache, retries with backoff, circuit breaker, fallback to unknown."""

from __future__ import annotations

import json

import httpx

from kstream_lab.generator.customers import loyalty_tier_for
from kstream_lab.schemas.serde import json_decoder
from kstream_lab.workers.enricher import EnricherProcessor
from kstream_lab.workers.tiers import TierClient
from tests.support.fakes import RecordingOutput, json_msgs


class Service:
    """An in-process customer service behind httpx.MockTransport, with switchable failures."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = 0
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            return httpx.Response(503)
        if self.fail_next:
            self.fail_next -= 1
            raise httpx.ConnectError("refused", request=request)
        ids = json.loads(request.content)["customer_ids"]
        return httpx.Response(200, json={"tiers": {c: loyalty_tier_for(c) for c in ids}})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(service: Service, clock: Clock, **kw) -> TierClient:
    return TierClient(
        "http://cs",
        transport=httpx.MockTransport(service),
        clock=clock,
        backoff_initial_s=0.001,
        backoff_max_s=0.002,
        ttl_s=10,
        **kw,
    )


def test_cache_serves_repeats_until_the_ttl_expires() -> None:
    svc, clock = Service(), Clock()
    tiers = client(svc, clock)
    assert tiers.lookup(["C1", "C2"]) == {"C1": loyalty_tier_for("C1"), "C2": loyalty_tier_for("C2")}
    tiers.lookup(["C1", "C2"])
    assert svc.calls == 1
    clock.now = 11
    tiers.lookup(["C1"])
    assert svc.calls == 2


def test_transient_errors_are_retried() -> None:
    svc, clock = Service(), Clock()
    svc.fail_next = 2
    tiers = client(svc, clock, attempts=3)
    assert tiers.lookup(["C7"]) == {"C7": loyalty_tier_for("C7")}
    assert svc.calls == 3 and tiers.fallbacks == 0


def test_breaker_opens_falls_back_to_unknown_and_closes_after_recovery(monkeypatch) -> None:
    svc, clock = Service(), Clock()
    svc.down = True
    tiers = client(svc, clock, attempts=2, fail_max=2, reset_s=0.05)
    assert tiers.lookup(["A"]) == {"A": "unknown"}
    assert tiers.lookup(["B"]) == {"B": "unknown"}
    assert tiers.state == "open"
    calls = svc.calls
    assert tiers.lookup(["C"]) == {"C": "unknown"} and svc.calls == calls  # open: fails fast, no request
    svc.down = False
    import time

    time.sleep(0.06)
    assert tiers.lookup(["C"]) == {"C": loyalty_tier_for("C")}
    assert tiers.state == "closed" and tiers.fallbacks == 3


def test_enricher_keeps_partition_and_order_and_dead_letters_poison() -> None:
    svc, clock = Service(), Clock()
    proc = EnricherProcessor(
        decode=json_decoder,
        encode=lambda v: json.dumps(v).encode(),
        tiers=client(svc, clock),
        output="enriched",
        dlq="dlq",
    )
    good = {
        "order_id": "o1",
        "customer_id": "C0000003",
        "total_cents": 120,
        "currency": "EUR",
        "item_count": 1,
        "timestamp": 5,
    }
    msgs = json_msgs("raw", 4, [good, b"{not an order", {**good, "order_id": "o2", "total_cents": 1.5}])
    msgs.append(json_msgs("raw", 4, [{**good, "order_id": "o3"}], start=3)[0])
    msgs[0]._headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    out = RecordingOutput()
    proc.process(msgs, out)
    enriched = out.values("enriched")
    assert [e["order_id"] for e in enriched] == ["o1", "o3"]
    assert {e["loyalty_tier"] for e in enriched} == {loyalty_tier_for("C0000003")}
    assert {s.partition for s in out.sent} == {4}
    assert [s.value for s in out.to("dlq")] == [b"{not an order", msgs[2].value()]
    tp = dict(out.to("enriched")[0].headers)["traceparent"].decode()
    assert tp.startswith("00-0af7651916cd43dd8448eb211c80319c-") and not tp.endswith("b7ad6b7169203331-01")
