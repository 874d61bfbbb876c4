"""Schema contracts without a broker: the .avsc files, compatibility rules, registry state, serde."""

from __future__ import annotations

import json

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from kstream_lab.errors import DeserializationError, RecordError, SerializationError, WriterSchemaUnavailable
from kstream_lab.generator import loyalty_tier_for
from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.local_registry.state import RegistryProblem, RegistryState
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.schemas.avro import AvroRecordDecoder, StaticSchemas, field_problem, frame, header_problem
from kstream_lab.schemas.bulk import decode_avro_batch
from kstream_lab.schemas.catalog import topic_schemas
from kstream_lab.schemas.compat import InvalidSchema, compatibility_problems, parse_avro
from kstream_lab.schemas.serde import SerdeContext, json_decoder, json_serializer
from kstream_lab.settings import Settings
from tests.support.avro import ORDER, SCHEMAS, encode, orders, with_field
from tests.support.paths import ROOT

# ---- the schema files -------------------------------------------------------------------------


def test_every_schema_is_a_documented_record_in_the_namespace():
    files = {sf.name: sf for sf in SCHEMAS.values()}
    assert sorted(files) == ["EnrichedOrder", "Order", "SalesAggregate"]
    for sf in files.values():
        schema = json.loads(sf.text)
        assert schema["namespace"] == "dev.kstreamlab.orders" and schema["doc"]
        assert all(f.get("doc") for f in schema["fields"]), sf.name


def test_money_is_long_cents_and_event_time_is_timestamp_millis():
    for name in ("Order", "EnrichedOrder", "SalesAggregate"):
        fields = {f["name"]: f["type"] for f in json.loads(SCHEMAS[name].text)["fields"]}
        assert fields["total_cents"] == "long"
    order = {f["name"]: f["type"] for f in json.loads(ORDER)["fields"]}
    assert order["timestamp"] == {"type": "long", "logicalType": "timestamp-millis"}
    agg = {f["name"]: f["type"] for f in json.loads(SCHEMAS["SalesAggregate"].text)["fields"]}
    assert agg["window_start"]["logicalType"] == agg["window_end"]["logicalType"] == "timestamp-millis"
    assert (agg["source_partition"], agg["count"], agg["final"], agg["tier"]) == ("int", "long", "boolean", "string")


def test_generated_orders_and_sample_payloads_validate():
    records = orders()
    assert [f["name"] for f in json.loads(ORDER)["fields"]] == list(records[0])
    parsed = {
        n: fastavro.parse_schema(json.loads(SCHEMAS[n].text)) for n in ("Order", "EnrichedOrder", "SalesAggregate")
    }
    for rec in records:
        assert validate(rec, parsed["Order"], raise_errors=True)
        enriched = {**rec, "loyalty_tier": loyalty_tier_for(rec["customer_id"])}
        assert validate(enriched, parsed["EnrichedOrder"], raise_errors=True)
    aggregate = {
        "window_start": 1_700_000_040_000,
        "window_end": 1_700_000_100_000,
        "tier": "gold",
        "source_partition": 3,
        "total_cents": 1_234_567,
        "count": 42,
        "final": True,
    }
    assert validate(aggregate, parsed["SalesAggregate"], raise_errors=True)
    assert not validate({**records[0], "total_cents": 12.5}, parsed["Order"], raise_errors=False)


def test_field_problem_names_the_field():
    bad = {**orders(1)[0], "total_cents": "abc"}
    assert field_problem(parse_avro(ORDER), bad) == "field 'total_cents': 'abc' is not a valid \"long\""
    missing = {k: v for k, v in orders(1)[0].items() if k != "currency"}
    assert "field 'currency'" in field_problem(parse_avro(ORDER), missing)


def test_topics_declare_existing_schemas():
    settings = Settings(pipeline_file=ROOT / "pipelines/orders.yaml")
    pairs = topic_schemas(settings, load_pipeline(ROOT / "pipelines/orders.yaml"))
    assert [(s, f.name) for s, f in pairs] == [
        ("orders_raw-value", "Order"),
        ("orders_enriched-value", "EnrichedOrder"),
        ("orders_late-value", "EnrichedOrder"),
        ("sales_aggregates-value", "SalesAggregate"),
    ]


# ---- compatibility ------------------------------------------------------------------------------


def problems(level: str, new: str, *old: str) -> list[str]:
    return compatibility_problems(level, parse_avro(new), [parse_avro(o) for o in old])


def test_backward_accepts_a_new_field_with_default_and_a_removed_field():
    v2 = with_field(ORDER, name="channel", type="string", default="web")
    assert problems("BACKWARD", v2, ORDER) == []
    fewer = json.loads(ORDER)
    fewer["fields"] = [f for f in fewer["fields"] if f["name"] != "currency"]
    assert problems("BACKWARD", json.dumps(fewer), ORDER) == []
    assert problems("FORWARD", json.dumps(fewer), ORDER) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'currency': the reader's field has no default value and is "
        "missing in the writer schema (give it a default)"
    ]


def test_backward_refuses_a_new_field_without_default_naming_it():
    v3 = with_field(ORDER, name="channel", type="string")
    assert problems("BACKWARD", v3, ORDER) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'channel': the reader's field has no default value and is "
        "missing in the writer schema (give it a default)"
    ]
    assert problems("NONE", v3, ORDER) == []
    assert problems("FORWARD", v3, ORDER) == []


def test_type_changes_follow_avro_promotions():
    def retype(name: str, new_type) -> str:
        schema = json.loads(ORDER)
        for f in schema["fields"]:
            if f["name"] == name:
                f["type"] = new_type
        return json.dumps(schema)

    assert problems("BACKWARD", retype("item_count", "long"), ORDER) == []  # int -> long
    assert problems("BACKWARD", retype("item_count", "double"), ORDER) == []
    assert problems("BACKWARD", retype("customer_id", "bytes"), ORDER) == []  # string -> bytes
    assert problems("BACKWARD", retype("total_cents", ["null", "long"]), ORDER) == []
    assert problems("BACKWARD", retype("total_cents", "int"), ORDER) == [
        "TYPE_MISMATCH: field 'total_cents': writer type long cannot be read as int"
    ]
    assert problems("BACKWARD", retype("total_cents", "string"), ORDER) == [
        "TYPE_MISMATCH: field 'total_cents': writer type long cannot be read as string"
    ]
    assert problems("FULL", retype("item_count", "long"), ORDER) == [
        "TYPE_MISMATCH: field 'item_count': writer type long cannot be read as int"
    ]


def test_nested_records_enums_and_transitive_levels():
    def schema(sub_fields: list, symbols: list) -> str:
        return json.dumps(
            {
                "type": "record",
                "name": "Outer",
                "fields": [
                    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": sub_fields}},
                    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": symbols}},
                ],
            }
        )

    v1 = schema([{"name": "a", "type": "int"}], ["A", "B"])
    v2 = schema([{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}], ["A", "B", "C"])
    v3 = schema([{"name": "b", "type": "int", "default": 0}, {"name": "c", "type": "int"}], ["A", "B", "C"])
    assert problems("BACKWARD", v2, v1) == []
    assert problems("FORWARD", v2, v1) == [
        "MISSING_ENUM_SYMBOLS: field 'kind': reader enum Kind lacks symbols ['C'] and has no default"
    ]
    assert problems("BACKWARD", v3, v2) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'inner.c': the reader's field has no default value and is "
        "missing in the writer schema (give it a default)"
    ]
    v3b = schema(
        [{"name": "b", "type": "int", "default": 0}, {"name": "c", "type": "int", "default": 1}], ["A", "B", "C"]
    )
    assert problems("BACKWARD_TRANSITIVE", v3b, v1, v2) == []
    assert problems("FORWARD_TRANSITIVE", v3b, v1, v2) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'inner.a': the reader's field has no default value and is "
        "missing in the writer schema (give it a default)",
        "MISSING_ENUM_SYMBOLS: field 'kind': reader enum Kind lacks symbols ['C'] and has no default",
    ]


def test_malformed_schemas_carry_the_parser_message():
    with pytest.raises(InvalidSchema, match="not JSON"):
        parse_avro("{nope")
    with pytest.raises(InvalidSchema, match="unknown type 'lng'"):
        parse_avro('{"type": "record", "name": "A", "fields": [{"name": "a", "type": "lng"}]}')
    with pytest.raises(InvalidSchema, match="Default value <abc> must match schema type: long"):
        parse_avro('{"type": "record", "name": "A", "fields": [{"name": "a", "type": "long", "default": "abc"}]}')


# ---- registry state (the fold over `_schemas`) ----------------------------------------------------


def apply_all(state: RegistryState, records) -> None:
    for key, value in records:
        state.apply(key, value)


def test_registry_state_registers_idempotently_and_rebuilds_from_its_log():
    state, log = RegistryState(), []
    for subject, text in (
        ("a-value", ORDER),
        ("b-value", ORDER),
        ("a-value", ORDER),
        ("a-value", with_field(ORDER, name="x", type="int", default=0)),
    ):
        ver, records = state.plan_register(subject, text)
        apply_all(state, records)
        log += records
    assert [(v.subject, v.version, v.schema_id) for s in state.subject_names() for v in state.versions(s)] == [
        ("a-value", 1, 1),
        ("a-value", 2, 2),
        ("b-value", 1, 1),
    ]
    assert len(log) == 3  # re-registering wrote nothing
    log.append(state.plan_config("a-value", "none"))
    restored = RegistryState()
    apply_all(restored, log)
    assert restored == RegistryState(**{**state.__dict__, "config": {"a-value": "NONE"}})
    assert restored.level("a-value") == "NONE" and restored.level("b-value") == "BACKWARD"


def test_registry_state_error_codes():
    state = RegistryState()
    apply_all(state, state.plan_register("s", ORDER)[1])
    cases = [
        (lambda: state.plan_register("s", with_field(ORDER, name="x", type="int")), 409, 409),
        (lambda: state.plan_register("s", "{bad"), 422, 42201),
        (lambda: state.version("nope", "latest"), 404, 40401),
        (lambda: state.version("s", 9), 404, 40402),
        (lambda: state.schema_by_id(99), 404, 40403),
        (lambda: state.lookup("s", with_field(ORDER, name="x", type="int", default=0)), 404, 40403),
        (lambda: state.plan_config(None, "SIDEWAYS"), 422, 42203),
        (lambda: state.plan_delete_subject("s", permanent=True), 404, 40405),
    ]
    for call, status, code in cases:
        with pytest.raises(RegistryProblem) as info:
            call()
        assert (info.value.status, info.value.code) == (status, code), info.value.message
    with pytest.raises(RegistryProblem, match="field 'x'"):
        state.plan_register("s", with_field(ORDER, name="x", type="int"))


# ---- per-record decoding --------------------------------------------------------------------------


def test_record_decoder_reasons_and_coordinates():
    decode = AvroRecordDecoder(StaticSchemas({1: ORDER}))
    rec = orders(1)[0]
    good = encode(ORDER, rec)
    assert decode(good) == rec  # timestamps stay integer epoch ms
    cases = {
        b"{not avro}": "no magic byte: first byte is 0x7b",
        b"\x00\x00\x00": "truncated header: 3 bytes",
        frame(77, good[5:]): "unknown schema id 77",
        good[:-4]: "truncated or corrupt Avro body for schema id 1",
        good + b"\x00": "1 trailing bytes after the Avro body",
        None: "null value (tombstone)",
    }
    for value, reason in cases.items():
        with pytest.raises(DeserializationError) as info:
            decode(value, SerdeContext("orders_raw", 2, 41))
        assert reason in info.value.message and info.value.message.endswith(" at orders_raw[2]@41")
        assert (info.value.topic, info.value.partition, info.value.offset) == ("orders_raw", 2, 41)
    assert header_problem(good) is None


def test_v1_data_decodes_with_a_v2_reader_schema():
    v2 = with_field(ORDER, name="channel", type="string", default="web")
    rec = orders(1)[0]
    decode = AvroRecordDecoder(StaticSchemas({1: ORDER}), reader_schema=v2)
    assert decode(encode(ORDER, rec)) == {**rec, "channel": "web"}


PRIMS = ["int", "long", "float", "double", "string", "bytes", "boolean"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PRIMS), min_size=1, max_size=6), st.sampled_from(PRIMS))
def test_compatibility_properties(types, added):
    fields = [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]
    base = json.dumps({"type": "record", "name": "R", "fields": fields})
    for level in ("BACKWARD", "FORWARD", "FULL", "FULL_TRANSITIVE"):
        assert problems(level, base, base) == []  # a schema always reads its own data
    defaults = {"int": 0, "long": 0, "float": 0.0, "double": 0.0, "string": "", "bytes": "", "boolean": False}
    grown = with_field(base, name="extra", type=added, default=defaults[added])
    assert problems("FULL", grown, base) == []  # a defaulted field can come and go
    bare = with_field(base, name="extra", type=added)
    assert [p.split(":")[0] for p in problems("BACKWARD", bare, base)] == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert problems("FORWARD", bare, base) == []


def test_an_unreachable_registry_is_not_a_record_error():
    class Down:
        def writer_schema(self, schema_id: int) -> str:
            raise RegistryError("schema registry at http://127.0.0.1:1 did not answer")

    with pytest.raises(WriterSchemaUnavailable, match="did not answer") as info:  # not DeserializationError: no DLQ
        AvroRecordDecoder(Down())(encode(ORDER, orders(1)[0]), SerdeContext("t", 0, 0))
    assert not isinstance(info.value, RecordError)
    assert info.value.schema_id == 1 and isinstance(info.value.cause, RegistryError)
    assert info.value.message == (
        "schema registry unavailable for writer schema 1: schema registry at http://127.0.0.1:1 did not answer"
    )


@pytest.mark.parametrize(("status", "outage"), [(0, True), (500, True), (503, True), (404, False), (422, False)])
def test_only_an_unreachable_or_5xx_registry_is_an_outage(status, outage):
    """A 5xx or no answer is WriterSchemaUnavailable (retried); a refusal is the record's (dead-lettered)."""
    refused = RegistryError("schema id 1 is a PROTOBUF schema, not Avro", status=status, code=42201)

    class Registry:
        def writer_schema(self, schema_id: int) -> str:
            raise refused

    value = encode(ORDER, orders(1)[0])
    reason = "writer schema 1 refused by the registry: schema id 1 is a PROTOBUF schema, not Avro"
    with pytest.raises(WriterSchemaUnavailable if outage else DeserializationError) as info:
        AvroRecordDecoder(Registry())(value, SerdeContext("t", 4, 9))
    if outage:
        with pytest.raises(WriterSchemaUnavailable):
            decode_avro_batch([value, value], Registry())
    else:
        assert info.value.message == f"{reason} at t[4]@9"
        batch = decode_avro_batch([value, value], Registry())
        assert [(f.index, f.reason) for f in batch.failures] == [(0, reason), (1, reason)]


def test_the_json_decoder_names_the_record():
    ctx = SerdeContext("orders_raw", 1, 17, headers=[("traceparent", b"00-ab")])
    assert json_decoder(b'{"a": 1}', ctx) == {"a": 1} and json_decoder(b'{"a": 1}') == {"a": 1}
    cases = {
        None: "null value (tombstone) where a JSON object was expected",
        b"": "not valid JSON: Expecting value: line 1 column 1 (char 0)",
        b"{oops": "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        b"[1, 2]": "expected a JSON object, got list",
        b"\xff": "not valid JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
    }
    for value, reason in cases.items():
        with pytest.raises(DeserializationError) as info:
            json_decoder(value, ctx)
        assert info.value.message == f"{reason} at orders_raw[1]@17"
        assert (info.value.topic, info.value.partition, info.value.offset) == ("orders_raw", 1, 17)


def test_the_json_serializer_names_the_topic():
    assert json_serializer({"a": 1}, SerdeContext("t")) == b'{"a":1}'
    with pytest.raises(SerializationError, match="not JSON-serialisable") as info:
        json_serializer({"a": object()}, SerdeContext("t"))
    assert info.value.topic == "t"
