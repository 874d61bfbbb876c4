"""The enricher's resilient client for the customer service: TTL cache, retry, circuit breaker.

Transient failures (connection refused, timeouts, 5xx, 429) are retried with exponential backoff and
jitter (tenacity). A lookup that still fails counts against a circuit breaker (pybreaker); once it
opens, lookups fail fast for ``reset`` seconds and the enricher falls back to tier ``unknown`` instead
of stalling its partitions. Tiers it did get are cached for ``ttl`` seconds, so a short outage of the
service only affects customers not seen recently. Fallbacks are never cached.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import httpx
import pybreaker
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from kstream_lab.generator.customers import UNKNOWN_TIER
from kstream_lab.observability.metrics import BREAKER_STATES, METRICS

log = logging.getLogger(__name__)
CHUNK = 1000


class TransientLookupError(Exception):
    """The customer service could not answer now; worth retrying."""


class _BreakerMetrics(pybreaker.CircuitBreakerListener):
    def __init__(self, service: str) -> None:
        self.service = service

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state, new_state) -> None:
        name = getattr(new_state, "name", str(new_state))
        METRICS.breaker_state.labels(self.service, cb.name).set(BREAKER_STATES.get(name, -1))
        log.warning("circuit breaker %s: %s -> %s", cb.name, getattr(old_state, "name", old_state), name)


class TierClient:
    """Loyalty tiers for sets of customer ids, never raising: failures become ``unknown``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 1.0,
        ttl_s: float = 60.0,
        max_size: int = 100_000,
        attempts: int = 3,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        fail_max: int = 3,
        reset_s: float = 3.0,
        service: str = "enricher",
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)
        self.ttl_s, self.max_size, self.clock = ttl_s, max_size, clock
        self.cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_s, name="customer-service", listeners=[_BreakerMetrics(service)]
        )
        METRICS.breaker_state.labels(service, "customer-service").set(0)
        self.fallbacks = 0
        self._fetch = retry(
            retry=retry_if_exception_type(TransientLookupError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s),
            reraise=True,
        )(self._fetch_once)

    @property
    def state(self) -> str:
        return self.breaker.current_state

    def lookup(self, customer_ids: Iterable[str]) -> dict[str, str]:
        """Tier per id: from the cache, else the service; ``unknown`` when the service is unavailable."""
        now = self.clock()
        out: dict[str, str] = {}
        missing: list[str] = []
        for cid in set(customer_ids):
            hit = self.cache.get(cid)
            if hit is not None and hit[1] > now:
                out[cid] = hit[0]
            else:
                missing.append(cid)
        for i in range(0, len(missing), CHUNK):
            chunk = sorted(missing[i : i + CHUNK])
            fetched = self._guarded(chunk)
            expires = self.clock() + self.ttl_s
            for cid in chunk:
                tier = fetched.get(cid)
                if tier is None:
                    out[cid] = UNKNOWN_TIER
                    self.fallbacks += 1
                else:
                    out[cid] = tier
                    self._remember(cid, tier, expires)
        return out

    def _guarded(self, ids: list[str]) -> dict[str, str]:
        try:
            return self.breaker.call(self._fetch, ids)
        except pybreaker.CircuitBreakerError:
            return {}
        except (TransientLookupError, httpx.HTTPError, ValueError) as exc:
            log.warning("customer service lookup failed for %d ids: %s", len(ids), exc)
            return {}

    def _fetch_once(self, ids: list[str]) -> dict[str, str]:
        try:
            resp = self.http.post("/tiers", json={"customer_ids": ids})
        except httpx.TransportError as exc:
            raise TransientLookupError(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientLookupError(f"HTTP {resp.status_code}")
        resp.raise_for_status()
        return dict(resp.json()["tiers"])

    def _remember(self, cid: str, tier: str, expires: float) -> None:
        self.cache[cid] = (tier, expires)
        self.cache.move_to_end(cid)
        while len(self.cache) > self.max_size:
            self.cache.popitem(last=False)

    def close(self) -> None:
        self.http.close()
