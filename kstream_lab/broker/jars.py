"""Fetching the broker's classpath with Maven (cached outside the repo, reused across data dirs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kstream_lab.errors import BrokerError

POM = Path(__file__).with_name("pom.xml")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def lib_dir(cache_dir: Path) -> Path:
    return cache_dir / "lib"


def jars_present(cache_dir: Path) -> bool:
    lib = lib_dir(cache_dir)
    return lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")) and any(lib.glob("log4j-slf4j-impl-*.jar"))


def fetch_jars(cache_dir: Path, *, quiet: bool = True) -> Path:
    """Resolve Kafka and its runtime dependencies into ``cache_dir/lib`` (idempotent)."""
    if jars_present(cache_dir):
        return lib_dir(cache_dir)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (mvn) not found on PATH; it is needed once to fetch the Kafka jars",
            hint="install maven (apt-get install maven) or use the conda env in environment.yml",
        )
    tmp = cache_dir / "lib.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"mvn could not fetch the Kafka jars:\n{tail}", hint="check network access to Maven")
    shutil.rmtree(lib_dir(cache_dir), ignore_errors=True)
    tmp.rename(lib_dir(cache_dir))
    return lib_dir(cache_dir)


def kafka_version(cache_dir: Path) -> str | None:
    for jar in lib_dir(cache_dir).glob("kafka_2.13-*.jar"):
        return jar.stem.removeprefix("kafka_2.13-")
    return None
