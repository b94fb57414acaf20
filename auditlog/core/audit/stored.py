"""What the edges hand the auditor: a log's head, its event rows and its signed checkpoints.

These records carry the stored data as read, untrusted and unparsed, so that the database edge
and the read-API edge describe a log the same way and every check stays in the pure core.
:func:`expected_columns` is the sealer's derivation of the searchable columns, re-done here to
hold the stored columns against the envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from auditlog.core.columns import searchable_columns
from auditlog.core.errors import InvalidEvent

__all__ = [
    "COLUMN_NAMES",
    "StoredCheckpoint",
    "StoredEvent",
    "StoredHead",
    "expected_columns",
]

# Searchable columns the sealer derives from the envelope (sealer/rows.py `prepare`).
COLUMN_NAMES: Final = (
    "tenant_id",
    "actor",
    "action",
    "target",
    "status",
    "source",
    "message",
    "new_value",
    "old_value",
    "event_time",
    "received_at",
)
_RECEIVED_AT_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as stored: index, event_hash column, envelope bytes, searchable columns.

    ``columns`` holds whichever of :data:`COLUMN_NAMES` the edge read; only those are compared.
    """

    index: int
    event_hash: bytes
    envelope: bytes
    columns: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed note with the size/root stored beside it (None where the source has no columns).

    ``source`` says where it came from ("checkpoints", "head", "state") for the report.
    """

    note: str
    size: int | None = None
    root: bytes | None = None
    source: str = "checkpoints"


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A log as listed: id, origin, hash scheme, and its head (size, root, latest note)."""

    log_id: str
    origin: str
    hash_scheme: str
    size: int
    root: bytes | None
    checkpoint: str | None


def expected_columns(envelope: object) -> dict[str, object]:
    """The searchable column values the sealer derives from a (parsed) envelope."""
    if not isinstance(envelope, dict):
        raise InvalidEvent("envelope is not a JSON object")
    event = envelope.get("event")
    if not isinstance(event, dict):
        raise InvalidEvent("envelope has no event object")
    out = searchable_columns(event)
    received = envelope.get("received_at")
    if not isinstance(received, str):
        raise InvalidEvent("envelope has no received_at")
    try:
        out["received_at"] = datetime.strptime(received, _RECEIVED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidEvent(f"received_at {received!r} does not parse") from exc
    return out
