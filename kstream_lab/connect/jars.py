"""Fetching the Connect worker's classpath and its plugins with Maven (cached outside the repo).

Everything lands under ``<kafka_cache_dir>/connect``:

- ``lib/``: Apache Kafka's Connect runtime, JSON converter and transforms (``pom.xml`` here), the
  same Kafka version as the broker's;
- ``plugins/debezium-jdbc/``: Debezium's JDBC sink connector and the PostgreSQL driver
  (``plugins/jdbc-sink.pom.xml``), loaded isolated from the worker through ``plugin.path``, with
  the one-class stand-in for hibernate-agroal built from ``shim/`` (the connector's config names
  that class; the pool itself is not obtainable, Hibernate's DriverManager provider is used);
- ``plugins/kstream-avro-converter/``: kstream_lab's converter for Confluent-framed Avro, built from
  ``converter/`` (Java) with ``mvn package`` and copied there with its runtime dependencies.

Each part is fetched only when it is missing (a completed part has a marker file), so ``connect
fetch`` (run by ``make setup``) is idempotent and cheap the second time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from kstream_lab.errors import ConnectError

HERE = Path(__file__).parent
WORKER_POM = HERE / "pom.xml"
JDBC_POM = HERE / "plugins" / "jdbc-sink.pom.xml"
CONVERTER_DIR = HERE / "converter"
SHIM_DIR = HERE / "shim"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
JDBC_PLUGIN, CONVERTER_PLUGIN = "debezium-jdbc", "kstream-avro-converter"
DONE = ".complete"  # written last: a part without it is fetched again


def connect_home(cache_dir: Path) -> Path:
    return cache_dir / "connect"


def lib_dir(cache_dir: Path) -> Path:
    return connect_home(cache_dir) / "lib"


def plugin_dir(cache_dir: Path) -> Path:
    return connect_home(cache_dir) / "plugins"


def _digest(*paths: Path) -> str:
    """The content of ``paths`` (files, or every file under a directory): a change refetches or rebuilds."""
    digest = hashlib.sha256()
    for root in paths:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file():
                digest.update(str(path.relative_to(HERE)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _parts(cache_dir: Path) -> dict[Path, tuple[Path, Path | None, str]]:
    """Each part's directory: (the pom whose runtime dependencies it holds, the module built into it
    or None, the digest its marker must hold)."""
    return {
        lib_dir(cache_dir): (WORKER_POM, None, _digest(WORKER_POM)),
        plugin_dir(cache_dir) / JDBC_PLUGIN: (JDBC_POM, SHIM_DIR, _digest(JDBC_POM, SHIM_DIR)),
        plugin_dir(cache_dir) / CONVERTER_PLUGIN: (CONVERTER_DIR / "pom.xml", CONVERTER_DIR, _digest(CONVERTER_DIR)),
    }


def _complete(part: Path, digest: str) -> bool:
    done = part / DONE
    return done.is_file() and done.read_text() == digest


def jars_present(cache_dir: Path) -> bool:
    return all(_complete(part, digest) for part, (_, _, digest) in _parts(cache_dir).items())


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConnectError(
            "Maven (mvn) not found on PATH; it is needed once to fetch the Kafka Connect jars",
            hint="install maven (apt-get install maven) or use the conda env in environment.yml",
        )
    return mvn


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ConnectError(f"mvn could not {what}:\n{tail}", hint="check network access to Maven")


def _copy_dependencies(mvn: str, pom: Path, out: Path, quiet: bool) -> None:
    _run(
        [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
        ],
        f"fetch the dependencies of {pom.name}",
        cwd=out.parent,
    )


def fetch_connect(cache_dir: Path, *, quiet: bool = True) -> Path:
    """Fetch (and build) whatever part is missing; returns the connect home (idempotent)."""
    parts = _parts(cache_dir)
    if all(_complete(part, digest) for part, (_, _, digest) in parts.items()):
        return connect_home(cache_dir)
    mvn = _mvn()
    for part, (pom, module, digest) in parts.items():
        if _complete(part, digest):
            continue
        tmp = part.with_name(part.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if module is not None:
            build = connect_home(cache_dir) / f"{module.name}-build"
            shutil.rmtree(build, ignore_errors=True)
            flag = f"-Dkstream.build.dir={build}"
            _run(
                [mvn, "-B", *(["-q"] if quiet else []), "-f", str(module / "pom.xml"), "package", flag],
                f"build {module.relative_to(HERE)}",
                cwd=tmp.parent,
            )
            for jar in build.glob("*.jar"):
                shutil.copy2(jar, tmp / jar.name)
            shutil.rmtree(build, ignore_errors=True)
        _copy_dependencies(mvn, pom, tmp, quiet)
        (tmp / DONE).write_text(digest)
        shutil.rmtree(part, ignore_errors=True)
        tmp.rename(part)
    return connect_home(cache_dir)
