"""`python -m kstream_lab.local_registry`: run the local registry in the foreground (`registry up` does this).

Settings come from the KSTREAM_* environment like everywhere else; the server binds 127.0.0.1 on
KSTREAM_REGISTRY_PORT. KSTREAM_REGISTRY_USERS_FILE turns on basic auth (local_registry/auth.py) and
KSTREAM_REGISTRY_TLS_CERT/_KEY serve https. Exit code 2 when the broker cannot be read at start-up
or the users file is bad.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from kstream_lab.errors import KStreamLabError
from kstream_lab.local_registry.app import LOG, RegistryService, create_app
from kstream_lab.local_registry.auth import RegistryUsers
from kstream_lab.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        users = RegistryUsers.load(settings.registry_users_file) if settings.registry_users_file else None
        service = RegistryService(settings)
        count = service.restore()
    except KStreamLabError as exc:
        LOG.error("start-up failed: %s", exc)
        sys.exit(2)
    LOG.info(
        "restored %d records from %s on %s: %d subjects, %d schemas",
        count,
        service.log.topic,
        settings.bootstrap,
        len(service.state.subject_names()),
        len(service.state.schemas),
    )
    if users is not None:
        LOG.info(
            "basic auth on: %d users (%s)",
            len(users.users),
            ", ".join(f"{u.name}:{u.role}" for u in users.users.values()),
        )
    tls = {}
    if settings.registry_tls_cert:
        tls = {"ssl_certfile": str(settings.registry_tls_cert), "ssl_keyfile": str(settings.registry_tls_key or "")}
    uvicorn.run(
        create_app(service, users),
        host="127.0.0.1",
        port=settings.registry_port,
        log_level="warning",
        access_log=False,
        **tls,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
