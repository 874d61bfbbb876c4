"""The image's structure (hadolint in `make lint` checks the Dockerfile's practice; this checks its promises)."""

from __future__ import annotations

from tests.support import dockerfile as d
from tests.support.paths import ROOT


def test_two_stages_on_python_3_11_slim_and_the_native_fetch_built_in_the_first() -> None:
    build, runtime = d.stages()
    assert [s[0].args for s in (build, runtime)] == ["python:3.11-slim AS build", "python:3.11-slim"]
    runs = " ".join(i.args for i in build if i.keyword == "RUN")
    assert "python -m kstream_lab.kafka.native" in runs and "gcc" in runs
    assert d.env(build)["KSTREAM_NATIVE_CACHE_DIR"] == d.env(runtime)["KSTREAM_NATIVE_CACHE_DIR"]
    assert d.env(runtime)["KSTREAM_NATIVE_CACHE_DIR"].startswith(d.IMAGE_VENV + "/")
    assert not any(i.keyword == "RUN" and ("gcc" in i.args or "apt-get" in i.args) for i in runtime)  # no compiler


def test_the_wheel_is_installed_without_dev_dependencies_into_the_venv_the_runtime_copies() -> None:
    build, runtime = d.stages()
    install = next(i.args for i in build if i.keyword == "RUN" and "pip install" in i.args)
    assert "/dist/kstream_lab-*.whl" in install and "[dev]" not in install and "-e " not in install
    assert any(i.keyword == "COPY" and i.args == f"--from=build {d.IMAGE_VENV} {d.IMAGE_VENV}" for i in runtime)


def test_a_non_root_user_sigterm_and_the_worker_entrypoint() -> None:
    runtime = d.stages()[-1]
    (user,) = [i.args for i in runtime if i.keyword == "USER"]
    assert user not in ("0", "root") and user.isdigit()  # numeric, so runAsNonRoot can verify it
    assert [i.args for i in runtime if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]
    assert d.exec_form(runtime, "ENTRYPOINT") == ["kstream-lab", "worker"]
    assert d.exec_form(runtime, "CMD") == ["enricher"]
    assert d.env(runtime)["PATH"].startswith(f"{d.IMAGE_VENV}/bin:")


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        src.rstrip("/")
        for stage in d.stages()
        for i in stage
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for src in i.args.split()[:-1]
    }
    assert copied == allowed == {"pyproject.toml", "README.md", "kstream_lab", "pipelines", "notebooks"}
