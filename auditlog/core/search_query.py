"""Pangea's search grammar: parse a query into a tree, and what each node means.

The grammar (pangea-audit-api.md §5), as this parser accepts it::

    query    := [or_expr]
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary (["AND"] unary)*          adjacent terms are ANDed
    unary    := "-" unary | "(" or_expr ")" | term
    term     := field op value | value           no space around op
    op       := ":" (contains) | "=" (exact) | ">" | ">=" | "<" | "<="
    value    := "double quoted, with \\" and \\\\ escapes" | bare word

``AND`` and ``OR`` are operators only in upper case and unquoted; AND binds tighter than OR. A
bare word runs to the next space, parenthesis or quote, so a value holding one of those (or
starting with ``-``, which negates) must be quoted. Matching is case-sensitive. A bare value
matches an event when any text field contains it.

Meaning (:func:`matches` is the executable statement, and the SQL translation is tested against
it): ``field:v`` is true when the event has the field and its value contains ``v``, so
``message:""`` matches every event; ``field=v`` when it equals ``v``; comparisons apply to time
fields only and are false when the event has no such time; ``-x`` is true exactly when ``x`` is
false, so ``-actor:bob`` keeps events with no actor at all.

Start and end of a search (:func:`parse_time_bound`) are RFC 3339 times or a duration ago
(``7d``, ``90mins``); months count 30 days and years 365.

Errors: :class:`SearchQueryError`, a ``ValueError`` whose message points at the offending text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

__all__ = [
    "FIELDS",
    "TEXT_FIELDS",
    "TIME_FIELDS",
    "And",
    "Expr",
    "Not",
    "Op",
    "Or",
    "SearchQueryError",
    "Term",
    "matches",
    "parse_query",
    "parse_time",
    "parse_time_bound",
]

Op = Literal["contains", "eq", "gt", "ge", "lt", "le"]

# Standard-schema fields a query may name; `new` and `old` are the event's keys.
TEXT_FIELDS: Final = (
    "action",
    "actor",
    "message",
    "new",
    "old",
    "source",
    "status",
    "target",
    "tenant_id",
)
TIME_FIELDS: Final = ("received_at", "timestamp")
FIELDS: Final = frozenset(TEXT_FIELDS + TIME_FIELDS)

_OPS: Final[dict[str, Op]] = {
    ":": "contains",
    "=": "eq",
    ">=": "ge",
    "<=": "le",
    ">": "gt",
    "<": "lt",
}
_FIELD_TERM: Final = re.compile(r"([a-z][a-z0-9_]*)(>=|<=|:|=|>|<)")
_BREAK: Final = frozenset(' \t\r\n()"')
_MAX_QUERY: Final = 4096
_MAX_DEPTH: Final = 32


class SearchQueryError(ValueError):
    """The query or a time bound does not parse; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Term:
    """One condition: ``field`` (None for a bare value) ``op`` ``value``."""

    field: str | None
    op: Op
    value: str
    time: datetime | None = None  # the parsed value, for time fields


@dataclass(frozen=True, slots=True)
class Not:
    expr: Expr


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]


Expr = Term | Not | And | Or


# Lexing ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["(", ")", "AND", "OR", "-", "term"]
    pos: int
    term: Term | None = None


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The string starting at the quote at ``pos`` and the position after its closing quote."""
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SearchQueryError(f"unterminated quote at position {pos}")


def _word(text: str, pos: int) -> tuple[str, int]:
    end = pos
    while end < len(text) and text[end] not in _BREAK:
        end += 1
    return text[pos:end], end


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (or a plain date, midnight UTC); a time without offset is UTC."""
    if not value[:4].isascii() or not value[:4].isdigit():
        raise SearchQueryError(f"{value!r} is not an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SearchQueryError(f"{value!r} is not an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _term(field: str | None, op: Op, value: str, pos: int) -> Term:
    if "\x00" in value:
        raise SearchQueryError(f"NUL character in the value at position {pos}")
    if field is None:
        return Term(None, op, value)
    if field not in FIELDS:
        known = ", ".join(sorted(FIELDS))
        raise SearchQueryError(f"unknown field {field!r} at position {pos}; fields: {known}")
    if field in TIME_FIELDS:
        if op == "contains":
            raise SearchQueryError(
                f"{field} is a time: compare it with =, >, >=, < or <= (position {pos})"
            )
        return Term(field, op, value, parse_time(value))
    if op not in ("contains", "eq"):
        raise SearchQueryError(
            f"{field} is text: use {field}:value or {field}=value, not a comparison"
            f" (position {pos})"
        )
    return Term(field, op, value)


def _lex_term(text: str, pos: int) -> tuple[Term, int]:
    if text[pos] == '"':
        value, end = _quoted(text, pos)
        return _term(None, "contains", value, pos), end
    word, end = _word(text, pos)
    match = _FIELD_TERM.match(word)
    if match is None:
        return _term(None, "contains", word, pos), end
    field, op = match[1], _OPS[match[2]]
    rest = word[match.end() :]
    if rest:
        return _term(field, op, rest, pos), end
    if end < len(text) and text[end] == '"':
        value, end = _quoted(text, end)
        return _term(field, op, value, pos), end
    raise SearchQueryError(f'{word!r} at position {pos} has no value (quote an empty one: "")')


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
        elif ch in "()":
            tokens.append(_Token(ch, pos))  # type: ignore[arg-type]
            pos += 1
        elif ch == "-" and pos + 1 < len(text) and not text[pos + 1].isspace():
            tokens.append(_Token("-", pos))
            pos += 1
        else:
            word, end = _word(text, pos)
            if word in ("AND", "OR"):
                tokens.append(_Token(word, pos))  # type: ignore[arg-type]
                pos = end
            else:
                term, end = _lex_term(text, pos)
                tokens.append(_Token("term", pos, term))
                pos = end
    return tokens


# Parsing ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.length = length

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def where(self) -> str:
        tok = self.peek()
        return f"position {tok.pos}" if tok else "the end of the query"

    def or_expr(self, depth: int) -> Expr:
        parts = [self.and_expr(depth)]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.i += 1
            parts.append(self.and_expr(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self, depth: int) -> Expr:
        parts = [self.unary(depth)]
        while (tok := self.peek()) is not None and tok.kind not in (")", "OR"):
            if tok.kind == "AND":
                self.i += 1
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, depth: int) -> Expr:
        if depth > _MAX_DEPTH:
            raise SearchQueryError(f"query nests deeper than {_MAX_DEPTH} levels")
        tok = self.peek()
        if tok is None:
            raise SearchQueryError("the query ends where a term was expected")
        self.i += 1
        if tok.kind == "-":
            return Not(self.unary(depth + 1))
        if tok.kind == "(":
            inner = self.or_expr(depth + 1)
            close = self.peek()
            if close is None or close.kind != ")":
                raise SearchQueryError(f"missing ')' for '(' at position {tok.pos}")
            self.i += 1
            return inner
        if tok.kind == "term":
            assert tok.term is not None
            return tok.term
        raise SearchQueryError(f"unexpected {tok.kind!r} at position {tok.pos}")


def parse_query(text: str) -> Expr | None:
    """The query's tree, or None for a blank query (which matches every event)."""
    if len(text) > _MAX_QUERY:
        raise SearchQueryError(f"the query is longer than {_MAX_QUERY} characters")
    tokens = _lex(text)
    if not tokens:
        return None
    parser = _Parser(tokens, len(text))
    expr = parser.or_expr(0)
    if parser.peek() is not None:
        raise SearchQueryError(f"unexpected {parser.peek().kind!r} at {parser.where()}")  # type: ignore[union-attr]
    return expr


# Meaning ---------------------------------------------------------------------------------------

FieldValue = str | datetime | None


def _compare(op: Op, have: datetime, want: datetime) -> bool:
    if op == "eq":
        return have == want
    if op == "gt":
        return have > want
    if op == "ge":
        return have >= want
    if op == "lt":
        return have < want
    return have <= want


def _term_matches(term: Term, event: Mapping[str, FieldValue]) -> bool:
    if term.field is None:
        return any(isinstance(v := event.get(f), str) and term.value in v for f in TEXT_FIELDS)
    have = event.get(term.field)
    if term.time is not None:
        return isinstance(have, datetime) and _compare(term.op, have, term.time)
    if not isinstance(have, str):
        return False
    return term.value in have if term.op == "contains" else have == term.value


def matches(expr: Expr | None, event: Mapping[str, FieldValue]) -> bool:
    """Does ``event`` (field name to text, time or None) satisfy the query?"""
    if expr is None:
        return True
    if isinstance(expr, Term):
        return _term_matches(expr, event)
    if isinstance(expr, Not):
        return not matches(expr.expr, event)
    if isinstance(expr, And):
        return all(matches(p, event) for p in expr.parts)
    return any(matches(p, event) for p in expr.parts)


# Time bounds -----------------------------------------------------------------------------------

_UNITS: Final[dict[str, timedelta]] = {}
for _names, _delta in (
    (("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    (("mi", "min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    (("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    (("d", "da", "day", "days"), timedelta(days=1)),
    (("w", "week", "weeks"), timedelta(weeks=1)),
    (("mo", "mon", "month", "months"), timedelta(days=30)),
    (("y", "year", "years"), timedelta(days=365)),
):
    for _name in _names:
        _UNITS[_name] = _delta
_DURATION: Final = re.compile(r"(\d{1,9})([a-z]+)")


def parse_time_bound(value: str, now: datetime) -> datetime:
    """A search's ``start`` or ``end``: an RFC 3339 time, or a duration before ``now``."""
    match = _DURATION.fullmatch(value)
    if match is not None and match[2] in _UNITS:
        try:
            return now - int(match[1]) * _UNITS[match[2]]
        except OverflowError:
            raise SearchQueryError(f"{value!r} reaches before year 1") from None
    return parse_time(value)
