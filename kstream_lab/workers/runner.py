"""Building and running one worker process: ``kstream-lab worker NAME``.

A worker is a loop over kstream_lab.kafka with its processor, metrics server, JSON logs and signal
handling. SIGTERM/SIGINT/SIGHUP only set a stop flag: the loop finishes (and commits) the batch in hand,
closes the consumer (leaving the group), flushes the producer and the process exits 0. A fatal
Kafka error (e.g. this instance was fenced by a newer one) exits 3 so a supervisor restarts it
(``kstream-lab pipeline watch``, systemd, Kubernetes). An ACL denial exits 2 with a line naming
principal, operation and resource; the batch in hand is aborted, its input offsets uncommitted. A
refused login (wrong password, untrusted CA) exits 2 as well, its error line naming user, mechanism
and broker. A changelog that cannot be restored (StateError) exits 2 too, naming partition and key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from kstream_lab import processes
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import (
    AuthorizationError,
    ConfigError,
    DatabaseUnavailable,
    KStreamLabError,
    SecurityError,
    StateError,
)
from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.kafka.transactional import FatalKafkaError, LoopConfig, TransactionalLoop
from kstream_lab.observability.logs import setup_logging
from kstream_lab.observability.metrics import start_metrics_server
from kstream_lab.pipeline_spec import PipelineSpec, TopicSpec
from kstream_lab.schemas.aggregate import aggregate_schema, schema_fits
from kstream_lab.schemas.catalog import SchemaFile, schema_for_topic
from kstream_lab.schemas.serde import value_decoder
from kstream_lab.settings import Settings
from kstream_lab.sinks.base import open_sink
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import column_decoder, retrying_outages, value_encoder
from kstream_lab.workers.components import component
from kstream_lab.workers.enricher import EnricherProcessor
from kstream_lab.workers.order_rules import OrderRules
from kstream_lab.workers.sink import SinkWorker
from kstream_lab.workers.tiers import TierClient

log = logging.getLogger(__name__)
EXIT_FATAL = 3
EXIT_DENIED = 2  # an ACL or the login refused this principal: fix ACLs or secret, do not restart in a loop


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM, SIGINT or SIGHUP (main thread only)."""
    return processes.stop_on_signals(on_signal=lambda name: log.info("received %s, finishing the current batch", name))


def build_enricher(
    settings: Settings, spec: PipelineSpec, stop: threading.Event, instance: int | str
) -> TransactionalLoop:
    wc = spec.workers
    cfg = wc.enricher
    tiers = TierClient(
        wc.customer_service_url,
        timeout_s=cfg.request_timeout_ms / 1000,
        ttl_s=cfg.cache_ttl_ms / 1000,
        max_size=cfg.cache_size,
        attempts=cfg.retry_attempts,
        backoff_initial_s=cfg.retry_initial_ms / 1000,
        backoff_max_s=cfg.retry_max_ms / 1000,
        fail_max=cfg.breaker_fail_max,
        reset_s=cfg.breaker_reset_ms / 1000,
    )
    processor = EnricherProcessor(
        decode=retrying_outages(value_decoder(settings, spec.topic(cfg.input))),
        encode=value_encoder(settings, spec.topic(cfg.output)),
        tiers=tiers,
        output=cfg.output,
        dlq=cfg.dlq,
        rules=OrderRules(cfg.max_value_bytes, cfg.max_event_age_ms, cfg.max_event_lead_ms),
    )
    loop_cfg = LoopConfig(
        input_topic=cfg.input,
        group_id=cfg.group_id,
        transactional_id=f"{cfg.transactional_id}-{instance}",
        batch_size=cfg.batch_size,
    )
    return TransactionalLoop(settings, loop_cfg, processor, service="enricher", stop=stop)


def aggregator_processor(settings: Settings, spec: PipelineSpec) -> AggregatorProcessor:
    """The aggregator's processing (decode, fold, encode) as configured, without the Kafka loop."""
    cfg = spec.workers.aggregator
    agg = spec.aggregation(cfg.aggregation)
    if agg.source != cfg.input:
        raise KStreamLabError(
            f"aggregation {agg.name!r} reads {agg.source}, the aggregator worker reads {cfg.input}",
            hint="make workers.aggregator.input match the aggregation's source",
        )
    src = spec.topic(cfg.input)
    spec.topic(cfg.changelog)  # declared; load_pipeline checked its partition count against src's
    ints, others = AggregatorProcessor.fields(agg)
    output = spec.topic(cfg.output)
    return AggregatorProcessor(
        agg,
        decode=column_decoder(settings, src, ints=ints, others=others),
        encode_aggregate=value_encoder(settings, output, output_schema(settings, agg, cfg.group_columns, src, output)),
        output=cfg.output,
        late=cfg.late,
        dlq=cfg.dlq,
        group_columns=cfg.group_columns,
        changelog=cfg.changelog,
    )


def output_schema(
    settings: Settings, agg: AggregationSpec, group_columns: dict[str, str], src: TopicSpec, output: TopicSpec
) -> SchemaFile | None:
    """The output topic's declared schema when the aggregation writes exactly its fields (None: use
    it), else the record schema derived from the aggregation (kstream_lab.schemas.aggregate)."""
    if output.value_format != "avro":
        return None
    declared = schema_for_topic(settings, output)
    if schema_fits(declared, agg, group_columns):
        return None
    source = schema_for_topic(settings, src) if src.value_format == "avro" else None
    return aggregate_schema(agg, group_columns, source)


def build_aggregator(
    settings: Settings, spec: PipelineSpec, stop: threading.Event, instance: int | str
) -> TransactionalLoop:
    cfg = spec.workers.aggregator
    processor = aggregator_processor(settings, spec)
    loop_cfg = LoopConfig(
        input_topic=cfg.input,
        group_id=cfg.group_id,
        changelog_topic=cfg.changelog,
        transactional_id=f"{cfg.transactional_id}-{instance}",
        batch_size=cfg.batch_size,
    )
    return TransactionalLoop(settings, loop_cfg, processor, service="aggregator", stop=stop)


def build_sink(settings: Settings, spec: PipelineSpec, stop: threading.Event, instance: int | str) -> SinkWorker:
    cfg = spec.workers.sink
    if cfg.kind == "connect":
        raise ConfigError(
            f"{spec.path}: workers.sink.kind is connect: Kafka Connect's JDBC sink writes the target, not this worker",
            hint="`kstream-lab pipeline up` starts it, or `kstream-lab connect up` and `kstream-lab connect apply "
            "<pipeline file>`; set kind: python to run this worker",
        )
    return SinkWorker(
        settings,
        cfg,
        decode=retrying_outages(value_decoder(settings, spec.topic(cfg.input))),
        sink=open_sink(cfg.target, settings),
        stop=stop,
    )


# Back-off while the schema registry or the sink's database cannot be reached at start: doubling from 1 s up to 30 s.
START_RETRY_S, START_RETRY_MAX_S = 1.0, 30.0


class Worker(Protocol):
    """What a component's ``build`` returns: run() until its stop event is set."""

    def run(self) -> None: ...


def build_when_dependencies_answer(
    build: Callable[..., Worker], settings: Settings, spec: PipelineSpec, stop: threading.Event, instance: int | str
) -> Worker | None:
    """Build a worker, waiting for the schema registry or the sink's database if it cannot be reached yet.

    Building registers the output topic's Avro schema, so a registry that is down or restarting at
    that moment (it starts after the broker, and may come up after the workers) used to make the
    worker exit; so did the sink when its PostgreSQL was down (it creates the table at start).
    Unreachable or 5xx: wait and retry, logging each attempt, until it answers or a SIGTERM comes
    (then None). A refusal (an incompatible schema, 4xx, a wrong database password) is a real error
    and raised.
    """
    delay = START_RETRY_S
    while True:
        try:
            return build(settings, spec, stop, instance)
        except RegistryError as exc:
            if not exc.unavailable:
                raise
            log.warning("schema registry unavailable at start (%s); retrying in %.0f s", exc.message, delay)
        except DatabaseUnavailable as exc:
            log.warning("sink database unavailable at start (%s); retrying in %.0f s", exc.message, delay)
        if stop.wait(delay):
            return None
        delay = min(delay * 2, START_RETRY_MAX_S)


def run_worker(
    name: str,
    settings: Settings,
    spec: PipelineSpec,
    *,
    instance: int = 0,
    metrics_port: int | None = None,
    instance_name: str | None = None,
) -> int:
    """Run worker ``name`` until SIGTERM/SIGINT/SIGHUP; return the process exit code.

    ``instance`` numbers the processes one host runs (transactional id suffix, metrics port offset);
    ``instance_name`` replaces it in the transactional id where each process has its own address and
    a name unique among the live ones: a Kubernetes pod's name. Zombies are fenced by the consumer
    group's generation (the offsets are sent with the group metadata), so the id need not be stable.
    """
    worker_component = component(name, "worker")
    setup_logging(name)
    stop = stop_on_signals()
    configured = worker_component.port(spec.workers, instance)
    port = configured if metrics_port is None else metrics_port + instance
    bound = start_metrics_server(port, worker_component.config(spec.workers).metrics_host)
    log.info("starting %s instance %s (metrics on port %s)", name, instance_name or instance, bound)
    try:
        worker = build_when_dependencies_answer(
            worker_component.load(), settings, spec, stop, instance if instance_name is None else instance_name
        )
        if worker is None:
            log.info("%s stopped before it started", name)
            return 0
        worker.run()
    except FatalKafkaError as exc:
        log.error("fatal: %s", exc)
        return EXIT_FATAL
    except AuthorizationError as exc:  # an ACL is missing: a restart would be refused the same way
        log.error("denied: %s", exc)
        return EXIT_DENIED
    except SecurityError as exc:  # a refused login or TLS failure: the secret or CA must change first
        log.error("refused: %s", exc)
        return EXIT_DENIED
    except StateError as exc:  # a corrupt changelog: a restart would restore the same records
        log.error("state: %s", exc)
        return EXIT_DENIED
    log.info("%s stopped cleanly", name)
    return 0
