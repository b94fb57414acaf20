"""How every Kafka client of the project authenticates and encrypts: one frozen settings piece.

Ingest's producer, the sealer's consumer and dead-letter producer, the producer library and the
admin calls (`ensure_topics`) all take a `KafkaSecurity` read once from ``AUDITLOG_KAFKA_*`` and
turn it into aiokafka's keyword arguments with `KafkaSecurity.client_options`, so a deployment
sets TLS and SASL in one place and no client is left on plaintext by accident.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiokafka.helpers import create_ssl_context

from auditlog.runtime.settings import Env, Secret, SettingsError

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# OAUTHBEARER is left out: aiokafka takes it only as a token-provider object with no refresh of
# its own, which a settings variable cannot express (docs/kafka-security.md).
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_NO_SECRET: Final = Secret("")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL of a Kafka client; the default is plaintext without authentication."""

    protocol: str = "PLAINTEXT"
    # A CA bundle to trust instead of the system's (a private CA, as the local stack's).
    ssl_cafile: Path | None = None
    # A client certificate and its key, for brokers that require mutual TLS.
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: Secret = _NO_SECRET
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret = _NO_SECRET

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SettingsError(
                f"AUDITLOG_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        tls_files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not self.uses_tls and any(tls_files):
            raise SettingsError(
                "AUDITLOG_KAFKA_SSL_* is set but AUDITLOG_KAFKA_SECURITY_PROTOCOL is "
                f"{self.protocol}: use SSL or SASL_SSL"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise SettingsError(
                "AUDITLOG_KAFKA_SSL_CERTFILE and AUDITLOG_KAFKA_SSL_KEYFILE go together"
            )
        if not self.uses_sasl:
            if self.sasl_mechanism or self.sasl_username:
                raise SettingsError(
                    "AUDITLOG_KAFKA_SASL_* is set but AUDITLOG_KAFKA_SECURITY_PROTOCOL is "
                    f"{self.protocol}: use SASL_SSL or SASL_PLAINTEXT"
                )
            return
        if self.sasl_mechanism not in MECHANISMS:
            raise SettingsError(
                f"AUDITLOG_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)} with "
                f"{self.protocol}, got {self.sasl_mechanism!r}"
            )
        if not self.sasl_username or not self.sasl_password.value:
            raise SettingsError(
                f"{self.protocol} needs AUDITLOG_KAFKA_SASL_USERNAME and "
                "AUDITLOG_KAFKA_SASL_PASSWORD"
            )

    @classmethod
    def from_env(cls, environ: Env) -> KafkaSecurity:
        mechanism = environ.optional("KAFKA_SASL_MECHANISM")
        return cls(
            protocol=environ.text("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
            ssl_cafile=environ.path("KAFKA_SSL_CAFILE"),
            ssl_certfile=environ.path("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=environ.path("KAFKA_SSL_KEYFILE"),
            ssl_key_password=environ.secret("KAFKA_SSL_KEY_PASSWORD", ""),
            sasl_mechanism=mechanism.upper() if mechanism else None,
            sasl_username=environ.optional("KAFKA_SASL_USERNAME"),
            sasl_password=environ.secret("KAFKA_SASL_PASSWORD", ""),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A context that verifies the broker's certificate and host name (aiokafka's helper
        always checks the name), presenting the client certificate when one is set. Raises
        `SettingsError` naming the file when one cannot be read."""
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_key_password.value or None,
            )
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(str(p) for p in (self.ssl_cafile, self.ssl_certfile) if p)
            raise SettingsError(f"cannot load Kafka TLS files ({files}): {exc}") from exc
        return context

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments (producer, consumer and admin client take the same)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.value
        return options

    def describe(self) -> dict[str, Any]:
        """A log-safe view: which protocol, mechanism, user and files, never a password."""
        view: dict[str, Any] = {"protocol": self.protocol}
        if self.uses_tls:
            view["ssl_cafile"] = str(self.ssl_cafile) if self.ssl_cafile else "system"
            if self.ssl_certfile:
                view["ssl_certfile"] = str(self.ssl_certfile)
        if self.uses_sasl:
            view["sasl_mechanism"] = self.sasl_mechanism
            view["sasl_username"] = self.sasl_username
        return view


PLAINTEXT: Final = KafkaSecurity()
