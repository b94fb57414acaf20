"""The destinations file: TOML, read and validated once at start (docs/forwarding.md).

Each ``[[destination]]`` table has a unique ``name``, a ``kind`` (``syslog``, ``webhook``,
``file``, ``splunk_hec``, ``otlp``), the keys every kind shares (``start``, ``batch_size``,
``timeout``, ``tenants``, ``query``) and its kind's own. Secrets never sit in the file: a key
ending in ``_env`` names the variable that holds one, and a variable that is unset or empty
stops the forwarder at start. So does an unknown key, a value of the wrong type or a query that
does not parse: a typo must not forward everything, or nothing, silently.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from auditlog.core.search_query import SearchQueryError, parse_query
from auditlog.runtime.settings import Secret, SettingsError
from forward.records import Filter

KINDS: Final = ("syslog", "webhook", "file", "splunk_hec", "otlp")
DEFAULT_BATCH_SIZE: Final = 500
MAX_BATCH_SIZE: Final = 10_000
DEFAULT_TIMEOUT: Final = 10.0
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_COMMON: Final = frozenset(
    {"name", "kind", "start", "batch_size", "timeout", "tenants", "query", "receipts"}
)

Start = Literal["beginning", "end"]


@dataclass(frozen=True, slots=True)
class Syslog:
    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None  # TLS: the CA that signed the receiver's certificate
    cert_file: Path | None = None  # TLS client certificate and key, when the receiver asks
    key_file: Path | None = None
    server_name: str | None = None  # TLS: the name to check, when not ``host``
    hostname: str = "-"  # HOSTNAME of each message
    app_name: str = "auditlog"
    facility: int = 13  # log audit
    severity: int = 6  # informational


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret: Secret


@dataclass(frozen=True, slots=True)
class Files:
    directory: Path
    max_bytes: int = 64 * 1024 * 1024  # rotate the current file past this size
    max_age: float = 3600.0  # or once it is this old (seconds)


@dataclass(frozen=True, slots=True)
class SplunkHec:
    url: str  # the HEC base URL, e.g. https://splunk.example.com:8088
    token: Secret
    ack: bool = False  # wait for indexer acknowledgement (the token must have it enabled)
    channel: str | None = None  # a GUID; derived from the destination's name when unset
    index: str | None = None
    source: str = "auditlog"
    sourcetype: str = "auditlog:event"
    host: str | None = None
    ack_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Otlp:
    url: str  # the logs endpoint, e.g. http://collector:4318/v1/logs
    headers: dict[str, Secret] = field(default_factory=dict)
    service_name: str = "auditlog"


Options = Syslog | Webhook | Files | SplunkHec | Otlp


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    kind: str
    options: Options
    filter: Filter = field(default_factory=Filter)
    start: Start = "beginning"  # where a new cursor starts: the log's first entry or its head
    batch_size: int = DEFAULT_BATCH_SIZE
    timeout: float = DEFAULT_TIMEOUT  # one delivery attempt, seconds
    receipts: bool = False  # attach each event's receipt (not to syslog messages)


class _Table:
    """Typed reads of one TOML table; :meth:`done` refuses the keys nobody read."""

    def __init__(self, data: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> None:
        self.data = data
        self.where = where
        self.environ = environ
        self.read: set[str] = set()

    def _get(self, key: str, kinds: type | tuple[type, ...], what: str) -> Any:
        self.read.add(key)
        value = self.data.get(key)
        if value is None:
            return None
        # TOML's true is also a Python int: a boolean is only what asks for one.
        wants_bool = bool in (kinds if isinstance(kinds, tuple) else (kinds,))
        if isinstance(value, bool) is not wants_bool or not isinstance(value, kinds):
            raise SettingsError(f"{self.where}: {key} must be {what}, not {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key, str, "a string")
        return default if value is None or value == "" else str(value)

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise SettingsError(f"{self.where}: {key} is required")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key, int, "an integer")
        value = default if value is None else int(value)
        if not low <= value <= high:
            raise SettingsError(f"{self.where}: {key} must be {low} to {high}, not {value}")
        return value

    def number(self, key: str, default: float, low: float) -> float:
        value = self._get(key, (int, float), "a number")
        value = default if value is None else float(value)
        if not value >= low:
            raise SettingsError(f"{self.where}: {key} must be at least {low:g}, not {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, bool, "true or false")
        return default if value is None else bool(value)

    def path(self, key: str, *, exists: bool = True) -> Path | None:
        value = self.text(key)
        if value is None:
            return None
        path = Path(value)
        if exists and not path.is_file():
            raise SettingsError(f"{self.where}: {key} {value!r} is not a readable file")
        return path

    def strings(self, key: str) -> list[str]:
        value = self._get(key, list, "a list of strings") or []
        if not all(isinstance(v, str) and v for v in value):
            raise SettingsError(f"{self.where}: {key} must be a list of strings")
        return list(value)

    def secret(self, key: str) -> Secret:
        """The variable named by ``key`` (which ends in ``_env``), read now."""
        return self.env_secret(key, self.required(key))

    def env_secret(self, key: str, variable: str) -> Secret:
        value = self.environ.get(variable, "")
        if not value:
            raise SettingsError(f"{self.where}: {key} names {variable}, which is unset or empty")
        return Secret(value)

    def url(self, key: str) -> str:
        value = self.required(key)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{self.where}: {key} must be an http(s) URL, not {value!r}")
        return value

    def done(self, allowed: frozenset[str]) -> None:
        unknown = sorted(set(self.data) - self.read - allowed)
        if unknown:
            raise SettingsError(f"{self.where}: unknown keys {', '.join(unknown)}")


def _syslog(t: _Table) -> Syslog:
    tls = t.boolean("tls", False)
    options = Syslog(
        host=t.required("host"),
        port=t.integer("port", 6514 if tls else 514, 1, 65535),
        tls=tls,
        ca_file=t.path("ca_file"),
        cert_file=t.path("cert_file"),
        key_file=t.path("key_file"),
        server_name=t.text("server_name"),
        hostname=t.text("hostname", "-") or "-",
        app_name=t.text("app_name", "auditlog") or "auditlog",
        facility=t.integer("facility", 13, 0, 23),
        severity=t.integer("severity", 6, 0, 7),
    )
    if (options.cert_file is None) != (options.key_file is None):
        raise SettingsError(f"{t.where}: cert_file and key_file go together")
    if not tls and (options.ca_file or options.cert_file or options.server_name):
        raise SettingsError(f"{t.where}: ca_file, cert_file and server_name need tls = true")
    for key, value in (("hostname", options.hostname), ("app_name", options.app_name)):
        if not value.isascii() or not value.isprintable() or " " in value or len(value) > 48:
            raise SettingsError(f"{t.where}: {key} must be printable ASCII without spaces")
    return options


def _webhook(t: _Table) -> Webhook:
    return Webhook(url=t.url("url"), secret=t.secret("secret_env"))


def _files(t: _Table) -> Files:
    return Files(
        directory=Path(t.required("directory")),
        max_bytes=t.integer("max_bytes", 64 * 1024 * 1024, 1024, 2**40),
        max_age=t.number("max_age", 3600.0, 1.0),
    )


def _hec(t: _Table) -> SplunkHec:
    return SplunkHec(
        url=t.url("url"),
        token=t.secret("token_env"),
        ack=t.boolean("ack", False),
        channel=t.text("channel"),
        index=t.text("index"),
        source=t.text("source", "auditlog") or "auditlog",
        sourcetype=t.text("sourcetype", "auditlog:event") or "auditlog:event",
        host=t.text("host"),
        ack_timeout=t.number("ack_timeout", 60.0, 1.0),
    )


def _otlp(t: _Table) -> Otlp:
    raw = t._get("headers_env", dict, "a table of header = variable name") or {}
    headers = {}
    for header, variable in raw.items():
        if not isinstance(variable, str):
            raise SettingsError(f"{t.where}: headers_env.{header} must name a variable")
        headers[header] = t.env_secret(f"headers_env.{header}", variable)
    return Otlp(
        url=t.url("url"),
        headers=headers,
        service_name=t.text("service_name", "auditlog") or "auditlog",
    )


_PARSERS: Final = {
    "syslog": _syslog,
    "webhook": _webhook,
    "file": _files,
    "splunk_hec": _hec,
    "otlp": _otlp,
}


def _destination(data: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Destination:
    t = _Table(data, where, environ)
    name = t.required("name")
    if not _NAME.fullmatch(name):
        raise SettingsError(f"{where}: name {name!r} must be lower-case letters, digits, _ . -")
    t.where = where = f"destination {name!r}"
    kind = t.required("kind")
    if kind not in KINDS:
        raise SettingsError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    start = t.text("start", "beginning")
    if start not in ("beginning", "end"):
        raise SettingsError(f"{where}: start must be beginning or end, not {start!r}")
    query_text = t.text("query", "") or ""
    try:
        query = parse_query(query_text)
    except SearchQueryError as exc:
        raise SettingsError(f"{where}: query: {exc}") from None
    common = {
        "filter": Filter(frozenset(t.strings("tenants")), query, query_text),
        "start": start,
        "batch_size": t.integer("batch_size", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE),
        "timeout": t.number("timeout", DEFAULT_TIMEOUT, 0.1),
        "receipts": t.boolean("receipts", False),
    }
    if common["receipts"] and kind == "syslog":
        raise SettingsError(f"{where}: syslog messages carry no receipt (receipts = true)")
    options = _PARSERS[kind](t)
    t.done(_COMMON)
    return Destination(name, kind, options, **common)  # type: ignore[arg-type]


def parse_destinations(text: str, environ: Mapping[str, str] | None = None) -> list[Destination]:
    """The destinations of a file's text; :class:`SettingsError` names what is wrong."""
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"not TOML: {exc}") from None
    unknown = sorted(set(data) - {"destination"})
    if unknown:
        raise SettingsError(f"unknown top-level keys {', '.join(unknown)}; use [[destination]]")
    tables = data.get("destination", [])
    if not isinstance(tables, list) or not tables:
        raise SettingsError("no [[destination]] table")
    found = [_destination(d, f"destination #{i + 1}", env) for i, d in enumerate(tables)]
    names = [d.name for d in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SettingsError(f"destination names must be unique: {', '.join(twice)}")
    return found


def load_destinations(path: Path, environ: Mapping[str, str] | None = None) -> list[Destination]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read the destinations file {path}: {exc.strerror}") from None
    try:
        return parse_destinations(text, environ)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None
