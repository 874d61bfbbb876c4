"""The workers' view of their configuration: the ``workers:`` section of pipelines/*.yaml.

The models live in :mod:`kstream_lab.pipeline_spec`, which validates them when the pipeline file is
loaded (a bad key names the file, line and key); they are re-exported here for the workers.
"""

from __future__ import annotations

from kstream_lab.pipeline_spec import (
    AggregatorConfig,
    CustomerServiceConfig,
    EnricherConfig,
    OrderServiceConfig,
    PipelineSpec,
    SinkConfig,
    WorkersConfig,
)

__all__ = [
    "AggregatorConfig",
    "CustomerServiceConfig",
    "EnricherConfig",
    "OrderServiceConfig",
    "SinkConfig",
    "WorkersConfig",
    "workers_config",
]


def workers_config(spec: PipelineSpec) -> WorkersConfig:
    """``spec.workers``: already typed and checked by :func:`~kstream_lab.pipeline_spec.load_pipeline`."""
    return spec.workers
