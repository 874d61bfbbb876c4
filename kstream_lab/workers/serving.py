"""Running the FastAPI apps like the workers: SIGTERM/SIGINT -> graceful shutdown -> exit code 0.

uvicorn shuts down gracefully on SIGTERM but then re-raises the signal so the process dies *by* it
(exit status -15). A supervisor (``kstream-lab pipeline down``, systemd, Kubernetes) should see a clean
exit instead, like the Kafka workers give, so the re-raised signal lands on a no-op handler.
"""

from __future__ import annotations

import signal
from typing import Any

from kstream_lab.observability.tracing import traced_asgi


def serve_http(app: Any, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, finish in-flight requests and lifespan shutdown, return
    (with a server span per request when tracing is configured)."""
    import uvicorn

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # what uvicorn restores and re-raises into after shutdown
    uvicorn.run(traced_asgi(app), host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)
