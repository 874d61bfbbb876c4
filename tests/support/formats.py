"""Protobuf and JSON Schema twins of the Avro Order, built without protoc, for the format tests.

:func:`order_file` is the FileDescriptorProto protoc would make of ``message Order {string order_id
= 1; ...}``; :func:`basket_file` imports :func:`money_file` (a referenced schema) and exercises a
nested message, an enum, repeated fields and a message index other than [0].
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
ORDER_FIELDS = [
    ("order_id", F.TYPE_STRING),
    ("customer_id", F.TYPE_STRING),
    ("total_cents", F.TYPE_INT64),
    ("currency", F.TYPE_STRING),
    ("item_count", F.TYPE_INT32),
    ("timestamp", F.TYPE_INT64),
]


def _field(msg: Any, name: str, number: int, kind: int, *, type_name: str = "", repeated: bool = False) -> None:
    f = msg.field.add()
    f.name, f.number, f.type = name, number, kind
    f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def order_file(name: str = "order.proto", extra: list[tuple[str, int, int]] | None = None) -> Any:
    """``package dev.kstreamlab.orders; message Order {...}`` (plus ``extra`` fields)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=name, package="dev.kstreamlab.orders", syntax="proto3")
    msg = fdp.message_type.add(name="Order")
    for number, (fname, kind) in enumerate(ORDER_FIELDS, start=1):
        _field(msg, fname, number, kind)
    for fname, number, kind in extra or []:
        _field(msg, fname, number, kind)
    return fdp


def money_file() -> Any:
    """``money.proto``: ``enum Tier``, ``message Money {int64 cents = 1; string currency = 2;}``."""
    fdp = descriptor_pb2.FileDescriptorProto(name="money.proto", package="dev.kstreamlab.money", syntax="proto3")
    tier = fdp.enum_type.add(name="Tier")
    for i, n in enumerate(["BRONZE", "SILVER", "GOLD"]):
        tier.value.add(name=n, number=i)
    msg = fdp.message_type.add(name="Money")
    _field(msg, "cents", 1, F.TYPE_INT64)
    _field(msg, "currency", 2, F.TYPE_STRING)
    return fdp


def basket_file() -> Any:
    """``basket.proto`` importing money.proto: message Basket (second message of the file, so its
    message index is [1]) with a nested message, an enum, a repeated string and a repeated int."""
    fdp = descriptor_pb2.FileDescriptorProto(name="basket.proto", package="dev.kstreamlab.orders", syntax="proto3")
    fdp.dependency.append("money.proto")
    first = fdp.message_type.add(name="Header")
    _field(first, "id", 1, F.TYPE_STRING)
    msg = fdp.message_type.add(name="Basket")
    _field(msg, "id", 1, F.TYPE_STRING)
    _field(msg, "total", 2, F.TYPE_MESSAGE, type_name=".dev.kstreamlab.money.Money")
    _field(msg, "tier", 3, F.TYPE_ENUM, type_name=".dev.kstreamlab.money.Tier")
    _field(msg, "tags", 4, F.TYPE_STRING, repeated=True)
    _field(msg, "counts", 5, F.TYPE_INT32, repeated=True)
    return fdp


def b64(fdp: Any) -> str:
    return base64.b64encode(fdp.SerializeToString()).decode("ascii")


def classes(*files: Any) -> dict[str, Any]:
    """Message classes (by short name) from the files, built in one fresh pool, dependencies first."""
    pool = descriptor_pool.DescriptorPool()
    out = {}
    for fdp in files:
        fd = pool.Add(fdp)
        for name, desc in fd.message_types_by_name.items():
            out[name] = message_factory.GetMessageClass(desc)
    return out


ORDER_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "http://kstreamlab.dev/order.schema.json",
        "title": "Order",
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "customer_id": {"type": "string"},
            "total_cents": {"type": "integer", "minimum": 0},
            "currency": {"type": "string"},
            "item_count": {"type": "integer", "connect.type": "int32"},
            "timestamp": {"type": "integer"},
        },
        "required": ["order_id", "customer_id", "total_cents", "currency", "item_count", "timestamp"],
    }
)
CUSTOMER_JSON = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "http://kstreamlab.dev/customer.schema.json",
        "type": "object",
        "properties": {"name": {"type": "string"}, "id": {"type": "integer"}},
        "required": ["name", "id"],
    }
)
ORDER_WITH_CUSTOMER_JSON = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"id": {"type": "integer"}, "customer": {"$ref": "http://kstreamlab.dev/customer.schema.json"}},
        "required": ["id", "customer"],
    }
)
