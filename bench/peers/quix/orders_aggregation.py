"""The Quix Streams peer of bench/bench_peers.py, run by the Python of its own venv (quixstreams pins
confluent-kafka below kstream_lab's), never imported by the bench itself.

The orders aggregation of pipelines/orders.yaml: the same Avro topic as our aggregator (Confluent
framing, writer schemas from the registry), event time from the value's ``timestamp``, a tumbling
window of the aggregation's size and grace, sum of total_cents and count, final windows only
(closed when the partition's event time passes end + grace: ``closing_strategy="partition"``; with
Quix's default, ``"key"``, a window per order id would never close), to an output topic,
``processing_guarantee="exactly-once"``. Variants: ``group_by`` (re-keyed by loyalty tier through
Quix's repartition topic, the aggregator's semantics) and ``key`` (windows per record key, the order
id: no repartition, one window per order).

    python orders_aggregation.py BOOTSTRAP REGISTRY_URL INPUT OUTPUT GROUP VARIANT WINDOW_MS GRACE_MS STATE_DIR COMMIT_S
"""

from __future__ import annotations

import sys
from datetime import datetime

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig


def event_time(value, headers, timestamp: int, timestamp_type) -> int:
    ts = value["timestamp"]  # timestamp-millis: the registry's deserializer returns a datetime
    return int(ts.timestamp() * 1000) if isinstance(ts, datetime) else int(ts)


def project(value: dict) -> dict:
    ts = value["timestamp"]
    ms = int(ts.timestamp() * 1000) if isinstance(ts, datetime) else int(ts)
    return {"loyalty_tier": value["loyalty_tier"], "total_cents": value["total_cents"], "timestamp": ms}


def main() -> None:
    bootstrap, registry, source, output, group, variant, window_ms, grace_ms, state_dir, commit_s = sys.argv[1:11]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=float(commit_s),
        state_dir=state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(
        source,
        key_deserializer="string",
        value_deserializer=AvroDeserializer(schema_registry_client_config=SchemaRegistryClientConfig(url=registry)),
        timestamp_extractor=event_time,
    )
    sdf = app.dataframe(topic)
    if variant == "group_by":
        # the repartition topic is JSON: the fields the window reads, the event time as epoch ms
        sdf = sdf.apply(project).group_by("loyalty_tier")
    elif variant != "key":
        raise SystemExit(f"unknown variant {variant!r}")
    sdf = (
        sdf.tumbling_window(int(window_ms), grace_ms=int(grace_ms))
        .agg(total_cents=Sum("total_cents"), count=Count())
        .final(closing_strategy="partition")  # closed by the partition's event time, as our aggregator's watermark
    )
    sdf.to_topic(app.topic(output, value_serializer="json", key_serializer="string"))
    app.run()


if __name__ == "__main__":
    main()
