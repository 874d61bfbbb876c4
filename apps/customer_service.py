"""Customer service entry point: ``uvicorn apps.customer_service:app``, or ``python apps/customer_service.py``.

The code is :mod:`kstream_lab.services.customer_service`; ``kstream-lab worker customer-service`` runs
the same app on the port of the pipeline file (``KSTREAM_PIPELINE_FILE``).
"""

from kstream_lab.services.customer_service import create_app, serve
from kstream_lab.settings import get_settings

app = create_app()

if __name__ == "__main__":
    from kstream_lab.pipeline_spec import load_pipeline

    settings = get_settings()
    serve(settings, load_pipeline(settings.pipeline_file))
