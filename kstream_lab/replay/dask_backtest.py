"""Back-tests on a Dask distributed cluster: one task per topic partition.

The semantics are per partition (docs/semantics.md: each partition's watermark, windows and late
records depend on that partition's records in offset order alone), so a back-test splits into one
independent task per partition with nothing to exchange: each task reads its partition's offset
range with the same bounded reader as a local back-test (the native fetch where it is built), runs
the same batch plan, and returns its windows and late records. The driver concatenates them and
judges them against the live side exactly as in one process, so the merged report equals the
single-process one.

Workers need ``kstream_lab`` installed (the same version) and network access to the brokers and the
registry; the tasks carry the driver's ``Settings`` (credentials included, as a worker must log in).
``distributed`` is an optional dependency: ``pip install 'kstream_lab[dask]'``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import polars as pl

from kstream_lab.aggregations.batch import BatchResult, run_batch
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import ConfigError
from kstream_lab.replay.reader import ReplayRange, read_range
from kstream_lab.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

CONNECT_TIMEOUT_S = 15


def partition_task(
    settings: Settings, rng: ReplayRange, columns: list[str], specs: Sequence[AggregationSpec]
) -> tuple[list[BatchResult], int]:
    """Runs on a worker: read one partition's range, run each spec's batch plan; (results, rows read)."""
    frame = read_range(settings, rng, value_format="auto", columns=columns)
    return [run_batch(spec, frame.lazy()) for spec in specs], frame.height


def run_on_cluster(
    cluster: Any, settings: Settings, rng: ReplayRange, columns: list[str], specs: Sequence[AggregationSpec]
) -> tuple[list[BatchResult], int]:
    """Each spec's batch result over ``rng``, computed one partition per task on ``cluster`` (a
    scheduler address such as ``tcp://host:8786`` or a ``distributed.Client``), merged."""
    run = uuid.uuid4().hex[:8]
    pieces = [
        ReplayRange(rng.topic, {p: r}, rng.snapshot_ms) for p, r in sorted(rng.partitions.items()) if r.offsets > 0
    ] or [rng]  # nothing to read: one task still returns the plan's empty, typed result
    with _client(cluster) as client:
        futures = [
            client.submit(partition_task, settings, piece, columns, list(specs), key=f"backtest-{run}-{n}", pure=False)
            for n, piece in enumerate(pieces)
        ]
        parts = client.gather(futures)
    merged = [
        BatchResult(
            windows=pl.concat([results[i].windows for results, _ in parts], how="vertical_relaxed"),
            late=pl.concat([results[i].late for results, _ in parts], how="vertical_relaxed"),
        )
        for i in range(len(specs))
    ]
    return merged, sum(rows for _, rows in parts)


@contextmanager
def _client(cluster: Any) -> Iterator[Any]:
    """A client for ``cluster``: the caller's own ``Client`` as is, or one connected (and closed) here."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "a back-test on a Dask cluster needs the 'distributed' package",
            hint="pip install 'kstream_lab[dask]'",
        ) from None
    if isinstance(cluster, Client):
        yield cluster
        return
    address = getattr(cluster, "scheduler_address", cluster)  # a LocalCluster / SpecCluster, or an address
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"--dask: not a scheduler address: {cluster!r}", hint="give one like tcp://127.0.0.1:8786")
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"--dask: the Dask scheduler at {address} did not answer within {CONNECT_TIMEOUT_S} s ({exc})",
            hint="start one with `dask scheduler` (and `dask worker ADDRESS`), or check the address",
        ) from None
    try:
        yield client
    finally:
        client.close()


__all__ = ["partition_task", "run_on_cluster"]
