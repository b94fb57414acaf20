"""Settings of the query service, read from ``AUDITLOG_*`` once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from auditlog.settings import DEFAULT_DATABASE_URL, Env, Secret


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: Secret = Secret(DEFAULT_DATABASE_URL)
    host: str = "127.0.0.1"
    port: int = 8001
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        return cls(
            database_url=env.secret("DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.text("HOST", "127.0.0.1"),
            port=env.integer("PORT", 8001, minimum=1),
            log_level=env.text("LOG_LEVEL", "info"),
        )
