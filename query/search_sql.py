"""Search queries as parameterized SQL over ``events``.

Every value travels as a bind parameter; the only text spliced into SQL is column names and
operators chosen from fixed tables here. The translation keeps
:func:`auditlog.core.search_query.matches` semantics exactly
(tests/integration/test_query_search_sql.py checks it against PostgreSQL):

* contains is ``LIKE '%v%'`` with ``\\``, ``%`` and ``_`` escaped, which is case-sensitive and
  byte-exact under any deterministic collation; a value of three characters or more is also
  looked up (whole, or by its most telling word, see :func:`_index_key`) in
  :data:`auditlog.core.columns.SEARCH_TEXT` (all text fields joined, trigram-indexed by migration
  0003 unless the deployment dropped that index, see :mod:`auditlog.pg.search_index`), which lets
  PostgreSQL find the few candidate rows by index before checking the field itself;
* a missing field makes ``LIKE`` NULL; NULL works as false under AND and OR, and negation is
  ``IS NOT TRUE`` so that ``-actor:x`` keeps events without an actor;
* text sorts with ``COLLATE "C"`` (code point order, as Python compares strings), missing values
  last in both directions; ties break on (received_at, log_id, idx), in the same direction, so
  that events sealed together keep their log order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from auditlog.core.columns import SEARCH_TEXT
from auditlog.core.search_query import TEXT_FIELDS, And, Expr, Not, Or, Term

__all__ = [
    "COLUMNS",
    "ORDER_BY",
    "RESTRICTABLE",
    "Filter",
    "SqlParams",
    "compile_filter",
    "order_clause",
]

# Query field -> events column.
COLUMNS: Final[dict[str, str]] = {
    **{f: f for f in TEXT_FIELDS},
    "new": "new_value",
    "old": "old_value",
    "received_at": "received_at",
    "timestamp": "event_time",
}
ORDER_BY: Final = frozenset(
    ("received_at", "timestamp", "actor", "action", "message", "source", "status", "target")
)
RESTRICTABLE: Final = frozenset(("actor", "action", "source", "status", "target", "tenant_id"))
_COMPARE: Final = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}

# pg_trgm finds no trigram in shorter values and would read the whole index.
_INDEXABLE_LENGTH: Final = 3
_WORD = re.compile(r"[^\W_]+")


def _index_key(value: str) -> str | None:
    """The part of ``value`` to look up in the search-text index, or None to scan.

    Any substring of the value finds a superset of the matching events, and the field check
    that follows keeps the answer exact; the choice only decides how fast. An index lookup
    costs what its most common trigrams cost: ``user42@example.com`` shares ``example.com``
    with every actor, ``user42`` does not. So a value with a word that holds a digit (ids,
    numbers, hashes) is looked up by its longest such word; other values as they are, where
    every word narrows the result.
    """
    words: list[str] = _WORD.findall(value)
    numbered = [w for w in words if len(w) >= _INDEXABLE_LENGTH and _has_digit(w)]
    if numbered:
        return max(numbered, key=len)
    if len(value) < _INDEXABLE_LENGTH or not words:
        return None  # pg_trgm would find no trigram in it and read the whole index
    return value


def _has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class SqlParams:
    """Bind parameters collected while compiling, numbered from ``first``."""

    first: int = 1
    values: list[Any] = field(default_factory=list)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}"


def _candidates(value: str, condition: str, params: SqlParams) -> str:
    """``condition``, first narrowed by the search-text index to the events that can match."""
    key = _index_key(value)
    if key is None:
        return condition
    return f"({SEARCH_TEXT} LIKE {params.add(_like_pattern(key))} AND {condition})"


def _term(term: Term, params: SqlParams) -> str:
    if term.field is None:
        ref = params.add(_like_pattern(term.value))
        any_field = "(" + " OR ".join(f"{COLUMNS[f]} LIKE {ref}" for f in TEXT_FIELDS) + ")"
        return _candidates(term.value, any_field, params)
    column = COLUMNS[term.field]
    if term.time is not None:
        return f"{column} {_COMPARE[term.op]} {params.add(term.time)}"
    if term.op == "contains":
        ref = params.add(_like_pattern(term.value))
        return _candidates(term.value, f"{column} LIKE {ref}", params)
    return _candidates(term.value, f"{column} = {params.add(term.value)}", params)


def _expr(expr: Expr, params: SqlParams) -> str:
    if isinstance(expr, Term):
        return _term(expr, params)
    if isinstance(expr, Not):
        return f"({_expr(expr.expr, params)}) IS NOT TRUE"
    joiner = " AND " if isinstance(expr, And) else " OR "
    assert isinstance(expr, And | Or)
    return "(" + joiner.join(_expr(p, params) for p in expr.parts) + ")"


@dataclass(frozen=True, slots=True)
class Filter:
    """Everything that selects events besides the query text."""

    start: datetime | None = None
    end: datetime | None = None
    restriction: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tenant_id: str | None = None


def compile_filter(expr: Expr | None, flt: Filter, params: SqlParams) -> str:
    """The WHERE condition (without ``WHERE``) for a query and its filter."""
    parts: list[str] = []
    if flt.tenant_id is not None:
        parts.append(f"tenant_id = {params.add(flt.tenant_id)}")
    if flt.start is not None:
        parts.append(f"received_at >= {params.add(flt.start)}")
    if flt.end is not None:
        parts.append(f"received_at <= {params.add(flt.end)}")
    for name, values in flt.restriction:
        parts.append(f"{COLUMNS[name]} = ANY({params.add(list(values))}::text[])")
    if expr is not None:
        parts.append(_expr(expr, params))
    return " AND ".join(parts) or "TRUE"


def order_clause(order_by: str, descending: bool, prefix: str = "") -> str:
    """ORDER BY body for ``order_by`` (one of :data:`ORDER_BY`) and direction."""
    direction = "DESC" if descending else "ASC"
    keys = [
        f"{prefix}received_at {direction}",
        f'{prefix}log_id COLLATE "C" {direction}',
        f"{prefix}idx {direction}",
    ]
    if order_by == "received_at":
        return ", ".join(keys)
    column = COLUMNS[order_by]
    collate = "" if order_by == "timestamp" else ' COLLATE "C"'
    return f"{prefix}{column}{collate} {direction} NULLS LAST, " + ", ".join(keys)
