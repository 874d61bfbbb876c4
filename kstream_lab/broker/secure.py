"""The secured local broker's settings: SASL_SSL (SCRAM-SHA-512) for clients, StandardAuthorizer, one admin.

Clients reach only the SASL_SSL listener (also the inter-broker one, as ``admin``). The controller
listener stays on 127.0.0.1 and is never advertised; it speaks mutual TLS, so only a holder of the
broker's own key (signed by the local CA) gets in, and that certificate maps to ``User:admin``. No
other principal is a super user and ``allow.everyone.if.no.acl.found=false``: whatever a user may do
comes from ACLs.

The admin password is generated on first start and kept in a 0600 file beside the TLS material
(``<data_dir>/broker/secure``); the generated server.properties, which must carry it for the broker's
own SCRAM login, is 0600 too.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from kstream_lab.broker.tls import BROKER_CN, TlsFiles, ensure_tls, write_private
from kstream_lab.settings import ADMIN_USER, SCRAM_MECHANISM, local_secure_dir

LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={mechanism}
sasl.mechanism.inter.broker.protocol={mechanism}
listener.name.sasl_ssl.{mechanism_lower}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
required username="{admin}" password="{password}";
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^.*CN={broker_cn}.*$/{admin}/,DEFAULT
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{admin}
"""


def new_password() -> str:
    """A random SCRAM password (URL-safe: no commas or quotes, which --add-scram and JAAS would trip on)."""
    return secrets.token_urlsafe(24)


def admin_password(home: Path) -> str:
    """The admin's password, generated (0600 file) on first use."""
    path = local_secure_dir(home) / "admin.password"
    if not path.exists():
        write_private(path, new_password().encode())
    return path.read_text().strip()


def secure_listeners(home: Path, port: int, controller_port: int) -> tuple[str, TlsFiles, str]:
    """The listener/security block of server.properties, the TLS files, and the admin password."""
    files = ensure_tls(local_secure_dir(home))
    password = admin_password(home)
    block = LISTENERS.format(
        port=port,
        controller_port=controller_port,
        mechanism=SCRAM_MECHANISM,
        mechanism_lower=SCRAM_MECHANISM.lower(),
        admin=ADMIN_USER,
        password=password,
        broker_cn=BROKER_CN,
        keystore=files.broker_keystore,
        ca=files.ca_cert,
    )
    return block, files, password


def scram_format_args(password: str) -> list[str]:
    """The storage tool's arguments that create the admin SCRAM credential at format time."""
    return ["--add-scram", f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={password}]"]
