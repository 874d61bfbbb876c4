"""What the live dashboard shows, as plain functions: sales per minute, pipeline health, back-tests.

The page (:mod:`kstream_lab.services.dashboard`) only lays these out; everything that reads Kafka,
the sink or the workers' metrics lives here, with unit tests, and goes through kstream_lab's public
pieces (admin, replay, sinks, backtest) so the page sees exactly what the CLI and notebooks see.
"""

from __future__ import annotations

from dataclasses import dataclass

from kstream_lab.monitoring.health import PipelineTopics
from kstream_lab.monitoring.sales import SinkTarget, sink_target
from kstream_lab.monitoring.scrape import metrics_endpoints
from kstream_lab.pipeline_spec import PipelineSpec, load_pipeline
from kstream_lab.settings import Settings, get_settings


@dataclass(frozen=True)
class DashboardContext:
    """Everything the page needs to know about the pipeline it watches, from settings + pipeline file."""

    settings: Settings
    spec: PipelineSpec
    sink: SinkTarget
    topics: PipelineTopics
    endpoints: dict[str, str]
    window_ms: int
    grace_ms: int

    @classmethod
    def load(cls, settings: Settings | None = None) -> DashboardContext:
        """Read KSTREAM_* settings and the pipeline file; raises ConfigError on a bad file."""
        settings = settings or get_settings()
        spec = load_pipeline(settings.pipeline_file)
        window = spec.aggregation().window
        return cls(
            settings,
            spec,
            sink_target(settings, spec),
            PipelineTopics.from_spec(spec),
            metrics_endpoints(spec),
            window.size_ms,
            window.grace_ms,
        )


__all__ = ["DashboardContext"]
