"""Serde for the pipeline's topics: JSON and Avro in the Confluent wire format, per record and in bulk."""

from kstream_lab.schemas.serde import (
    Decoder,
    SerdeContext,
    Serializer,
    json_decoder,
    json_serializer,
    value_decoder,
    value_serializer,
)

__all__ = [
    "Decoder",
    "SerdeContext",
    "Serializer",
    "json_decoder",
    "json_serializer",
    "value_decoder",
    "value_serializer",
]
