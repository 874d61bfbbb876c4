"""`python -m kstream_lab.local_registry`: run the local registry in the foreground (`registry up` does this).

Settings come from the KSTREAM_* environment like everywhere else; the server binds 127.0.0.1 on
KSTREAM_REGISTRY_PORT. Exit code 2 when the broker cannot be read at start-up.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from kstream_lab.errors import KStreamLabError
from kstream_lab.local_registry.app import LOG, RegistryService, create_app
from kstream_lab.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    service = RegistryService(settings)
    try:
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
    uvicorn.run(
        create_app(service), host="127.0.0.1", port=settings.registry_port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
