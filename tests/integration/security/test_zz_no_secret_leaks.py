"""Runs last among the security tests (pytest runs modules in name order): no password handed out
during them appears in any log file under the secured data dir, in a worker's log or in any CLI
output captured by them (the password files themselves are the only place they live)."""

from __future__ import annotations

from pathlib import Path

from tests.support.secure import CAPTURED, LOGS


def test_zz_no_secret_in_any_log_or_output(secure_kafka) -> None:
    """Runs last here: every password used must appear in no log file under the secured data dir
    and in no captured CLI output (the password files themselves are the only place they live)."""
    secrets_used = [secure_kafka.admin_password, *secure_kafka.passwords]
    assert len(secrets_used) >= 5
    data = Path(secure_kafka.settings.data_dir)
    logs = [*data.glob("*.log"), *data.glob("*/*.log"), *LOGS]  # process logs, not Kafka's segment files
    assert {"broker.log", "registry.log"} <= {p.name for p in logs}
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets_used:
            assert secret not in text, f"a password leaked into {path}"
    assert CAPTURED, "the security tests captured CLI output"
    for out in CAPTURED:
        for secret in secrets_used:
            assert secret not in out
    assert "sasl.password" not in repr(secure_kafka.settings)
    assert secure_kafka.admin_password not in repr(secure_kafka.settings)
