"""The REST layer for JSON Schema and Protobuf: schemaType and references in and out, subjects that
are file paths (Protobuf imports), referencedby, and refusals with Confluent's codes."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.support.formats import CUSTOMER_JSON, ORDER_WITH_CUSTOMER_JSON, b64, basket_file, money_file
from tests.unit.registry.test_app import CT, MemoryLog, client_for

pytestmark = pytest.mark.unit
CUSTOMER_URI = "http://kstreamlab.dev/customer.schema.json"


def post(client, path: str, body: dict):
    return client.post(path, content=json.dumps(body), headers={"Content-Type": CT})


def test_schema_types_references_and_file_path_subjects_over_rest():
    log = MemoryLog()
    client = client_for(log)
    assert client.get("/schemas/types").json() == ["AVRO", "JSON", "PROTOBUF"]
    money = quote("deps/money.proto", safe="")  # a subject with a slash, as confluent-kafka sends it
    assert post(
        client, f"/subjects/{money}/versions", {"schema": b64(money_file()), "schemaType": "PROTOBUF"}
    ).json() == {
        "id": 1,
        "version": 1,
        "subject": "deps/money.proto",
    }
    refs = [{"name": "money.proto", "subject": "deps/money.proto", "version": 1}]
    basket = {"schema": b64(basket_file()), "schemaType": "PROTOBUF", "references": refs}
    assert post(client, "/subjects/basket-value/versions", basket).json()["id"] == 2
    assert post(client, "/subjects/basket-value", basket).json() == {
        "subject": "basket-value",
        "version": 1,
        "id": 2,
        "schemaType": "PROTOBUF",
        "references": refs,
        "schema": b64(basket_file()),
    }
    assert client.get("/schemas/ids/2", params={"format": "serialized"}).json() == {
        "schemaType": "PROTOBUF",
        "references": refs,
        "schema": b64(basket_file()),
    }
    assert client.get(f"/subjects/{money}/versions/1/referencedby").json() == [2]
    refused = client.delete(f"/subjects/{money}/versions/1")
    assert (refused.status_code, refused.json()["error_code"]) == (422, 42206)

    assert (
        post(client, "/subjects/customer/versions", {"schema": CUSTOMER_JSON, "schemaType": "JSON"}).json()["id"] == 3
    )
    order = {
        "schema": ORDER_WITH_CUSTOMER_JSON,
        "schemaType": "JSON",
        "references": [{"name": CUSTOMER_URI, "subject": "customer", "version": 1}],
    }
    assert post(client, "/subjects/order-value/versions", order).json()["id"] == 4
    unresolved = post(client, "/subjects/other/versions", {**order, "references": []})
    assert (unresolved.status_code, unresolved.json()["error_code"]) == (422, 42201)
    assert "does not resolve" in unresolved.json()["message"]
    bad_type = post(client, "/subjects/x/versions", {"schema": "{}", "schemaType": "THRIFT"})
    assert (bad_type.status_code, bad_type.json()["error_code"]) == (422, 42201)
    # a JSON schema that adds a required property is refused under BACKWARD, with the rule's name
    stricter = json.loads(CUSTOMER_JSON)
    stricter["required"].append("email")
    stricter["properties"]["email"] = {"type": "string"}
    verdict = post(
        client,
        "/compatibility/subjects/customer/versions/latest?verbose=true",
        {"schema": json.dumps(stricter), "schemaType": "JSON"},
    ).json()
    assert verdict["is_compatible"] is False
    assert verdict["messages"][0].startswith("REQUIRED_PROPERTY_ADDED: at 'email'")

    restarted = client_for(log)  # schemaType and references survive the log
    assert restarted.get("/subjects/order-value/versions/1").json()["references"] == order["references"]
    assert restarted.get("/subjects/deps%2Fmoney.proto/versions").json() == [1]
    assert restarted.get("/subjects/s-value/metadata").status_code == 404
