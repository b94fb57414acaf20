"""The searchable columns derived from an event: one definition for the sealer and the auditor.

The sealer stores these next to each envelope so that search need not parse envelopes; the
auditor re-derives them from the stored envelope and reports any row whose columns disagree.
Both call :func:`searchable_columns`, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "SEARCH_TEXT",
    "TEXT_COLUMNS",
    "event_time",
    "searchable_columns",
    "searchable_values",
]

# (column, event field): text columns copied when the field is a string, NULL otherwise.
TEXT_COLUMNS: Final = (
    ("tenant_id", "tenant_id"),
    ("actor", "actor"),
    ("action", "action"),
    ("target", "target"),
    ("status", "status"),
    ("source", "source"),
    ("message", "message"),
    ("new_value", "new"),
    ("old_value", "old"),
)

# The search text: the nine text columns joined by spaces, what search looks terms up in.
# Exactly the expression migration 0003 indexes: the planner matches expressions verbatim, so
# any other spelling (in a query or a rebuilt index) would make search scan.
SEARCH_TEXT: Final = (
    "(coalesce(action, '') || ' ' || coalesce(actor, '') || ' ' || coalesce(message, '')"
    " || ' ' || coalesce(new_value, '') || ' ' || coalesce(old_value, '') || ' '"
    " || coalesce(source, '') || ' ' || coalesce(status, '') || ' ' || coalesce(target, '')"
    " || ' ' || coalesce(tenant_id, ''))"
)


def event_time(value: object) -> datetime | None:
    """The event's own ``timestamp`` as an aware datetime (naive means UTC); None if absent,
    unparseable or outside the years 1 to 9999 in UTC (``0001-01-01T00:00+01:00`` is, and no
    ``datetime`` in UTC, nor a ``timestamptz`` from one, holds it): it is searchable data, never a
    reason to refuse an event."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=UTC)
    if parsed.year in (1, 9999):  # only there can an offset carry it out of range
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            return None
    return parsed


_FIELDS: Final = tuple(field for _, field in TEXT_COLUMNS)
_NAMES: Final = (*(column for column, _ in TEXT_COLUMNS), "event_time")


def searchable_values(event: Mapping[str, object]) -> tuple[object, ...]:
    """The text columns and ``event_time``, in TEXT_COLUMNS order (the sealer's row tail)."""
    get = event.get
    values = tuple(map(get, _FIELDS))
    for value in values:
        if value is not None and not isinstance(value, str):
            # Rare (the schema allows it only for custom fields' namesakes): the one slow pass.
            values = tuple(v if isinstance(v, str) else None for v in values)
            break
    timestamp = get("timestamp")
    return (*values, None if timestamp is None else event_time(timestamp))


def searchable_columns(event: Mapping[str, object]) -> dict[str, object]:
    """Column name -> value for the text columns and ``event_time``, in TEXT_COLUMNS order."""
    return dict(zip(_NAMES, searchable_values(event), strict=True))
