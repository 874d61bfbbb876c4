"""What an authentication or TLS failure really was, said in one line, and raised at its first sign.

librdkafka retries a failed SASL login or TLS handshake forever and reports only "Broker transport
failure" to a metadata call; the real cause arrives through ``error_cb`` (``_AUTHENTICATION``,
``_SSL``). Every client built by ``clients.client_config`` gets :func:`security_error_cb`, which
raises :class:`SecurityError` from the next ``poll``/``consume``/``flush``, so the CLI and the
workers stop within a second or two. A plaintext client dialling a TLS port gets no such error (the
broker just hangs up), so :func:`speaks_tls` checks the port when a plaintext connection failed.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kstream_lab.errors import SecurityError

SECRET_KEYS = ("password", "secret", "token", "basic.auth.user.info", "ssl.key.pem", "ssl.keystore.key")


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A client configuration safe to print or log: secret values replaced by ``<hidden>``."""
    return {k: "<hidden>" if any(s in k for s in SECRET_KEYS) else v for k, v in conf.items()}


def _who(conf: Mapping[str, Any]) -> str:
    user = conf.get("sasl.username")
    mechanism = conf.get("sasl.mechanisms") or conf.get("sasl.mechanism") or "SASL"
    return f"user {user!r} ({mechanism})" if user else f"{mechanism} login"


def security_failure(err: KafkaError, conf: Mapping[str, Any]) -> SecurityError | None:
    """The clear error for a client error event, or None when it is not about authentication or TLS."""
    broker, text = conf.get("bootstrap.servers", "?"), err.str().split("/bootstrap: ", 1)[-1]
    if err.code() == KafkaError._AUTHENTICATION:
        return SecurityError(
            f"authentication failed for {_who(conf)} at {broker}: the broker refused the credentials",
            hint="check KSTREAM_SASL_USERNAME and KSTREAM_SASL_PASSWORD (or KSTREAM_SASL_PASSWORD_FILE)",
        )
    if err.code() == KafkaError._SSL or (err.code() == KafkaError._TRANSPORT and "ssl" in text.lower()):
        if "certificate verify failed" in text:
            ca = conf.get("ssl.ca.location") or "the system CAs"
            return SecurityError(
                f"TLS to {broker}: the broker's certificate is not signed by a CA this client trusts ({ca})",
                hint="set KSTREAM_SSL_CA_LOCATION to the broker's CA PEM "
                "(the secured local broker's is <data dir>/broker/secure/ca.pem)",
            )
        detail = text.split(" (after ")[0]
        return SecurityError(f"TLS handshake with {broker} failed: {detail}")
    return None


def security_error_cb(conf: Mapping[str, Any]) -> Callable[[KafkaError], None]:
    """An ``error_cb`` that raises the first authentication/TLS failure (other errors stay librdkafka's)."""

    def on_error(err: KafkaError) -> None:
        failure = security_failure(err, conf)
        if failure is not None:
            raise failure

    return on_error


def await_metadata(client: Any, timeout: float) -> Any | None:
    """The cluster metadata as soon as ``client`` (a producer or admin client) gets it, or None after
    ``timeout``. Serves the error callbacks between short attempts, so a refused login or a failed TLS
    handshake raises SecurityError (from :func:`security_error_cb`) within a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.list_topics(timeout=max(0.1, min(0.5, deadline - time.monotonic())))
        except KafkaException:
            client.poll(0)
            if time.monotonic() >= deadline:
                return None


def speaks_tls(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether the first bootstrap server answers a TLS handshake (certificate not checked)."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host.strip("[]")),
        ):
            return True
    except (OSError, ValueError):
        return False


def plaintext_on_tls(conf: Mapping[str, Any]) -> SecurityError | None:
    """When a client without TLS could not connect: is it dialling a TLS listener?"""
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    broker = str(conf.get("bootstrap.servers", ""))
    if protocol not in ("PLAINTEXT", "SASL_PLAINTEXT") or not broker or not speaks_tls(broker):
        return None
    return SecurityError(
        f"{broker} is a TLS listener but this client speaks {protocol}",
        hint="set KSTREAM_SECURITY_PROTOCOL=SASL_SSL (with KSTREAM_SASL_* and KSTREAM_SSL_CA_LOCATION)",
    )
