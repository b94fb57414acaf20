"""Search queries as parameterized SQL over ``events``, narrowed by the search-block index.

Every value travels as a bind parameter; the only text spliced into SQL is column names and
operators chosen from fixed tables here. The translation keeps
:func:`auditlog.core.search_query.matches` semantics exactly
(tests/integration/test_query_search_sql.py checks it against PostgreSQL, with and without the
blocks):

* contains is ``LIKE '%v%'`` with ``\\``, ``%`` and ``_`` escaped, which is case-sensitive and
  byte-exact under any deterministic collation;
* a missing field makes ``LIKE`` NULL; NULL works as false under AND and OR, and negation is
  ``IS NOT TRUE`` so that ``-actor:x`` keeps events without an actor;
* text sorts with ``COLLATE "C"`` (code point order, as Python compares strings), missing values
  last in both directions; ties break on (received_at, log_id, idx), in the same direction, so
  that events sealed together keep their log order.

Which rows are checked at all (:func:`select_matching`): when the query needs whole tokens
(:mod:`auditlog.core.search_keys`; ``actor=alice@example.com``, ``"disk full"``, an id between
separators), only the events of the ``search_blocks`` rows holding their keys (in the
generations whose time span overlaps the search's range, auditlog/pg/search_generations.py),
plus any entries sealed before the block index existed (``search_coverage``). Otherwise every
event of the searched logs (query/search.py reads them a month at a time), each text term first
looked up (whole, or by its most telling word, see :func:`_index_key`) in
:data:`auditlog.core.columns.SEARCH_TEXT`, which pg_trgm's index serves where an operator built
it (:mod:`auditlog.pg.search_index`). Either way every field is checked as above, so the
narrowing decides only how fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from auditlog.core.columns import SEARCH_TEXT
from auditlog.core.search_keys import VALUE_FIELDS, field_value_key, value_keys
from auditlog.core.search_query import TEXT_FIELDS, And, Expr, Not, Or, Term
from auditlog.pg.search_generations import Overlap

__all__ = [
    "COLUMNS",
    "ORDER_BY",
    "RESTRICTABLE",
    "Filter",
    "Span",
    "SqlParams",
    "block_predicate",
    "blocks_probe",
    "compile_filter",
    "order_clause",
    "select_matching",
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


def _candidates(value: str, condition: str, params: SqlParams, narrow: bool) -> str:
    """``condition``, first narrowed by the search-text index to the events that can match."""
    key = _index_key(value) if narrow else None
    if key is None:
        return condition
    return f"({SEARCH_TEXT} LIKE {params.add(_like_pattern(key))} AND {condition})"


def _term(term: Term, params: SqlParams, narrow: bool) -> str:
    if term.field is None:
        ref = params.add(_like_pattern(term.value))
        any_field = "(" + " OR ".join(f"{COLUMNS[f]} LIKE {ref}" for f in TEXT_FIELDS) + ")"
        return _candidates(term.value, any_field, params, narrow)
    column = COLUMNS[term.field]
    if term.time is not None:
        return f"{column} {_COMPARE[term.op]} {params.add(term.time)}"
    if term.op == "contains":
        ref = params.add(_like_pattern(term.value))
        return _candidates(term.value, f"{column} LIKE {ref}", params, narrow)
    return _candidates(term.value, f"{column} = {params.add(term.value)}", params, narrow)


def _expr(expr: Expr, params: SqlParams, narrow: bool) -> str:
    if isinstance(expr, Term):
        return _term(expr, params, narrow)
    if isinstance(expr, Not):
        return f"({_expr(expr.expr, params, narrow)}) IS NOT TRUE"
    joiner = " AND " if isinstance(expr, And) else " OR "
    assert isinstance(expr, And | Or)
    return "(" + joiner.join(_expr(p, params, narrow) for p in expr.parts) + ")"


def _term_keys(term: Term) -> list[int]:
    if term.time is not None:
        return []
    if term.op == "eq" and term.field in VALUE_FIELDS:
        # The field's whole value: one key, held only by blocks where that field has it.
        return [field_value_key(term.field, term.value)]
    return value_keys(term.value, whole=term.op == "eq")


# What a block holding a match must contain: its keys (a list of ints), all of the parts
# (an ``And`` of them) or one of them (an ``Or`` of them).
_Needs = list[int] | tuple[Literal["and", "or"], list["_Needs"]]


def _needs(expr: Expr) -> _Needs | None:
    if isinstance(expr, Term):
        return _term_keys(expr) or None
    if isinstance(expr, Not):
        return None
    if isinstance(expr, And):
        # All of an AND's whole tokens lie in the same event, so in the same block: one
        # containment of them all, which GIN answers by intersecting its posting lists.
        keys = sorted({k for p in expr.parts if isinstance(p, Term) for k in _term_keys(p)})
        inner = [_needs(p) for p in expr.parts if not isinstance(p, Term)]
        found: list[_Needs] = [keys] if keys else []
        found += [n for n in inner if n is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else ("and", found)
    assert isinstance(expr, Or)
    branches = [_needs(p) for p in expr.parts]
    if any(b is None for b in branches):
        return None
    return ("or", [b for b in branches if b is not None])


def _render(needs: _Needs, params: SqlParams) -> str:
    if isinstance(needs, list):
        return f"b.keys @> {params.add(needs)}::integer[]"
    joiner = " AND " if needs[0] == "and" else " OR "
    return "(" + joiner.join(_render(n, params) for n in needs[1]) + ")"


def block_predicate(expr: Expr | None, params: SqlParams) -> str | None:
    """A condition on ``search_blocks b`` that every block holding a match meets, or None when
    the query has no such condition (a value without whole tokens, a negation, a time bound
    alone, an OR with any such branch): then the blocks cannot narrow the search."""
    needs = None if expr is None else _needs(expr)
    return None if needs is None else _render(needs, params)


@dataclass(frozen=True, slots=True)
class Filter:
    """Everything that selects events besides the query text."""

    start: datetime | None = None
    end: datetime | None = None
    restriction: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tenant_id: str | None = None


def compile_filter(
    expr: Expr | None, flt: Filter, params: SqlParams, *, narrow: bool = True
) -> str:
    """The WHERE condition (without ``WHERE``) for a query and its filter; ``narrow`` adds the
    search-text lookups (leave it out where the search blocks already narrowed the rows)."""
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
        parts.append(_expr(expr, params, narrow))
    return " AND ".join(parts) or "TRUE"


# The blocks' logs, spelled so that PostgreSQL cannot use the primary key for it: it would read
# every block of the logs and fetch each one's keys from TOAST (which its costs leave out) rather
# than look the keys up in the GIN index.
_BLOCK_LOGS: Final = "(b.log_id = ANY({logs}::text[])) IS TRUE"

# The ranges of entries a search must check when the blocks narrow it: the blocks holding the
# query's keys, and all entries sealed before the block index existed. Column names differ from
# events' so that the filter's unqualified names stay unambiguous.
_RANGES: Final = (
    "SELECT b.log_id AS range_log, b.first_idx AS range_first, b.last_idx AS range_last,"  # noqa: S608
    " b.first_at AS range_from, b.last_at AS range_to"
    " FROM search_blocks b WHERE {predicate}{window} AND " + _BLOCK_LOGS + " UNION ALL"
    " SELECT c.log_id, 0, c.below - 1, '-infinity', 'infinity'"
    " FROM search_coverage c WHERE c.log_id = ANY({logs}::text[]) AND c.below > 0"
)


def _window(flt: Filter | None, generations: Overlap | None, params: SqlParams) -> str:
    """Conditions on ``search_blocks b`` (each starting with AND) that leave out the blocks
    outside the filter's time range, and the generations that cannot hold any
    (auditlog.pg.search_generations.overlapping: their numbers as parameters, so that
    PostgreSQL leaves the other generations out of the plan instead of planning each one)."""
    window = ""
    if flt is not None and flt.start is not None:
        window += f" AND b.last_at >= {params.add(flt.start)}"
    if flt is not None and flt.end is not None:
        window += f" AND b.first_at <= {params.add(flt.end)}"
    if generations is None or generations.unbounded is None or generations.everything:
        # Nothing to leave out; and a condition on the generation that excludes nothing would
        # only tempt the planner into reading every block by the primary key.
        return window
    newest = f"b.generation >= {params.add(generations.unbounded)}"
    if generations.first is None or generations.last is None:
        return f"{window} AND {newest}"
    first, last = params.add(generations.first), params.add(generations.last)
    return f"{window} AND (b.generation BETWEEN {first} AND {last} OR {newest})"


@dataclass(frozen=True, slots=True)
class Span:
    """Where every entry a narrowed search must check lies: the earliest first and the latest
    last time of the blocks holding its keys, in these logs. Given to :func:`select_matching`
    as constants, it lets PostgreSQL leave the other months and logs of ``events`` out of the
    plan, which otherwise plans and locks every partition (auditlog/pg/locks.py)."""

    first: datetime
    last: datetime
    logs: list[str]


class Row(Protocol):
    """A result row by column name (asyncpg's Record, a dict)."""

    def __getitem__(self, name: str, /) -> Any: ...


def probed_span(row: Row) -> Span | None:
    """The :class:`Span` of a probe's ranges (a row of :func:`blocks_probe` whose count was
    below its cap), or None when it cannot bound them: no range at all, or entries without
    blocks, which may lie anywhere."""
    if row["open"] or row["first"] is None:
        return None
    return Span(row["first"], row["last"], list(row["logs"]))


def blocks_probe(
    expr: Expr | None,
    params: SqlParams,
    *,
    logs: str,
    cap: str,
    flt: Filter | None = None,
    generations: Overlap | None = None,
) -> str | None:
    """How many ranges of entries of logs ``logs`` (within ``flt``'s time range, in
    ``generations``) may hold a match, counted up to ``cap`` (a parameter): the blocks holding
    the query's keys, and each log's entries sealed before blocks existed; and where they lie
    (:func:`probed_span`). None when the blocks cannot narrow the query. Common
    words match most blocks, and reading each matching block's events by index then costs more
    than reading the events in order until enough match (search.py decides with this)."""
    predicate = block_predicate(expr, params)
    if predicate is None:
        return None
    ranges = _RANGES.format(
        logs=logs, predicate=predicate, window=_window(flt, generations, params)
    )
    return (
        "SELECT count(*) AS found,"  # noqa: S608
        " min(range_from) FILTER (WHERE range_from > '-infinity') AS first,"
        " max(range_to) FILTER (WHERE range_to < 'infinity') AS last,"
        " array_agg(DISTINCT range_log) AS logs,"
        " coalesce(bool_or(range_from = '-infinity'), false) AS open"
        f" FROM ({ranges} LIMIT {cap}) r"
    )


def select_matching(
    expr: Expr | None,
    flt: Filter,
    params: SqlParams,
    *,
    logs: str,
    blocks: bool = True,
    order_by: str = "received_at",
    descending: bool = False,
    columns: str = "e.log_id, e.idx, e.received_at",
    limit: str | None = None,
    generations: Overlap | None = None,
    span: Span | None = None,
    month: tuple[datetime, datetime] | None = None,
) -> str:
    """``SELECT columns FROM events e`` of the events of logs ``logs`` (a parameter holding
    their ids) that match, in order; ``limit`` is a parameter too. ``blocks``: narrowed by the
    search blocks where the query allows (else every event of the logs is checked), in
    ``generations`` (None: all), and, given the narrowed search's ``span``
    (:func:`probed_span`), reading only the partitions of ``events`` it covers.
    ``month``: only the events received from its first instant up to (not including) its
    second, one month's partitions of ``events`` (query/search_months.py), and of the blocks
    those that reach into it."""
    predicate = block_predicate(expr, params) if blocks else None
    where = compile_filter(expr, flt, params, narrow=predicate is None)
    tail = f" ORDER BY {order_clause(order_by, descending, 'e.')}"
    if limit is not None:
        tail += f" LIMIT {limit}"
    # Every fragment is fixed text from this module; every value is a parameter.
    if predicate is None:
        if month is not None:
            where += (
                f" AND e.received_at >= {params.add(month[0])}"
                f" AND e.received_at < {params.add(month[1])}"
            )
        return (
            f"SELECT {columns} FROM events e"  # noqa: S608
            f" WHERE e.log_id = ANY({logs}::text[]) AND {where}{tail}"
        )
    window = _window(flt, generations, params)
    if month is not None:
        first, following = params.add(month[0]), params.add(month[1])
        window += f" AND b.last_at >= {first} AND b.first_at < {following}"
        where += f" AND e.received_at >= {first} AND e.received_at < {following}"
    ranges = _RANGES.format(logs=logs, predicate=predicate, window=window)
    if span is not None:
        # Implied by each range's own bounds, but only constants let the planner leave the
        # other partitions out (and unlocked).
        where += (
            f" AND e.log_id = ANY({params.add(span.logs)}::text[])"
            f" AND e.received_at BETWEEN {params.add(span.first)} AND {params.add(span.last)}"
        )
    # Each range's events by the primary key, range by range (LATERAL, kept apart by OFFSET 0):
    # PostgreSQL cannot know that a block spans at most 64 entries, and joining freely it would
    # rather read every event for a field value it thinks rare. received_at between the range's
    # bounds lets it skip the months the range cannot be in.
    return (
        f"SELECT {columns} FROM ({ranges}) r CROSS JOIN LATERAL ("  # noqa: S608
        "SELECT * FROM events e WHERE e.log_id = r.range_log"
        " AND e.idx BETWEEN r.range_first AND r.range_last"
        f" AND e.received_at BETWEEN r.range_from AND r.range_to AND {where} OFFSET 0) e{tail}"
    )


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
