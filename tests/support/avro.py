"""The pipeline's Avro schemas, generated orders and Confluent-framed encodings for unit tests."""

from __future__ import annotations

import io
import json

import fastavro

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator import OrderGenerator
from kstream_lab.schemas.avro import frame
from kstream_lab.schemas.catalog import load_schemas
from tests.support.paths import ROOT

SCHEMAS = load_schemas(ROOT / "pipelines/schemas")
ORDER = SCHEMAS["Order"].text
# One valid Order, for the tests that need a single known record rather than generated ones.
SAMPLE_ORDER = {
    "order_id": "o-1",
    "customer_id": "C0000001",
    "total_cents": 1999,
    "currency": "EUR",
    "item_count": 2,
    "timestamp": 1_700_000_000_000,
}


def orders(n: int = 200) -> list[dict]:
    gen = OrderGenerator(seed=7, start_ms=1_700_000_000_000, partitions=6, window=WindowSpec(size="60s"))
    return [g.value for g in gen.take(n)]


def encode(schema_text: str, record: dict, schema_id: int = 1) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(schema_text)), record)
    return frame(schema_id, buf.getvalue())


def with_field(text: str, **field) -> str:
    schema = json.loads(text)
    schema["fields"].append(field)
    return json.dumps(schema)
