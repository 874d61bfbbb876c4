"""The pipeline's sink as a Kafka Connect connector: Debezium's JDBC sink into PostgreSQL.

``workers.sink.kind: connect`` in the pipeline file makes Connect, not the Python sink worker,
upsert ``sales_aggregates`` into the table keyed by (window_start, tier, source_partition). The
connector's config is derived from the same ``workers.sink`` settings the Python worker reads
(input topic, dead-letter topic, target DSN) plus ``connector_config`` overrides, so the two sinks
cannot drift apart in what they read and where they write:

- values: Confluent-framed Avro read by kstream_lab's converter
  (``dev.kstreamlab.connect.ConfluentAvroConverter``, schemas by id from the registry's Confluent
  API); with Confluent's own registry and converter, ``connector_config`` sets ``value.converter:
  io.confluent.connect.avro.AvroConverter`` and nothing else changes (same ``value.converter.*`` keys);
- the two ``timestamp-millis`` fields arrive as Connect Timestamps (with either converter) and go
  back to epoch milliseconds (``TimestampConverter``), the table's BIGINT columns;
- ``read_committed``: only results of committed aggregator transactions, as the Python sink reads;
- upserts by the key columns; the table's trigger keeps a final row final
  (:data:`kstream_lab.sinks.postgres.FINAL_GUARD`), which Debezium's upsert does not know;
- a record that cannot be converted or written goes to ``workers.sink.dlq`` with its original bytes
  and the reason in Connect's ``__connect.errors.*`` headers; the connector keeps running.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from kstream_lab.connect.rest import ConnectClient, Outcome
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import PipelineSpec, SinkConfig
from kstream_lab.settings import Settings
from kstream_lab.sinks.base import KEY_COLUMNS, TABLE

JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector"
AVRO_CONVERTER = "dev.kstreamlab.connect.ConfluentAvroConverter"
# hibernate-agroal (Debezium's default pool) is not available here: Hibernate's own provider instead.
DRIVER_MANAGER = "org.hibernate.engine.jdbc.connections.internal.DriverManagerConnectionProviderImpl"
TIMESTAMP_FIELDS = ("window_start", "window_end")


def jdbc_target(dsn: str) -> dict[str, str]:
    """A ``postgresql://user:password@host:port/db?params`` DSN as the connector's connection keys.

    A DSN without a password takes libpq's ``PGPASSWORD``, as the Python sink does (the chart sets
    it from a Secret and keeps the password out of the pipeline file); Connect has no libpq."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigError(
            f"sink target {parts.scheme}://{parts.hostname or ''}{parts.path} is not a PostgreSQL DSN with a database",
            hint="use postgresql://user[:password]@host[:port]/database",
        )
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    url = f"jdbc:postgresql://{host}:{parts.port or 5432}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    out = {"connection.url": url, "connection.username": unquote(parts.username or "")}
    if parts.password is not None:
        out["connection.password"] = unquote(parts.password)
    elif os.environ.get("PGPASSWORD"):
        out["connection.password"] = os.environ["PGPASSWORD"]
    return out


def registry_converter(settings: Settings, prefix: str = "value.converter") -> dict[str, str]:
    out = {prefix: AVRO_CONVERTER, f"{prefix}.schema.registry.url": settings.registry_url}
    if settings.schema_registry_user:
        password = settings.schema_registry_password.get_secret_value() if settings.schema_registry_password else ""
        out |= {
            f"{prefix}.basic.auth.credentials.source": "USER_INFO",
            f"{prefix}.basic.auth.user.info": f"{settings.schema_registry_user}:{password}",
        }
    return out


def sink_connector(settings: Settings, sink: SinkConfig) -> dict[str, str]:
    """The JDBC sink connector's config for the pipeline's ``workers.sink``."""
    if not sink.target:
        raise ConfigError("workers.sink.target is not set", hint="set it to postgresql://user@host:port/database")
    transforms = {f"ts_{name}": name for name in TIMESTAMP_FIELDS}
    config: dict[str, str] = {
        "connector.class": JDBC_SINK,
        "tasks.max": "1",
        "topics": sink.input,
        **jdbc_target(sink.target),
        "connection.provider": DRIVER_MANAGER,
        "hibernate.connection.provider_class": DRIVER_MANAGER,
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": ",".join(KEY_COLUMNS),
        "delete.enabled": "false",
        "schema.evolution": "none",  # the table is ours (kstream_lab.sinks.postgres), with its trigger
        "collection.name.format": TABLE,
        "batch.size": str(sink.batch_size),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        **registry_converter(settings),
        "transforms": ",".join(transforms),
        **{
            k: v
            for name, field in transforms.items()
            for k, v in {
                f"transforms.{name}.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
                f"transforms.{name}.field": field,
                f"transforms.{name}.target.type": "unix",
                f"transforms.{name}.unix.precision": "milliseconds",
            }.items()
        },
        "consumer.override.isolation.level": "read_committed",
        "consumer.override.auto.offset.reset": "earliest",
        "errors.tolerance": "all",  # bad records go to the DLQ with their context headers ...
        "errors.retry.timeout": "-1",  # ... a registry outage is retried until it ends, never DLQ'd
        "errors.retry.delay.max.ms": "30000",
        "errors.log.enable": "true",
        "errors.deadletterqueue.topic.name": sink.dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    }
    return {**config, **sink.connector_config}


def apply_sink(
    settings: Settings, spec: PipelineSpec, client: ConnectClient | None = None, *, wait: float = 60.0
) -> Outcome:
    """Create the table (with its final guard), then create or update the connector and wait until it runs."""
    from kstream_lab.sinks.postgres import prepare_table

    sink = spec.workers.sink
    config = sink_connector(settings, sink)
    assert sink.target is not None  # sink_connector checked
    prepare_table(sink.target)
    client = client or ConnectClient(settings.connect_rest_url)
    outcome = client.apply(sink.connector_name, config)
    if wait:
        client.wait_running(sink.connector_name, wait)
    return outcome


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A config for printing: passwords and user infos hidden."""
    secret = ("password", "user.info", "secret")
    return {k: "<hidden>" if any(s in k for s in secret) else v for k, v in config.items()}
