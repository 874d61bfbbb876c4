"""apps/*.py are thin entry points: they import only from the package and expose what uvicorn needs."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

APPS = sorted((ROOT / "apps").glob("*.py"))


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.name)
def test_an_entry_point_imports_only_from_the_package(path) -> None:
    tree = ast.parse(path.read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert modules and all(m.split(".")[0] == "kstream_lab" for m in modules), modules
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]  # the code is in the package


def test_uvicorn_finds_each_app_by_its_import_string() -> None:
    code = (
        "from uvicorn.importer import import_from_string as imp; "
        "print(sorted(r.path for r in imp('apps.order_service:app').routes if r.path.startswith('/o'))); "
        "print(sorted(r.path for r in imp('apps.customer_service:app').routes if r.path.startswith('/t')))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['/openapi.json', '/orders']", "['/tiers']"]
