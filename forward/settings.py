"""Settings of the forwarder, read from ``AUDITLOG_*`` once at start.

The destinations themselves are in a file of their own (``AUDITLOG_FORWARD_DESTINATIONS_FILE``,
:mod:`forward.config`), whose secrets come from variables it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from auditlog.runtime.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TOPIC,
    Env,
    Secret,
    SettingsError,
)

DEFAULT_POLL_INTERVAL = 0.5  # seconds between looks at a caught-up log
DEFAULT_LEASE = 15.0  # seconds a dead forwarder's cursors stay its own
DEFAULT_RETRY_MIN = 0.5
DEFAULT_RETRY_MAX = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    destinations_file: Path
    database_url: Secret = Secret(DEFAULT_DATABASE_URL)
    topic: str = DEFAULT_TOPIC
    poll_interval: float = DEFAULT_POLL_INTERVAL
    lease: float = DEFAULT_LEASE
    retry_min: float = DEFAULT_RETRY_MIN
    retry_max: float = DEFAULT_RETRY_MAX
    # The metrics listener (/metrics, /healthz, /readyz); port 0: none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        path = env.path("FORWARD_DESTINATIONS_FILE")
        if path is None:
            raise SettingsError(
                "AUDITLOG_FORWARD_DESTINATIONS_FILE must name the destinations file"
                " (docs/forwarding.md)"
            )
        settings = cls(
            destinations_file=path,
            database_url=env.secret("DATABASE_URL", DEFAULT_DATABASE_URL),
            topic=env.text("TOPIC", DEFAULT_TOPIC),
            poll_interval=env.number("FORWARD_POLL_INTERVAL", DEFAULT_POLL_INTERVAL, minimum=0.01),
            lease=env.number("FORWARD_LEASE", DEFAULT_LEASE, minimum=1.0),
            retry_min=env.number("FORWARD_RETRY_MIN", DEFAULT_RETRY_MIN, minimum=0.01),
            retry_max=env.number("FORWARD_RETRY_MAX", DEFAULT_RETRY_MAX, minimum=0.01),
            metrics_host=env.text("FORWARD_METRICS_HOST", "127.0.0.1"),
            metrics_port=env.port("FORWARD_METRICS_PORT", 0),
            log_level=env.text("LOG_LEVEL", "info"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.retry_max < self.retry_min:
            raise SettingsError("AUDITLOG_FORWARD_RETRY_MAX must be >= AUDITLOG_FORWARD_RETRY_MIN")
        if "/" in self.topic:
            raise SettingsError("AUDITLOG_TOPIC must not contain '/'")
