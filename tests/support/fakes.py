"""Plain stand-ins for consumed messages and the transactional output (no broker in unit tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Msg:
    """The subset of confluent_kafka.Message the processors use."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list = field(default_factory=list)
    _timestamp: int | None = None  # the record's create time in ms; None: the record has none

    def timestamp(self) -> tuple[int, int]:
        return (0, -1) if self._timestamp is None else (1, self._timestamp)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list:
        return self._headers


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    headers: list | None
    timestamp: int | None


class RecordingOutput:
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def send(self, topic, *, key, value, partition, headers=None, timestamp=None) -> None:
        self.sent.append(Sent(topic, key, value, partition, headers, timestamp))

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    def values(self, topic: str) -> list[dict]:
        return [json.loads(s.value) for s in self.to(topic)]


def json_msgs(topic: str, partition: int, records: list[dict | bytes], start: int = 0) -> list[Msg]:
    out = []
    for i, r in enumerate(records):
        value = r if isinstance(r, bytes) else json.dumps(r).encode()
        key = (r.get("order_id", f"k{i}") if isinstance(r, dict) else f"poison{i}").encode()
        out.append(Msg(topic, partition, start + i, key, value))
    return out
