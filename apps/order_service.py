"""Order service entry point: ``uvicorn apps.order_service:app``, or ``python apps/order_service.py``.

The code is :mod:`kstream_lab.services.order_service`; this file only builds the app for the
pipeline file of the settings (``KSTREAM_PIPELINE_FILE``, default ``pipelines/orders.yaml`` in the
working directory). ``kstream-lab worker order-service`` does the same from an installed package.
"""

from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.services.order_service import create_app, serve
from kstream_lab.settings import get_settings

settings = get_settings()
spec = load_pipeline(settings.pipeline_file)
app = create_app(settings, spec)

if __name__ == "__main__":
    serve(settings, spec)
