"""Event schemas: Pangea's standard schema, and custom schemas per ``config_id``.

Validation returns Pangea-style error items (``code``, ``detail``, ``source`` as a JSON pointer)
instead of raising, so that one response lists every problem in the request, as Pangea's service
does. Custom schemas come from a JSON file (``AUDITLOG_SCHEMAS_FILE``) mapping each config id
to Pangea's ``AuditSchema`` field list; see docs/ingest.md. Loading a malformed file raises
:class:`SchemaConfigError` at start, never later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auditlog.core.errors import AuditLogError


def error_item(code: str, detail: str, source: str) -> dict[str, str]:
    """One Pangea validation error: a code, a sentence, and a JSON pointer to the field."""
    return {"code": code, "detail": detail, "source": source}


MAX_SIGNATURE = 256
MAX_PUBLIC_KEY = 1024
MAX_TEXT = 32766
INT64 = (-(2**63), 2**63 - 1)
FIELD_TYPES = ("boolean", "datetime", "integer", "string", "string-unindexed", "text")
_FIELD_ID = re.compile(r"^[a-z][0-9a-z_]{0,31}$")
# RFC 3339's digits are ASCII: \d would also take other scripts' digits, and $ a trailing
# newline. Without capturing groups, fullmatch takes 0.3 µs instead of 0.5 µs (it runs for
# every event with a timestamp the sealer reads).
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)

Errors = list[dict[str, str]]


class SchemaConfigError(AuditLogError):
    """The custom schemas file is unreadable or malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Field:
    id: str
    type: str = "string"
    required: bool = False
    size: int = MAX_TEXT
    non_empty: bool = False  # the standard schema's message: present and not ""


_STRING_TYPES = frozenset({"string", "string-unindexed", "text", "datetime"})


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    fields: tuple[Field, ...]
    _by_id: dict[str, Field] = field(init=False, repr=False, compare=False)
    # What valid() needs, flattened once: it runs for every record the sealer reads.
    _required: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _strings: dict[str, tuple[int, bool, bool]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {f.id: f for f in self.fields})
        object.__setattr__(self, "_required", tuple(f.id for f in self.fields if f.required))
        strings = {
            f.id: (f.size, f.non_empty, f.type == "datetime")
            for f in self.fields
            if f.type in _STRING_TYPES
        }
        object.__setattr__(self, "_strings", strings)

    def field(self, field_id: str) -> Field | None:
        return self._by_id.get(field_id)

    def valid(self, event: object) -> bool:
        """Whether :meth:`validate` finds nothing, without building its error messages.

        The sealer asks this once per record; events of string fields (the standard schema)
        are judged here, anything else by :meth:`validate` itself.
        """
        if type(event) is not dict:
            return not self.validate(event, "")
        for name in self._required:
            if event.get(name) is None:
                return False
        strings = self._strings
        for key, value in event.items():
            spec = strings.get(key)
            if spec is None or type(value) is not str:
                return not self.validate(event, "")
            size, non_empty, is_datetime = spec
            if len(value) > size or (non_empty and not value):
                return False
            if is_datetime and value and not _DATETIME.fullmatch(value):
                return False
        return True

    def validate(self, event: object, pointer: str) -> Errors:
        if not isinstance(event, Mapping):
            return [error_item("InvalidObject", f"'{pointer}' must be an object", pointer)]
        errors: Errors = [
            error_item("FieldRequired", f"'{pointer}/{f.id}' is required", f"{pointer}/{f.id}")
            for f in self.fields
            if f.required and event.get(f.id) is None
        ]
        for key, value in event.items():
            source = f"{pointer}/{key}"
            spec = self.field(key)
            if spec is None:
                errors.append(
                    error_item(
                        "UnexpectedProperty", f"'{source}' is not a field of the schema", source
                    )
                )
            elif value is not None or not spec.required:  # a required null: reported above
                errors += _check_value(spec, value, source)
        return errors


def _check_value(spec: Field, value: object, source: str) -> Errors:
    if spec.type == "boolean":
        ok = isinstance(value, bool)
        return [] if ok else [error_item("InvalidBoolean", f"'{source}' must be a boolean", source)]
    if spec.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [error_item("InvalidInteger", f"'{source}' must be an integer", source)]
        if not INT64[0] <= value <= INT64[1]:
            return [error_item("IsTooBig", f"'{source}' does not fit 64 bits", source)]
        return []
    if not isinstance(value, str):
        return [error_item("InvalidString", f"'{source}' must be a string", source)]
    errors: Errors = []
    if spec.non_empty and not value:
        errors.append(error_item("BelowMinLength", f"'{source}' must not be empty", source))
    if len(value) > spec.size:
        errors.append(
            error_item(
                "AboveMaxLength",
                f"'{source}' is {len(value)} characters, the limit is {spec.size}",
                source,
            )
        )
    if spec.type == "datetime" and value and not _DATETIME.fullmatch(value):
        errors.append(
            error_item("BadFormatDateTime", f"'{source}' is not an RFC 3339 date-time", source)
        )
    return errors


# Pangea's standard schema (shared/reference/pangea-audit-api.md §3.1).
STANDARD = Schema(
    "standard",
    (
        Field("message", "text", required=True, size=32766, non_empty=True),
        Field("actor", "string", size=128),
        Field("action", "string", size=32),
        Field("new", "text", size=32766),
        Field("old", "text", size=32766),
        Field("source", "string", size=128),
        Field("status", "string", size=32),
        Field("target", "string", size=128),
        Field("tenant_id", "string", size=128),
        Field("timestamp", "datetime", size=128),
    ),
)
STANDARD_FIELDS: dict[str, int] = {f.id: f.size for f in STANDARD.fields}


def validate_event(event: object, pointer: str, schema: Schema = STANDARD) -> Errors:
    """Check one ``event`` object against ``schema`` (the standard one by default)."""
    errors = schema.validate(event, pointer)
    # A wrong type and "required" can both name the same field; report it once.
    seen: set[tuple[str, str]] = set()
    unique: Errors = []
    for e in errors:
        key = (e["code"], e["source"])
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def validate_signature_fields(item: Mapping[str, Any], pointer: str) -> Errors:
    """``signature`` and ``public_key`` come together, as strings of bounded size."""
    errors: Errors = []
    sig = item.get("signature")
    key = item.get("public_key")
    limits = (("signature", sig, MAX_SIGNATURE), ("public_key", key, MAX_PUBLIC_KEY))
    for name, value, limit in limits:
        if value is None:
            continue
        source = f"{pointer}/{name}"
        if not isinstance(value, str):
            errors.append(error_item("InvalidString", f"'{source}' must be a string", source))
        elif len(value) > limit:
            errors.append(
                error_item("AboveMaxLength", f"'{source}' exceeds {limit} characters", source)
            )
    if (sig is None) != (key is None):
        missing = "public_key" if key is None else "signature"
        errors.append(
            error_item(
                "FieldRequired",
                f"'{pointer}/{missing}' is required when the event is signed",
                f"{pointer}/{missing}",
            )
        )
    return errors


@dataclass(frozen=True, slots=True)
class Schemas:
    """The standard schema plus the custom schemas of each configured ``config_id``."""

    custom: Mapping[str, Schema]

    def for_config(self, config_id: str | None) -> Schema | None:
        """The schema events of ``config_id`` must follow; None for an unknown config id."""
        if config_id is None:
            return STANDARD
        return self.custom.get(config_id)


NO_CUSTOM_SCHEMAS = Schemas({})


def parse_schemas(data: object, origin: str = "schemas") -> Schemas:
    if not isinstance(data, Mapping):
        raise SchemaConfigError(f"{origin}: must map config ids to schemas")
    out: dict[str, Schema] = {}
    for config_id, spec in data.items():
        where = f"{origin}: {config_id}"
        fields = spec.get("fields") if isinstance(spec, Mapping) else None
        if not isinstance(fields, list) or not fields:
            raise SchemaConfigError(f"{where}: needs a non-empty 'fields' list")
        parsed: list[Field] = []
        for i, f in enumerate(fields):
            if not isinstance(f, Mapping):
                raise SchemaConfigError(f"{where}: field {i} must be an object")
            fid, ftype = f.get("id"), f.get("type", "string")
            if not isinstance(fid, str) or not _FIELD_ID.match(fid) or fid == "received_at":
                raise SchemaConfigError(f"{where}: field {i} has an invalid id {fid!r}")
            if ftype not in FIELD_TYPES:
                raise SchemaConfigError(f"{where}: field {fid} has unknown type {ftype!r}")
            size = f.get("size", MAX_TEXT if ftype in ("text", "string-unindexed") else 128)
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_TEXT:
                raise SchemaConfigError(f"{where}: field {fid} has an invalid size {size!r}")
            required = f.get("required", False)
            if not isinstance(required, bool):
                raise SchemaConfigError(f"{where}: field {fid}: 'required' must be a boolean")
            parsed.append(Field(fid, ftype, required, size))
        if len({f.id for f in parsed}) != len(parsed):
            raise SchemaConfigError(f"{where}: field ids repeat")
        out[str(config_id)] = Schema(str(spec.get("name", config_id)), tuple(parsed))
    return Schemas(out)

