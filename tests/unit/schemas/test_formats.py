"""JSON Schema and Protobuf without a broker: the registry's rules, references, per-record and bulk decoding."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kstream_lab.errors import DeserializationError
from kstream_lab.kafka.schema_registry import RegisteredSchema
from kstream_lab.local_registry.state import RegistryProblem, RegistryState, SchemaBody
from kstream_lab.packed import PackedValues
from kstream_lab.schemas.avro import frame
from kstream_lab.schemas.bulk import decode_avro_batch
from kstream_lab.schemas.bulk_formats import decode_json_schema_batch, decode_protobuf_batch
from kstream_lab.schemas.formats import ConfluentRecordDecoder, StaticRegistry
from tests.support.avro import ORDER, encode, orders
from tests.support.formats import (
    CUSTOMER_JSON,
    ORDER_JSON_SCHEMA,
    ORDER_WITH_CUSTOMER_JSON,
    b64,
    basket_file,
    classes,
    money_file,
    order_file,
)

pytestmark = pytest.mark.unit
F = __import__("google.protobuf.descriptor_pb2", fromlist=["x"]).FieldDescriptorProto


def apply_all(state: RegistryState, records) -> None:
    for key, value in records:
        state.apply(key, value)


def register(state: RegistryState, subject: str, body: SchemaBody):
    ver, records = state.plan_register(subject, body)
    apply_all(state, records)
    return ver


def problem(call) -> tuple[int, int, str]:
    with pytest.raises(RegistryProblem) as info:
        call()
    return info.value.status, info.value.code, info.value.message


# ---- the registry: types, references, compatibility -------------------------------------------------


def test_json_schema_with_a_reference_registers_resolves_and_rebuilds_from_the_log():
    state, log = RegistryState(), []
    for subject, body in (
        ("customer", SchemaBody(CUSTOMER_JSON, "JSON")),
        (
            "order",
            SchemaBody(
                ORDER_WITH_CUSTOMER_JSON, "JSON", (("http://kstreamlab.dev/customer.schema.json", "customer", 1),)
            ),
        ),
    ):
        ver, records = state.plan_register(subject, body)
        apply_all(state, records)
        log += records
    order = state.version("order", "latest")
    assert (order.schema_id, order.schema_type, order.references) == (
        2,
        "JSON",
        (("http://kstreamlab.dev/customer.schema.json", "customer", 1),),
    )
    assert order.as_json()["references"] == [
        {"name": "http://kstreamlab.dev/customer.schema.json", "subject": "customer", "version": 1}
    ]
    assert state.referenced_by("customer", 1) == [2]
    restored = RegistryState()
    apply_all(restored, log)
    assert restored == state
    # the same schema without its reference is another schema, and does not resolve
    assert problem(lambda: state.plan_register("x", SchemaBody(ORDER_WITH_CUSTOMER_JSON, "JSON")))[:2] == (422, 42201)
    missing = SchemaBody(ORDER_WITH_CUSTOMER_JSON, "JSON", (("http://kstreamlab.dev/customer.schema.json", "nope", 1),))
    status, code, message = problem(lambda: state.plan_register("x", missing))
    assert (status, code) == (422, 42201) and "subject 'nope' version 1" in message
    status, code, message = problem(lambda: state.plan_delete_version("customer", 1, permanent=False))
    assert (status, code) == (422, 42206) and "schema ids [2]" in message


def test_protobuf_with_an_import_registers_by_descriptor_and_text_is_refused():
    state = RegistryState()
    money = register(state, "money.proto", SchemaBody(b64(money_file()), "PROTOBUF"))
    basket = register(
        state, "basket-value", SchemaBody(b64(basket_file()), "PROTOBUF", (("money.proto", "money.proto", 1),))
    )
    assert (money.schema_id, basket.schema_id) == (1, 2)
    assert (
        state.lookup("basket-value", SchemaBody(b64(basket_file()), "PROTOBUF", (("money.proto", "money.proto", 1),)))
        == basket
    )
    status, code, message = problem(lambda: state.plan_register("b", SchemaBody(b64(basket_file()), "PROTOBUF")))
    assert (status, code) == (422, 42201) and "imports 'money.proto', which is not among its references" in message
    status, code, message = problem(
        lambda: state.plan_register("t", SchemaBody('syntax = "proto3"; message A {}', "PROTOBUF"))
    )
    assert (status, code) == (422, 42201) and ".proto source text is not accepted" in message
    assert problem(lambda: state.plan_register("t", SchemaBody("{}", "XML")))[:2] == (422, 42201)


def test_avro_named_type_references():
    state = RegistryState()
    money = json.dumps(
        {"type": "record", "name": "Money", "namespace": "m", "fields": [{"name": "cents", "type": "long"}]}
    )
    register(state, "money", SchemaBody(money))
    order = json.dumps({"type": "record", "name": "O", "fields": [{"name": "total", "type": "m.Money"}]})
    refs = (("m.Money", "money", 1),)
    assert register(state, "o-value", SchemaBody(order, "AVRO", refs)).schema_id == 2
    assert problem(lambda: state.plan_register("p", SchemaBody(order)))[:2] == (422, 42201)
    # compatibility sees through the reference: the referenced record's field types are compared
    money2 = json.dumps(
        {"type": "record", "name": "Money", "namespace": "m", "fields": [{"name": "cents", "type": "string"}]}
    )
    register(state, "money2", SchemaBody(money2))
    status, code, message = problem(
        lambda: state.plan_register("o-value", SchemaBody(order, "AVRO", (("m.Money", "money2", 1),)))
    )
    assert (status, code) == (409, 409) and "field 'total.cents'" in message


def json_problems(new: dict, old: dict, level: str = "BACKWARD") -> list[str]:
    state = RegistryState()
    register(state, "s", SchemaBody(json.dumps(old), "JSON"))
    return state.problems("s", SchemaBody(json.dumps(new), "JSON"), state.versions("s"), level)


def test_json_schema_compatibility_rules():
    base = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    closed = {**base, "additionalProperties": False}
    with_b = {**base, "properties": {**base["properties"], "b": {"type": "string"}}}
    assert json_problems(base, base) == []
    assert json_problems({**base, "properties": {"a": {"type": "number"}}}, base) == []  # widened
    assert json_problems(base, {**base, "properties": {"a": {"type": "number"}}}) == [
        "TYPE_CHANGED: at 'a': writer type ['integer', 'number'] is not within reader type ['integer']"
    ]
    assert json_problems({**base, "required": ["a", "b"]}, base)[0].startswith("REQUIRED_PROPERTY_ADDED: at 'b'")
    assert json_problems(with_b, base) == [
        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: at 'b': the writer's open content model may hold 'b' of any type"
    ]
    assert json_problems({**with_b, "additionalProperties": False}, closed) == []  # closed writer: fine
    assert json_problems(closed, with_b) == [
        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL: at 'b': the reader no longer allows 'b'",
        "ADDITIONAL_PROPERTIES_REMOVED: the reader closes a content model the writer left open",
    ]
    assert json_problems(base, with_b) == []  # removed from an open model
    assert json_problems({"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 9}) == [
        "MAXLENGTH_DECREASED: maxLength 9 -> 5"
    ]
    assert json_problems({"enum": ["x"]}, {"enum": ["x", "y"]}) == [
        "ENUM_ARRAY_NARROWED: the reader's enum lacks ['y']"
    ]
    # FORWARD asks the other way round; FULL both
    assert json_problems(with_b, base, "FORWARD") == []
    assert json_problems(base, with_b, "FULL") == json_problems(with_b, base)


def proto_problems(new, old, level: str = "BACKWARD") -> list[str]:
    state = RegistryState()
    register(state, "s", SchemaBody(b64(old), "PROTOBUF"))
    return state.problems("s", SchemaBody(b64(new), "PROTOBUF"), state.versions("s"), level)


def test_protobuf_compatibility_rules():
    assert proto_problems(order_file(extra=[("note", 7, F.TYPE_STRING)]), order_file()) == []  # field added
    assert proto_problems(order_file(), order_file(extra=[("note", 7, F.TYPE_STRING)])) == []  # field removed
    widened = order_file()
    widened.message_type[0].field[4].type = F.TYPE_INT64  # item_count int32 -> int64: same wire type
    assert proto_problems(widened, order_file()) == []
    changed = order_file()
    changed.message_type[0].field[2].type = F.TYPE_STRING  # total_cents int64 -> string
    assert proto_problems(changed, order_file()) == [
        "FIELD_SCALAR_KIND_CHANGED: Order.total_cents (field 3): type 3 -> 9"
    ]
    renamed = order_file()
    renamed.message_type[0].name = "Purchase"
    assert proto_problems(renamed, order_file()) == ["MESSAGE_REMOVED: message Order is gone"]
    assert proto_problems(renamed, order_file(), "NONE") == []
    moved = order_file()
    moved.package = "other"
    assert proto_problems(moved, order_file())[0] == "PACKAGE_CHANGED: package 'dev.kstreamlab.orders' -> 'other'"


def test_a_subject_cannot_change_schema_type_under_a_compatibility_level():
    state = RegistryState()
    register(state, "s", SchemaBody(ORDER))
    status, code, message = problem(lambda: state.plan_register("s", SchemaBody(ORDER_JSON_SCHEMA, "JSON")))
    assert (status, code) == (409, 409) and "SCHEMA_TYPE_CHANGED" in message


# ---- decoding -------------------------------------------------------------------------------------------


def registry() -> StaticRegistry:
    return StaticRegistry(
        {
            1: RegisteredSchema("AVRO", ORDER),
            2: RegisteredSchema("PROTOBUF", b64(order_file())),
            3: RegisteredSchema("JSON", ORDER_JSON_SCHEMA),
            4: RegisteredSchema("PROTOBUF", b64(basket_file()), (("money.proto", "money.proto", 1),)),
        },
        {("money.proto", 1): RegisteredSchema("PROTOBUF", b64(money_file()))},
    )


ORDER_CLS = classes(order_file())["Order"]
BASKET = classes(money_file(), basket_file())


def proto_value(record: dict, schema_id: int = 2) -> bytes:
    return frame(schema_id, b"\x00" + ORDER_CLS(**record).SerializeToString())


def json_value(record: dict, schema_id: int = 3) -> bytes:
    return frame(schema_id, json.dumps(record, separators=(",", ":")).encode())


def test_three_formats_of_one_order_decode_to_the_same_record_and_the_same_frame():
    records = orders(300)
    avro = decode_avro_batch([encode(ORDER, r) for r in records], registry())
    proto = decode_protobuf_batch(PackedValues.of([proto_value(r) for r in records]), registry())
    js = decode_json_schema_batch(PackedValues.of([json_value(r) for r in records]), registry())
    for batch in (proto, js):
        assert batch.failures == []
        assert_frame_equal(batch.frame, avro.frame)
    decode = ConfluentRecordDecoder(registry())
    assert (
        decode(proto_value(records[0]))
        == decode(json_value(records[0]))
        == decode(encode(ORDER, records[0]))
        == records[0]
    )


def test_nested_enum_repeated_and_a_second_message_index_in_bulk_and_per_record():
    money = BASKET["Money"](cents=250, currency="EUR")
    msgs = [
        BASKET["Basket"](id="b1", total=money, tier=2, tags=["x", "y"], counts=[1, 2]),
        BASKET["Basket"](id="b2"),
    ]
    values = [frame(4, b"\x02\x02" + m.SerializeToString()) for m in msgs]  # indexes [1]: the second message
    decode = ConfluentRecordDecoder(registry(), "protobuf")
    assert decode(values[0]) == {
        "id": "b1",
        "total": {"cents": 250, "currency": "EUR"},
        "tier": "GOLD",
        "tags": ["x", "y"],
        "counts": [1, 2],
    }
    assert decode(values[1])["total"] is None and decode(values[1])["tier"] == "BRONZE"
    batch = decode_protobuf_batch(values, registry())
    assert batch.failures == []
    assert batch.frame.to_dicts() == [decode(v) for v in values]
    assert batch.frame.schema["total"] == pl.Struct({"cents": pl.Int64, "currency": pl.String})


POISON_PROTO = [
    (b'{"order_id": "x"}', "not_protobuf"),
    (b"\x00\x00\x00", "truncated"),
    (frame(99, b"\x00\x0a\x01a"), "unknown_schema_id"),
    (frame(3, b"\x00\x0a\x01a"), "schema_refused"),  # a JSON schema's id
    (frame(2, b"\x02\x0e\x0a"), "bad_message_index"),  # index 7 of a file with one message
    (frame(2, b"\x00\x0a\x09o-1"), "truncated"),  # order_id says 9 bytes, 3 follow
    (frame(2, b"\x00\x07"), "corrupt_body"),  # wire type 7 does not exist
    (None, "tombstone"),
]
POISON_JSON = [
    (b"\x01not framed", "not_json_schema"),
    (frame(99, b"{}"), "unknown_schema_id"),
    (frame(2, b"{}"), "schema_refused"),  # a Protobuf schema's id
    (frame(3, b"{not json"), "not_json"),
    (json_value({**orders(1)[0], "total_cents": -5}), "schema_violation"),  # minimum 0
    (json_value({k: v for k, v in orders(1)[0].items() if k != "customer_id"}), "schema_violation"),  # required
    (b"", "empty_value"),
]


@pytest.mark.parametrize(
    ("fmt", "good", "poison"),
    [("protobuf", proto_value, POISON_PROTO), ("json_schema", json_value, POISON_JSON)],
)
def test_every_poison_record_fails_alone_with_its_reason_in_bulk_and_per_record(fmt, good, poison):
    records = orders(40)
    values: list = [good(r) for r in records]
    at = {}
    for k, (value, reason) in enumerate(poison):
        at[3 + 4 * k] = reason
        values.insert(3 + 4 * k, value)
    decode = ConfluentRecordDecoder(registry(), fmt)
    for i, reason in at.items():
        with pytest.raises(DeserializationError) as info:
            decode(values[i])
        assert info.value.reason == reason, (i, info.value)
    bulk = decode_protobuf_batch if fmt == "protobuf" else decode_json_schema_batch
    for given in (values, PackedValues.of(values)):
        batch = bulk(given, registry())
        assert {f.index: f.code for f in batch.failures} == at
        assert batch.frame.to_dicts() == records
        assert sorted(batch.indices.tolist()) == [i for i in range(len(values)) if i not in at]
