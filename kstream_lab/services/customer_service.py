"""Customer service: the loyalty-tier lookup the enricher calls, with fault injection at runtime.

Tiers come from :func:`kstream_lab.generator.customers.loyalty_tier_for`, the same function the
generator's truth uses, so enriched output is predictable to the record. ``PUT /admin/faults`` sets
added latency, an error rate and a fully-down switch while the service runs, so the enricher's retry,
circuit breaker and fallback are exercised for real rather than in mocks.

Run: ``kstream-lab worker customer-service`` (port from pipelines/orders.yaml, workers.customer_service), or any ASGI
server over ``apps/customer_service.py``'s ``app``.
"""

from __future__ import annotations

import asyncio
import random
import time

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from kstream_lab.generator.customers import loyalty_tier_for
from kstream_lab.observability.logs import setup_logging
from kstream_lab.observability.metrics import METRICS
from kstream_lab.workers.serving import serve_http

SERVICE = "customer-service"
UNFAULTED = ("/healthz", "/metrics", "/admin/faults")


class Faults(BaseModel):
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False


class TierRequest(BaseModel):
    customer_ids: list[str] = Field(max_length=10_000)


def create_app(faults: Faults | None = None) -> FastAPI:
    app = FastAPI(title="customer service")
    app.state.faults = faults or Faults()
    app.state.rng = random.Random()

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):
        t0 = time.perf_counter()
        f: Faults = app.state.faults
        path = request.url.path
        if path not in UNFAULTED:
            if f.down:
                METRICS.http_requests.labels(SERVICE, path, "503").inc()
                return JSONResponse({"detail": "customer service is down (fault injection)"}, status_code=503)
            if f.latency_ms:
                await asyncio.sleep(f.latency_ms / 1000)
            if f.error_rate and app.state.rng.random() < f.error_rate:
                METRICS.http_requests.labels(SERVICE, path, "500").inc()
                return JSONResponse({"detail": "injected error"}, status_code=500)
        response = await call_next(request)
        route = "/customers/{id}/tier" if path.startswith("/customers/") else path
        METRICS.http_requests.labels(SERVICE, route, str(response.status_code)).inc()
        METRICS.latency.labels(SERVICE).observe(time.perf_counter() - t0)
        return response

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "faults": app.state.faults.model_dump()}

    @app.get("/customers/{customer_id}/tier")
    def tier(customer_id: str) -> dict:
        return {"customer_id": customer_id, "loyalty_tier": loyalty_tier_for(customer_id)}

    @app.post("/tiers")
    def tiers(req: TierRequest) -> dict:
        return {"tiers": {cid: loyalty_tier_for(cid) for cid in req.customer_ids}}

    @app.get("/admin/faults")
    def get_faults() -> Faults:
        return app.state.faults

    @app.put("/admin/faults")
    def set_faults(faults: Faults) -> Faults:
        app.state.faults = faults
        return faults

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings, spec) -> None:
    """Run under uvicorn on the configured port until SIGTERM/SIGINT."""
    cfg = spec.workers.customer_service
    setup_logging(SERVICE)
    serve_http(create_app(), cfg.host, cfg.port)
