"""Writing a new aggregation in a notebook: define it in a cell, run it over history, save it.

The loop notebook 04_new_aggregation walks through: :func:`aggregation` parses a cell's YAML (the
same keys as a pipeline file's ``aggregations:`` entry) against the deployed pipeline, so a typo or an
unknown source topic is one line naming the key; :func:`preview` runs it over a topic range with the
batch engine -- the one a back-test runs, equal to the live fold -- optionally sweeping graces and
window sizes over the same read; ``kstream_lab.backtest(what_if=spec)`` compares it with the live
output of the deployed one; :func:`save_aggregation` writes a pipeline file with it added and the
aggregator pointed at it, validated by loading it back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import ValidationError

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import PipelineSpec, load_pipeline
from kstream_lab.replay.sweep import Sweep, SweepArg
from kstream_lab.settings import Settings


def aggregation(definition: str | dict[str, Any], *, name: str = "draft", pipeline: PipelineSpec) -> AggregationSpec:
    """``definition``: YAML text or a dict with an aggregation's keys (source, window, metrics, ...)."""
    if isinstance(definition, str):
        try:
            body = yaml.safe_load(definition)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1} of the definition)" if mark else ""
            raise ConfigError(f"aggregation {name!r}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    else:
        body = dict(definition)
    if not isinstance(body, dict):
        raise ConfigError(f"aggregation {name!r}: expected a mapping of keys (source, window, metrics, ...)")
    try:
        spec = AggregationSpec.model_validate({"name": name, **body})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'] if not str(x).startswith('function-')) or '(top)'}: "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"aggregation {name!r}: {problems}", hint="fix the key(s) named above") from None
    if spec.source not in pipeline.topics:
        raise ConfigError(
            f"aggregation {name!r}: source: no topic named {spec.source!r} in {pipeline.path}",
            hint=f"declared topics: {', '.join(pipeline.topics)}",
        )
    return spec


@dataclass(frozen=True)
class Preview:
    """An aggregation over a range: every window (``final`` as the live fold would emit it), the late
    records, and the sweep's table when one was asked for."""

    spec: AggregationSpec
    windows: pl.DataFrame
    late: pl.DataFrame
    ranges: dict[int, tuple[int, int]]
    seconds: float
    sweep: Sweep | None = None

    @property
    def finals(self) -> pl.DataFrame:
        return self.windows.filter(pl.col("final"))

    def summary(self) -> list[str]:
        parts = ", ".join(f"p{p}=[{s},{e})" for p, (s, e) in sorted(self.ranges.items()))
        lines = [
            f"{self.spec.name or 'aggregation'} over {parts}: {self.windows.height:,} windows "
            f"({self.finals.height:,} final), {self.late.height:,} late records ({self.seconds:.1f}s)"
        ]
        return lines + (self.sweep.summary() if self.sweep is not None else [])


def preview(
    settings: Settings,
    spec: AggregationSpec,
    start: Any = "earliest",
    end: Any = "latest",
    *,
    sweep: SweepArg | None = None,
    cluster: Any = None,
) -> Preview:
    """Run ``spec`` over ``[start, end)`` of its source with the back-test's batch engine (one read,
    the sweep's variants over it; on Dask with ``cluster``)."""
    from kstream_lab.pipeline_spec import AggregatorConfig
    from kstream_lab.replay.backtest import BacktestRequest, compute_results
    from kstream_lab.replay.reader import resolve_range
    from kstream_lab.replay.sweep import parse_sweep, sweep_table, variants

    t0 = time.monotonic()
    sweeps = tuple(variants(spec, parse_sweep(sweep))) if sweep else ()
    req = BacktestRequest(
        settings, spec, AggregatorConfig(input=spec.source), start, end, spec.source, None, cluster, sweeps
    )
    rng = resolve_range(settings, spec.source, start, end)
    computed = compute_results(req, rng)
    table = sweep_table(spec, computed.base, list(sweeps), computed.sweep) if sweeps else None
    windows, late = computed.base.windows, computed.base.late
    return Preview(spec, windows, late, rng.as_offsets(), time.monotonic() - t0, table)


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def spec_to_yaml(spec: AggregationSpec) -> dict[str, Any]:
    """The pipeline-file form of ``spec`` (durations as 10m / 30s), which loads back to an equal spec."""
    w = spec.window
    window: dict[str, Any] = {"type": w.type}
    if w.type == "session":
        window["gap"] = _duration(int(w.gap_ms or 0))
    else:
        window["size"] = _duration(w.size_ms)
    if w.type == "hopping":
        window["advance"] = _duration(int(w.advance_ms or 0))
    window["grace"] = _duration(w.grace_ms)
    out: dict[str, Any] = {"source": spec.source, "time_field": spec.time_field, "window": window}
    if spec.filter is not None:
        out["filter"] = spec.filter
    if spec.fields:
        out["fields"] = dict(spec.fields)
    if spec.group_by:
        out["group_by"] = list(spec.group_by)
    out["metrics"] = {m: {ms.op: getattr(ms, ms.op)} for m, ms in spec.metrics.items()}
    return out


def save_aggregation(spec: AggregationSpec, pipeline_file: str | Path, out: str | Path, *, deploy: bool = True) -> Path:
    """A copy of ``pipeline_file`` at ``out`` with ``spec`` added under ``aggregations:`` (and, with
    ``deploy``, ``workers.aggregator.aggregation`` set to it), loaded back to prove it valid. The
    original is never touched; the copy is plain YAML (the original's comments are not carried)."""
    source, target = Path(pipeline_file), Path(out)
    if source.resolve() == target.resolve():
        raise ConfigError(f"{target} is the deployed pipeline file", hint="save to a new file and review the diff")
    name = spec.name or "draft"
    data = yaml.safe_load(source.read_text())
    if name in (data.get("aggregations") or {}):
        raise ConfigError(f"{source} already declares an aggregation named {name!r}", hint="pick another name")
    old = load_pipeline(source)
    data.setdefault("aggregations", {})[name] = spec_to_yaml(spec)
    aggregator = data.setdefault("workers", {}).setdefault("aggregator", {})
    aggregator["aggregation"] = name if deploy else (aggregator.get("aggregation") or old.aggregation().name)
    header = f"# written by kstream_lab.save_aggregation from {source.name}: aggregation {name!r} added\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(data, sort_keys=False))
    saved = load_pipeline(target)
    if saved.aggregation(name).model_copy(update={"name": ""}) != spec.model_copy(update={"name": ""}):
        raise ConfigError(f"{target}: the saved aggregation does not load back equal to the one given")
    return target


__all__ = ["Preview", "aggregation", "preview", "save_aggregation", "spec_to_yaml"]
