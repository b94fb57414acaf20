"""Reading a search's range of ``events`` a month at a time.

``events`` has a partition per month, split by log (sealer/partitions.py). One statement over a
range plans, and locks until the search's transaction ends, every leaf of every month in it:
7,272 locks at 48 logs times 24 months, past PostgreSQL's default lock table on its own
(docs/performance.md, P3). A search its blocks cannot narrow reads its range here instead, one
statement a month, each in a savepoint rolled back once its rows are in
(:func:`auditlog.pg.locks.fetch_released`): it holds one month's locks at a time.

In time order (``order_by`` ``received_at``) months follow one another, so the walk goes from
the end the results start at and stops once it has ``most``. In any other order every month is
read, each for its first ``most`` in that order, merged into the best so far; the merge sorts
exactly as the statements' ``ORDER BY`` does (query/search_sql.py ``order_clause``: the column
in byte order, ``COLLATE "C"``, which for UTF-8 text is Python's order of code points, with
NULLs last in either direction; then ``received_at``, ``log_id`` and ``idx``). It holds a
text value's first :data:`VALUE_PREFIX` characters only, so that its memory stays bounded;
should two neighbours agree that far with one of them longer, the walk gives up and the search
reads its range in one statement.

The search's time limit bounds the walk, not each month: each statement gets what is left of it
(``statement_timeout``), and none starts past it (asyncpg.QueryCanceledError, as PostgreSQL
raises for a statement it cancels).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from auditlog.pg.locks import fetch_released
from query import events as event_rows
from query.search_sql import Filter

__all__ = [
    "VALUE_PREFIX",
    "Month",
    "ReadMonth",
    "event_months",
    "first_in_order",
    "month_table",
    "walk",
]

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# A month of events: from its first instant to the next month's.
Month = tuple[datetime, datetime]
# The rows of one month's statement, at most the given number, in the search's order: log_id,
# idx, received_at and, ordered by another column, that column's value as ``value``.
ReadMonth = Callable[[Month, int], Awaitable[list[Any]]]

# How much of a text value the merge holds: a walk keeps at most twice max_results rows, and
# values may be 32,766 characters long (an order by message); two rows whose values agree this
# far and go on are told apart by the whole values, in one statement.
VALUE_PREFIX: Final = 256

# A month's partition of ``events`` (sealer/partitions.py names them).
_MONTH_TABLE: Final = re.compile(r"events_(\d{4})_(\d{2})")


def month_table(month: Month) -> str:
    """The name of ``month``'s partition of ``events`` (itself partitioned by log)."""
    return f"events_{month[0].year:04d}_{month[0].month:02d}"


async def event_months(conn: Conn, flt: Filter) -> list[Month] | None:
    """The months of ``events`` that ``flt``'s range reaches, oldest first; None when events may
    lie outside every month (the default partition holds some, or a partition is not a month's)
    or a month cannot be spelled (December 9999 ends in the year 10000)."""
    # Released (the catalog's tables and events_default): a search keeps no lock it needs no more.
    names = await fetch_released(
        conn,
        "SELECT c.relname, c.relname = 'events_default' AND EXISTS (SELECT FROM events_default)"
        " AS default_holds_rows FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass",
    )
    months = []
    for name, default_holds_rows in names:
        found = _MONTH_TABLE.fullmatch(name)
        if found is None:
            if name != "events_default" or default_holds_rows:
                return None
            continue
        year, month = int(found[1]), int(found[2])
        if year >= 9999:
            return None
        first = datetime(year, month, 1, tzinfo=UTC)
        following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        if (flt.start is None or following > flt.start) and (flt.end is None or first <= flt.end):
            months.append((first, following))
    return sorted(months)


async def walk(
    conn: Conn,
    months: list[Month],
    read: ReadMonth,
    *,
    order_by: str,
    descending: bool,
    most: int,
    deadline: float | None,
) -> list[event_rows.Key] | None:
    """The keys of the first ``most`` matching events in the search's order, ``read`` a month
    at a time, all of it by ``deadline`` (``time.monotonic()``); None when the merge cannot
    tell the order from the values' first :data:`VALUE_PREFIX` characters (the caller then
    reads the range in one statement)."""
    in_time = order_by == "received_at"
    best: list[Any] = []
    for month in reversed(months) if descending else months:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncpg.QueryCanceledError("the search ran past its time limit")
            await conn.execute(f"SET LOCAL statement_timeout = {max(1, round(left * 1000))}")
        if in_time:
            best += await read(month, most - len(best))
            if len(best) >= most:
                break
        else:
            merged = first_in_order([*best, *await read(month, most)], descending, most + 1)
            if not _told_apart(merged):
                return None
            best = merged[:most]
    return [(r["log_id"], r["idx"], r["received_at"]) for r in best]


def _told_apart(rows: list[Any]) -> bool:
    """Whether ``rows``' order by value is their true one: it is not when two neighbours have
    the same first characters and one of them goes on (``cut``), which a whole value would
    order differently. Only that can happen: two values that differ within the prefix differ
    the same way whole."""
    return not any(
        a["value"] is not None and a["value"] == b["value"] and (a["cut"] or b["cut"])
        for a, b in itertools.pairwise(rows)
    )


def first_in_order(rows: list[Any], descending: bool, most: int) -> list[Any]:
    """The first ``most`` of ``rows`` (each with ``value``, ``received_at``, ``log_id``, ``idx``)
    in the order of ``order_clause``: by value, NULLs last either way, then by the keys."""

    def keys(row: Any) -> tuple[Any, ...]:
        return (row["received_at"], row["log_id"], row["idx"])

    valued = sorted(
        (r for r in rows if r["value"] is not None),
        key=lambda r: (r["value"], *keys(r)),
        reverse=descending,
    )
    unvalued = sorted((r for r in rows if r["value"] is None), key=keys, reverse=descending)
    return [*valued, *unvalued][:most]
