"""Serde for the pipeline's topics: JSON and Avro in the Confluent wire format."""

from kstream_lab.schemas.serde import Serializer, value_serializer

__all__ = ["Serializer", "value_serializer"]
