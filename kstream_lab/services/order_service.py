"""Order service: ``POST /orders`` validates, assigns id and time, produces to orders_raw, answers 202.

The 202 goes out only after the broker acknowledged the record (delivery callback -> future), with no
flush per request; the idempotent producer batches concurrent requests. Invalid orders get 422 with
the offending fields (pydantic). Each order starts a W3C trace whose ``traceparent`` travels in the
Kafka headers through the enricher and aggregator.

Overload: at most ``queue_max_orders`` orders await the broker's acknowledgement at once (the
producer's queue bound, pipeline file ``workers.order_service``); an order beyond it is refused at
once with 503 and ``Retry-After``, never queued, so memory stays bounded and a client under
back-pressure knows when to come back. A refused order was never enqueued: retrying it cannot
duplicate it. The delivery timeout is the producer's ``message.timeout.ms``, so every enqueued order
gets its delivery report (stored or failed) before the request gives up waiting for it.

Run: ``kstream-lab worker order-service`` (port from pipelines/orders.yaml, workers.order_service), or any ASGI
server over ``apps/order_service.py``'s ``app``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from kstream_lab.errors import KStreamLabError, ProducerQueueFull
from kstream_lab.kafka.acking import AckingProducer
from kstream_lab.kafka.chatter import RepeatFilter
from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.observability.logs import setup_logging
from kstream_lab.observability.metrics import METRICS
from kstream_lab.observability.tracing import new_trace_headers, origin_headers, trace_id_of
from kstream_lab.pipeline_spec import OrderServiceConfig
from kstream_lab.workers.codec import value_encoder
from kstream_lab.workers.serving import serve_http

SERVICE = "order-service"
log = logging.getLogger(f"kstream_lab.{SERVICE}")
overload_log = logging.getLogger(f"kstream_lab.{SERVICE}.overload")  # thousands of refusals/s: one line per 10 s
overload_log.addFilter(RepeatFilter())


class OrderIn(BaseModel):
    """What a client sends; the service adds order_id and timestamp."""

    model_config = ConfigDict(extra="forbid", strict=True)
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    total_cents: int = Field(gt=0, le=100_000_000, description="integer cents, never a float")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    item_count: int = Field(default=1, ge=1, le=10_000)


class Accepted(BaseModel):
    order_id: str
    partition: int
    offset: int
    timestamp: int
    trace_id: str | None


REGISTRY_RETRY_S = 2.0  # while the registry is down: at most one registration attempt per this many seconds
ACK_SLACK_S = 5.0  # past the delivery timeout, a report that never came means the callback thread died


def producer_bounds(cfg: OrderServiceConfig) -> dict[str, int]:
    """The librdkafka settings of the overload rule (module docstring)."""
    return {"queue.buffering.max.messages": cfg.queue_max_orders, "message.timeout.ms": cfg.delivery_timeout_ms}


def unavailable(detail: str, retry_after_s: float) -> JSONResponse:
    """503 with ``Retry-After`` in whole seconds (at least 1): come back then, nothing was stored."""
    METRICS.http_requests.labels(SERVICE, "/orders", "503").inc()
    headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return JSONResponse({"detail": detail}, status_code=503, headers=headers)


def create_app(settings, spec) -> FastAPI:
    cfg: OrderServiceConfig = spec.workers.order_service
    topic = spec.topic(cfg.output)
    overloaded = (
        f"order not accepted: the order service is overloaded ({cfg.queue_max_orders} orders await the broker's "
        f"acknowledgement, workers.order_service.queue_max_orders); nothing was stored, retry after "
        f"{cfg.retry_after_ms} ms"
    )

    lock = asyncio.Lock()

    async def encoder():
        """The topic's encoder, built at start or -- if the schema registry could not be reached
        then -- by an order after it answers (RegistryError -> 503 until then). Attempts run in a
        thread, one at a time and at most one per ``REGISTRY_RETRY_S``, so an outage neither blocks
        the event loop (health checks keep answering) nor piles up requests behind the registry."""
        if app.state.encode is None:
            async with lock:
                if app.state.encode is None:
                    if time.monotonic() < app.state.retry_at:
                        raise RegistryError("schema registry unavailable; the order service retries shortly")
                    app.state.retry_at = time.monotonic() + REGISTRY_RETRY_S
                    app.state.encode = await asyncio.to_thread(value_encoder, settings, topic)
        return app.state.encode

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.encode, app.state.retry_at = None, 0.0
        try:
            await encoder()
        except RegistryError as exc:
            if not exc.unavailable:  # a refusal (e.g. an incompatible schema) is a real error
                raise
            log.warning("schema registry unavailable at start (%s); orders get 503 until it answers", exc.message)
        app.state.producer = AckingProducer(settings, **producer_bounds(cfg))
        yield
        app.state.producer.close()

    app = FastAPI(title="order service", lifespan=lifespan)

    @app.post("/orders", status_code=202, response_model=Accepted)
    async def create_order(order: OrderIn):
        t0 = time.perf_counter()
        order_id = str(uuid.uuid4())
        record = {"order_id": order_id, **order.model_dump(), "timestamp": int(time.time() * 1000)}
        headers = new_trace_headers() + origin_headers(record["timestamp"])
        try:
            value = (await encoder())(record)
            future = app.state.producer.produce(
                topic.name, key=order_id.encode(), value=value, headers=headers, timestamp=record["timestamp"]
            )
            ack = await asyncio.wait_for(asyncio.wrap_future(future), cfg.delivery_timeout_ms / 1000 + ACK_SLACK_S)
        except ProducerQueueFull:
            METRICS.errors.labels(SERVICE, "overloaded").inc()
            overload_log.warning("orders refused: producer queue full (%d)", cfg.queue_max_orders)
            return unavailable(overloaded, cfg.retry_after_ms / 1000)
        except (KStreamLabError, TimeoutError) as exc:
            METRICS.errors.labels(SERVICE, "produce").inc()
            detail = f"order not accepted: {exc or 'no delivery report within the delivery timeout'}"
            log.error("%s", detail, extra={"event_id": order_id})
            if isinstance(exc, RegistryError) and exc.unavailable:
                return unavailable(detail, REGISTRY_RETRY_S)
            METRICS.http_requests.labels(SERVICE, "/orders", "503").inc()
            return JSONResponse({"detail": detail}, status_code=503)
        METRICS.produced.labels(SERVICE, topic.name).inc()
        METRICS.http_requests.labels(SERVICE, "/orders", "202").inc()
        METRICS.latency.labels(SERVICE).observe(time.perf_counter() - t0)
        trace_id = trace_id_of(headers)
        log.info(
            "order accepted",
            extra={"event_id": order_id, "partition": ack.partition, "offset": ack.offset, "trace_id": trace_id},
        )
        return Accepted(
            order_id=order_id,
            partition=ack.partition,
            offset=ack.offset,
            timestamp=record["timestamp"],
            trace_id=trace_id,
        )

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "topic": topic.name}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings, spec) -> None:
    """Run under uvicorn on the configured port until SIGTERM/SIGINT."""
    cfg = spec.workers.order_service
    setup_logging(SERVICE)
    serve_http(create_app(settings, spec), cfg.host, cfg.port)
