"""Malformed bodies to ``POST /orders`` (docs/reliability.md, "Bad input"): each is a 422 whose detail
names the field (``loc``) and what is wrong with it (``type``), nothing of it is produced, and the good
orders sent between them are all produced, once each. No broker: the producer is a recorder."""

from __future__ import annotations

import json
from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.services.order_service import create_app
from kstream_lab.settings import Settings
from tests.support.paths import ROOT

JSON = {"content-type": "application/json"}
GOOD = {"customer_id": "C0000042", "total_cents": 1999}

# (what, request keywords, the exact {(loc, type)} of the 422's detail)
BAD_BODIES = [
    ("not JSON", {"content": b"{not json", "headers": JSON}, {(("body", 1), "json_invalid")}),
    ("not UTF-8", {"content": b"\xff\xfe", "headers": JSON}, {(("body", 0), "json_invalid")}),
    ("empty body", {"content": b"", "headers": JSON}, {(("body",), "missing")}),
    ("a JSON array", {"json": [GOOD]}, {(("body",), "model_attributes_type")}),
    (
        "JSON without its content type",
        {"content": b'{"customer_id": "C1", "total_cents": 5}'},
        {(("body",), "model_attributes_type")},
    ),
    ("no customer_id", {"json": {"total_cents": 1999}}, {(("body", "customer_id"), "missing")}),
    ("no total_cents", {"json": {"customer_id": "C1"}}, {(("body", "total_cents"), "missing")}),
    ("total_cents a float", {"json": {**GOOD, "total_cents": 19.99}}, {(("body", "total_cents"), "int_type")}),
    ("total_cents a string", {"json": {**GOOD, "total_cents": "1999"}}, {(("body", "total_cents"), "int_type")}),
    ("total_cents a bool", {"json": {**GOOD, "total_cents": True}}, {(("body", "total_cents"), "int_type")}),
    ("total_cents negative", {"json": {**GOOD, "total_cents": -1999}}, {(("body", "total_cents"), "greater_than")}),
    ("total_cents zero", {"json": {**GOOD, "total_cents": 0}}, {(("body", "total_cents"), "greater_than")}),
    ("total_cents absurd", {"json": {**GOOD, "total_cents": 10**12}}, {(("body", "total_cents"), "less_than_equal")}),
    ("customer_id empty", {"json": {**GOOD, "customer_id": ""}}, {(("body", "customer_id"), "string_too_short")}),
    (
        "customer_id 100 kB",
        {"json": {**GOOD, "customer_id": "C" * 100_000}},
        {(("body", "customer_id"), "string_too_long")},
    ),
    (
        "customer_id not an id",
        {"json": {**GOOD, "customer_id": "C 42;--"}},
        {(("body", "customer_id"), "string_pattern_mismatch")},
    ),
    ("customer_id a number", {"json": {**GOOD, "customer_id": 42}}, {(("body", "customer_id"), "string_type")}),
    ("currency lower case", {"json": {**GOOD, "currency": "eur"}}, {(("body", "currency"), "string_pattern_mismatch")}),
    ("item_count zero", {"json": {**GOOD, "item_count": 0}}, {(("body", "item_count"), "greater_than_equal")}),
    ("order_id from the client", {"json": {**GOOD, "order_id": "mine"}}, {(("body", "order_id"), "extra_forbidden")}),
    ("timestamp from the client", {"json": {**GOOD, "timestamp": 0}}, {(("body", "timestamp"), "extra_forbidden")}),
    (
        "two fields wrong",
        {"json": {"customer_id": "C1", "total_cents": 12.5, "item_count": 0}},
        {(("body", "total_cents"), "int_type"), (("body", "item_count"), "greater_than_equal")},
    ),
]


class RecordingProducer:
    """AckingProducer's produce(): records the order and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def produce(self, topic: str, **record) -> Future:
        self.sent.append(record)
        ack: Future = Future()
        ack.set_result(SimpleNamespace(partition=0, offset=len(self.sent) - 1))
        return ack


@pytest.fixture(scope="module")
def service():
    """The order service's app with an encoder and producer set by hand (its lifespan, which would
    reach the registry and the broker, does not run without ``with TestClient``)."""
    app = create_app(Settings(), load_pipeline(ROOT / "pipelines/orders.yaml"))
    producer = RecordingProducer()
    app.state.encode, app.state.retry_at, app.state.producer = (lambda order: json.dumps(order).encode()), 0.0, producer
    return TestClient(app), producer


@pytest.mark.parametrize(("what", "request_kw", "errors"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_malformed_order_is_a_422_naming_the_field_and_is_never_produced(service, what, request_kw, errors) -> None:
    client, producer = service
    before = len(producer.sent)
    resp = client.post("/orders", **request_kw)
    assert resp.status_code == 422
    assert {(tuple(e["loc"]), e["type"]) for e in resp.json()["detail"]} == errors
    assert len(producer.sent) == before


def test_good_orders_between_bad_ones_are_each_produced_once(service) -> None:
    client, producer = service
    before, accepted = len(producer.sent), []
    for i, (_, request_kw, _) in enumerate(BAD_BODIES):
        assert client.post("/orders", **request_kw).status_code == 422
        resp = client.post("/orders", json={**GOOD, "total_cents": 100 + i})
        assert resp.status_code == 202
        accepted.append(resp.json()["order_id"])
    produced = producer.sent[before:]
    assert [r["key"].decode() for r in produced] == accepted
    assert [json.loads(r["value"])["total_cents"] for r in produced] == [100 + i for i in range(len(BAD_BODIES))]
