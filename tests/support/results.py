"""A chaos test's figures as a JSON result file, when the run asks for one (``make chaos`` does).

Tests never assert on speed; a run that records its figures (records in, out, duplicates, lost,
wall time, load average) leaves them in ``bench/results/`` like the benchmarks, to be read beside
the table in bench/README.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_ENV = "KSTREAM_CHAOS_RESULTS"


def record_result(figures: dict[str, Any], env: str = RESULTS_ENV) -> Path | None:
    """Write ``figures`` (plus when, where and the load average) to the path in ``$env``; None when unset."""
    target = os.environ.get(env)
    if not target:
        return None
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        **figures,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
