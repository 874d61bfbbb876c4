# The kstream-lab image: one image for every process of the pipeline (docs/deploy.md).
#   docker build -t kstream-lab .
#   docker run kstream-lab enricher            # = kstream-lab worker enricher
# The build stage compiles replay's native fetch (kstream_lab/kafka/rdfetch.c) against the librdkafka
# that confluent-kafka bundles; the runtime stage has no compiler and finds the library prebuilt,
# because the venv lives at the same path in both stages (the library's name hashes that path).
# tests/integration/test_wheel_install.py performs these steps in a fresh venv and runs each entrypoint.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kstream_lab ./kstream_lab
ENV KSTREAM_NATIVE_CACHE_DIR=/opt/kstream-lab/native
# The wheel and its runtime dependencies only (no [dev] extra).
RUN python -m venv /opt/kstream-lab \
    && /opt/kstream-lab/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && /opt/kstream-lab/bin/pip install --no-cache-dir /dist/kstream_lab-*.whl \
    && /opt/kstream-lab/bin/python -m kstream_lab.kafka.native

FROM python:3.11-slim
COPY --from=build /opt/kstream-lab /opt/kstream-lab
# A fixed non-root uid, so a pod's securityContext (runAsNonRoot, fsGroup) can name it.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/kstream-lab --create-home kstream
WORKDIR /app
# Pipeline files and notebooks are read from the working directory (the chart mounts its ConfigMap
# over pipelines/orders.yaml); the schemas next to it come from here.
COPY pipelines ./pipelines
COPY notebooks ./notebooks
ENV PATH=/opt/kstream-lab/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/kstream-lab \
    KSTREAM_NATIVE_CACHE_DIR=/opt/kstream-lab/native \
    KSTREAM_DATA_DIR=/var/lib/kstream-lab/data \
    KSTREAM_REPORTS_DIR=/var/lib/kstream-lab/reports
USER 10001
# Workers and apps finish the batch (or requests) in hand on SIGTERM and exit 0 (docs/pipeline.md).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kstream-lab", "worker"]
CMD ["enricher"]
