"""ACLs as code on the secured broker: `acls apply` of the repo's pipeline file is idempotent and
grants exactly the derived bindings; the analyst may read but is denied a write with one line naming
principal, operation and resource; a non-admin sees no ACLs and may not change them (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

from kstream_lab.acls import derive_acls
from kstream_lab.kafka.acls import list_acls
from kstream_lab.pipeline_spec import load_pipeline
from tests.support.paths import ROOT

PIPELINE = ROOT / "pipelines/orders.yaml"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kstream_lab", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=180,
    )


def test_apply_is_idempotent_and_the_analyst_is_denied_writes(secure_kafka):
    env = secure_kafka.env()
    first = cli(env, "acls", "apply", str(PIPELINE))
    assert first.returncode == 0, first.stderr
    declared = derive_acls(load_pipeline(PIPELINE))
    assert f"{len(declared)} created, 0 removed, 0 undeclared kept, 0 unchanged" in first.stdout
    assert "created  User:analyst may READ topic orders_raw" in first.stdout
    again = cli(env, "acls", "apply", str(PIPELINE))
    assert (
        again.returncode == 0
        and again.stdout.strip() == f"0 created, 0 removed, 0 undeclared kept, {len(declared)} unchanged"
    )
    managed = {b.principal for b in declared}
    assert [b for b in list_acls(secure_kafka.settings) if b.principal in managed] == declared

    _name, password, _s = secure_kafka.make_user("probe")
    from kstream_lab.kafka.users import set_password

    set_password(secure_kafka.settings, "analyst", password)
    listing = cli(secure_kafka.env("analyst", password), "acls", "list")
    assert listing.returncode == 0 and listing.stdout == "(no ACLs)\n"  # the broker shows it nothing
    refused = cli(secure_kafka.env("analyst", password), "acls", "apply", str(PIPELINE), "--force")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "User:analyst may not ALTER the cluster" in refused.stderr
    assert password not in refused.stderr + refused.stdout
