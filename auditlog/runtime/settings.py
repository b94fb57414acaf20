"""Helpers every service's settings object is built from.

Each service owns one frozen ``Settings`` dataclass with a ``from_env`` classmethod; this module
only parses values. Nothing else in the code base reads ``os.environ``: the composition roots read
the environment once and pass the settings object down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from auditlog.core.schema import NO_CUSTOM_SCHEMAS, SchemaConfigError, Schemas, parse_schemas

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://auditlog:auditlog@127.0.0.1:54329/auditlog"
DEFAULT_TOPIC = "audit.events"
DEFAULT_ORIGIN = "auditlog.localhost"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never reach a log line: ``repr`` masks it."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


def masked_url(url: str) -> str:
    """The URL with its password replaced, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Env:
    """Typed reads of ``AUDITLOG_*`` variables from one mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(f"AUDITLOG_{name}", "").strip()
        return value or default

    def optional(self, name: str) -> str | None:
        value = self._environ.get(f"AUDITLOG_{name}", "").strip()
        return value or None

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self._environ.get(f"AUDITLOG_{name}", "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"AUDITLOG_{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"AUDITLOG_{name} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"AUDITLOG_{name} must be <= {maximum}, got {value}")
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port, 0 to 65535 (0: the listener is off)."""
        value = self.integer(name, default)
        if value > 65535:
            raise SettingsError(f"AUDITLOG_{name} must be a port, 0 to 65535, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._environ.get(f"AUDITLOG_{name}", "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"AUDITLOG_{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"AUDITLOG_{name} must be >= {minimum}, got {value}")
        return value

    def secret(self, name: str, default: str) -> Secret:
        return Secret(self.text(name, default))


def describe(settings: object) -> dict[str, Any]:
    """A log-safe view of a settings dataclass: secrets masked, URLs without passwords."""
    out: dict[str, Any] = {}
    for field in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if isinstance(value, Secret):
            value = masked_url(value.value) if "://" in value.value else str(value)
        elif isinstance(value, Path):
            value = str(value)
        elif callable(getattr(value, "describe", None)):
            # A settings piece of its own (auditlog.kafka.security) knows what is safe to show.
            value = value.describe()
        out[field.name] = value
    return out


def load_schemas(path: Path | None) -> Schemas:
    """Read the custom schemas file; no file means only the standard schema."""
    if path is None:
        return NO_CUSTOM_SCHEMAS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaConfigError(f"cannot read schemas file {path}: {exc}") from exc
    return parse_schemas(data, str(path))


def default_workers() -> int:
    """HTTP worker processes a service runs unless told otherwise: one per CPU this process may
    use, at most 8 (each holds its own database pool and Kafka producer)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))
