"""Kafka TLS and SASL settings: read once from AUDITLOG_KAFKA_*, refused when inconsistent,
never showing a password, and turned into the keyword arguments every aiokafka client takes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from auditlog.devstack.tls import ensure_certificates
from auditlog.kafka.security import PLAINTEXT, KafkaSecurity
from auditlog.runtime.settings import Env, SettingsError, describe
from ingest.settings import Settings as IngestSettings
from sealer.settings import Settings as SealerSettings


def _security(**variables: str) -> KafkaSecurity:
    return KafkaSecurity.from_env(Env({f"AUDITLOG_KAFKA_{k}": v for k, v in variables.items()}))


def test_plaintext_is_the_default_and_passes_nothing_but_the_protocol() -> None:
    assert _security() == PLAINTEXT
    assert PLAINTEXT.client_options() == {"security_protocol": "PLAINTEXT"}
    assert IngestSettings.from_env({}).kafka_security == PLAINTEXT
    assert SealerSettings.from_env({}).kafka_security == PLAINTEXT


def test_sasl_ssl_with_scram_and_a_client_certificate(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path)
    security = _security(
        SECURITY_PROTOCOL="sasl_ssl",
        SSL_CAFILE=str(files.ca_cert),
        SSL_CERTFILE=str(files.client_cert),
        SSL_KEYFILE=str(files.client_key),
        SASL_MECHANISM="scram-sha-512",
        SASL_USERNAME="sealer",
        SASL_PASSWORD="hunter2",
    )
    options = security.client_options()
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sealer",
        "sasl_plain_password": "hunter2",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    # The private CA is trusted, not only the system's.
    assert any("auditlog local stack CA" in str(c["subject"]) for c in context.get_ca_certs())


def test_every_service_reads_the_same_settings(tmp_path: Path) -> None:
    environ = {
        "AUDITLOG_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AUDITLOG_KAFKA_SASL_MECHANISM": "PLAIN",
        "AUDITLOG_KAFKA_SASL_USERNAME": "u",
        "AUDITLOG_KAFKA_SASL_PASSWORD": "hunter2",
    }
    ingest = IngestSettings.from_env(environ).kafka_security
    sealer = SealerSettings.from_env(environ).kafka_security
    assert ingest == sealer
    assert ingest.client_options()["sasl_mechanism"] == "PLAIN"


def test_passwords_never_show_in_repr_or_descriptions() -> None:
    environ = {
        "AUDITLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUDITLOG_KAFKA_SSL_KEY_PASSWORD": "keypass9",
        "AUDITLOG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "AUDITLOG_KAFKA_SASL_USERNAME": "ingest",
        "AUDITLOG_KAFKA_SASL_PASSWORD": "hunter2",
    }
    settings = IngestSettings.from_env(environ)
    for text in (repr(settings), str(describe(settings))):
        assert "hunter2" not in text and "keypass9" not in text
    assert describe(settings)["kafka_security"] == {
        "protocol": "SASL_SSL",
        "ssl_cafile": "system",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "ingest",
    }


@pytest.mark.parametrize(
    ("variables", "complaint"),
    [
        ({"SECURITY_PROTOCOL": "TLS"}, "AUDITLOG_KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"SSL_CAFILE": "/ca.pem"}, "use SSL or SASL_SSL"),
        ({"SASL_MECHANISM": "PLAIN"}, "use SASL_SSL or SASL_PLAINTEXT"),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "/c.pem"},
            "AUDITLOG_KAFKA_SSL_CERTFILE and AUDITLOG_KAFKA_SSL_KEYFILE go together",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": "p"},
            "AUDITLOG_KAFKA_SASL_MECHANISM must be one of",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER"},
            "AUDITLOG_KAFKA_SASL_MECHANISM must be one of",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-256"},
            "needs AUDITLOG_KAFKA_SASL_USERNAME and AUDITLOG_KAFKA_SASL_PASSWORD",
        ),
    ],
)
def test_inconsistent_settings_are_refused_naming_the_variable(
    variables: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SettingsError, match=complaint):
        _security(**variables)


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    security = _security(SECURITY_PROTOCOL="SSL", SSL_CAFILE=str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match=r"missing\.pem"):
        security.client_options()
