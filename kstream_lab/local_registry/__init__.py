"""The local schema registry: Confluent's REST API over a compacted `_schemas` topic."""

from kstream_lab.local_registry.process import LocalRegistry

__all__ = ["LocalRegistry"]
