"""Factories for producers, consumers and admin clients.

Constructors never touch the network; the first call that needs the broker does. Defaults are the
safe ones for this project: idempotent producers, read_committed consumers, manual commits.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from kstream_lab.kafka.chatter import RepeatFilter
from kstream_lab.kafka.failures import redacted, security_error_cb
from kstream_lab.settings import Settings

RDKAFKA_LOG = logging.getLogger("kstream_lab.kafka.rdkafka")
RDKAFKA_LOG.addHandler(logging.NullHandler())  # librdkafka's chatter only shows where logging is set up
RDKAFKA_LOG.addFilter(RepeatFilter())  # one line per fault, not one per reconnect attempt


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Base librdkafka configuration: bootstrap servers plus security, then overrides.

    Holds secrets (``sasl.password``): print or log it only through ``failures.redacted``."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.bootstrap, "logger": RDKAFKA_LOG}
    conf.update(settings.librdkafka_security())
    conf.update(overrides)
    return conf


def _checked(conf: dict[str, Any]) -> dict[str, Any]:
    """The final config with the security check in its ``error_cb``: a refused login or TLS handshake
    raises SecurityError at once. A caller's own ``error_cb`` runs first, then the check."""
    check = security_error_cb(redacted(conf))
    own = conf.get("error_cb")
    if own is None:
        return {**conf, "error_cb": check}

    def both(err: Any) -> None:
        own(err)
        check(err)

    return {**conf, "error_cb": both}


def make_producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> Producer:
    """An idempotent producer (transactional when ``transactional_id`` is given)."""
    conf = client_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "batch.num.messages": 10000,
        },
    )
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = 60000
    conf.update(overrides)
    return Producer(_checked(conf))


def consumer_config(
    settings: Settings, group_id: str, *, read_committed: bool = True, **overrides: Any
) -> dict[str, Any]:
    """A manually-committing consumer's configuration; read_committed by default."""
    conf = client_config(
        settings,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "enable.partition.eof": False,
        },
    )
    conf.update(overrides)
    return conf


def make_consumer(settings: Settings, group_id: str, *, read_committed: bool = True, **overrides: Any) -> Consumer:
    """A manually-committing consumer that only sees committed transactional data by default."""
    return Consumer(_checked(consumer_config(settings, group_id, read_committed=read_committed, **overrides)))


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient(_checked(client_config(settings, **overrides)))
