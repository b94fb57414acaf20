"""The broker's optional SASL_SSL listener: TLS from the stack's own CA, users by SCRAM and PLAIN.

Set ``AUDITLOG_STACK_KAFKA_SASL_SSL_PORT`` (or ``auditlog stack start --sasl-ssl-port``) and the
broker listens there too, besides its plaintext listener, which the stack's own tools and the
development default keep using. Users authenticate with SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN;
a client certificate is requested, not required, so both SASL alone and SASL with mutual TLS
work. SCRAM credentials live in the cluster metadata and are written when the storage is
formatted, so every home formatted by this version can open the listener later.

Kafka's authorizer is on with the listener: ``auditlog`` is a super user (the setup and admin
calls), ``auditlog-ingest``, ``auditlog-sealer`` and ``auditlog-setup`` may do only what their
ACLs allow (`auditlog.devstack.kafka_acls` grants the ones docs/kafka-security.md lists).
The plaintext listener's clients, and the broker itself, are ``ANONYMOUS``, a super user too,
so the development default is unchanged. Each user's random password is made once and kept in
``<home>/kafka/sasl/<user>.password``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from auditlog.devstack.config import StackConfig, StackError
from auditlog.devstack.tls import TlsFiles, ensure_certificates, tls_files

SASL_USER = "auditlog"
INGEST_USER = "auditlog-ingest"
SEALER_USER = "auditlog-sealer"
SETUP_USER = "auditlog-setup"
USERS = (SASL_USER, INGEST_USER, SEALER_USER, SETUP_USER)
SUPER_USERS = ("ANONYMOUS", SASL_USER)
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# The marker the storage format leaves: these users exist in the cluster's metadata.
_SCRAM_STAMP = "scram-users"


def _password_file(cfg: StackConfig, user: str) -> Path:
    return cfg.home / "kafka" / "sasl" / f"{user}.password"


def password(cfg: StackConfig, user: str = SASL_USER) -> str:
    """A user's password, made on first use and kept (owner-only file)."""
    path = _password_file(cfg, user)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # token_hex: no character SCRAM's format argument or JAAS quoting would need escaped.
    value = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{value}\n")
    return value


def certificates(cfg: StackConfig) -> TlsFiles:
    return tls_files(cfg.home / "kafka" / "tls")


def format_arguments(cfg: StackConfig) -> list[str]:
    """``kafka-storage format`` arguments that create the users' SCRAM credentials."""
    arguments = []
    for user in USERS:
        secret = password(cfg, user)
        for mechanism in SCRAM_MECHANISMS:
            arguments += ["--add-scram", f"{mechanism}=[name={user},password={secret}]"]
    return arguments


def mark_formatted(data: Path) -> None:
    (data / _SCRAM_STAMP).write_text("".join(f"{user}\n" for user in USERS))


def listener_properties(cfg: StackConfig) -> dict[str, str]:
    """server.properties entries for the SASL_SSL listener (the caller adds it to the
    listener lists); requires SCRAM users in the storage."""
    data = cfg.home / "kafka" / "data"
    if (data / "meta.properties").is_file() and not (data / _SCRAM_STAMP).is_file():
        raise StackError(
            f"the Kafka storage in {data} was formatted before the stack made SCRAM users; "
            f"add them with kafka-configs --alter --add-config "
            f"'SCRAM-SHA-512=[password=...]' --entity-type users --entity-name {SASL_USER}, "
            f"or stop the stack and remove {data} (its topics are lost)"
        )
    files = ensure_certificates(cfg.home / "kafka" / "tls")
    plain_users = " ".join(f'user_{user}="{password(cfg, user)}"' for user in USERS)
    prefix = "listener.name.sasl_ssl"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(f"User:{user}" for user in SUPER_USERS),
        "sasl.enabled.mechanisms": ",".join(("PLAIN", *SCRAM_MECHANISMS)),
        f"{prefix}.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        **{f"{prefix}.{m.lower()}.sasl.jaas.config": scram for m in SCRAM_MECHANISMS},
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": _escaped(files.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": _escaped(files.ca_cert),
        "ssl.client.auth": "requested",
    }


def client_environment(
    cfg: StackConfig, user: str = SASL_USER, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, str]:
    """``AUDITLOG_KAFKA_*`` settings a service needs to reach the SASL_SSL listener as
    ``user``."""
    files = certificates(cfg)
    return {
        "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_sasl_ssl_bootstrap or "",
        "AUDITLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUDITLOG_KAFKA_SSL_CAFILE": str(files.ca_cert),
        "AUDITLOG_KAFKA_SASL_MECHANISM": mechanism,
        "AUDITLOG_KAFKA_SASL_USERNAME": user,
        "AUDITLOG_KAFKA_SASL_PASSWORD": password(cfg, user),
    }


def _escaped(path: Path) -> str:
    # Java properties treat a backslash as an escape, even in values.
    return str(path).replace("\\", "\\\\")
