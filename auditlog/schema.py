"""Validation of Pangea log requests against the standard audit schema.

Returns Pangea-style error items (``code``, ``detail``, ``source`` as a JSON pointer) instead of
raising, so that one response lists every problem in the request, as Pangea's service does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from auditlog.pangea_http import error_item

# Field limits of Pangea's standard schema (shared/reference/pangea-audit-api.md §3.1).
STANDARD_FIELDS: dict[str, int] = {
    "message": 32766,
    "actor": 128,
    "action": 32,
    "new": 32766,
    "old": 32766,
    "source": 128,
    "status": 32,
    "target": 128,
    "tenant_id": 128,
    "timestamp": 128,
}
MAX_SIGNATURE = 256
MAX_PUBLIC_KEY = 1024

_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)

Errors = list[dict[str, str]]


def validate_event(event: object, pointer: str) -> Errors:
    """Check one ``event`` object of the standard schema."""
    if not isinstance(event, Mapping):
        return [error_item("InvalidObject", f"'{pointer}' must be an object", pointer)]
    errors: Errors = []
    if "message" not in event:
        errors.append(
            error_item("FieldRequired", f"'{pointer}/message' is required", f"{pointer}/message")
        )
    for key, value in event.items():
        source = f"{pointer}/{key}"
        limit = STANDARD_FIELDS.get(key)
        if limit is None:
            errors.append(
                error_item("UnexpectedProperty", f"'{source}' is not a field of the schema", source)
            )
            continue
        if not isinstance(value, str):
            errors.append(error_item("InvalidString", f"'{source}' must be a string", source))
            continue
        if key == "message" and not value:
            errors.append(error_item("BelowMinLength", f"'{source}' must not be empty", source))
        if len(value) > limit:
            errors.append(
                error_item(
                    "AboveMaxLength",
                    f"'{source}' is {len(value)} characters, the limit is {limit}",
                    source,
                )
            )
        if key == "timestamp" and value and not _DATETIME.match(value):
            errors.append(
                error_item("BadFormatDateTime", f"'{source}' is not an RFC 3339 date-time", source)
            )
    return errors


def validate_signature_fields(item: Mapping[str, Any], pointer: str) -> Errors:
    """``signature`` and ``public_key`` come together, as strings of bounded size."""
    errors: Errors = []
    sig = item.get("signature")
    key = item.get("public_key")
    for name, value, limit in (
        ("signature", sig, MAX_SIGNATURE),
        ("public_key", key, MAX_PUBLIC_KEY),
    ):
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
