"""The search grammar: every form parses to the expected tree and selects the expected events.

``REFERENCE_EVENTS`` and ``EXPECTED`` are also the reference set the PostgreSQL translation is
checked against (tests/integration/test_query_search_sql.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditlog.core.search_query import (
    TEXT_FIELDS,
    And,
    Expr,
    Not,
    Or,
    SearchQueryError,
    Term,
    matches,
    parse_query,
    parse_time_bound,
)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Named so that expectations read as sets of names.
REFERENCE_EVENTS: dict[str, dict[str, str | datetime | None]] = {
    "nedry": {
        "message": "Security updated",
        "actor": "dennis.nedry@ingen.com",
        "action": "Off",
        "target": "Visitor center",
        "status": "ok",
        "timestamp": _t("2024-01-01T10:00:00+00:00"),
    },
    "jane": {
        "message": "viewed x-ray of patient 7",
        "actor": "Jane Doe",
        "action": "view",
        "target": "patient/7",
        "status": "ok",
        "source": "radiology",
        "tenant_id": "hospital",
        "timestamp": _t("2024-02-01T00:00:00+00:00"),
    },
    "jane_lower": {
        "message": "jane doe logged in",
        "actor": "jane doe",
        "action": "login",
        "status": "failed",
        "tenant_id": "hospital",
    },
    "percent": {
        "message": "disk 100% full_now",
        "actor": "monitor",
        "action": "alert",
        "new": 'quota "raised" \\ twice',
        "old": "50%",
        "source": "cron",
        "timestamp": _t("2024-03-01T12:30:00+00:00"),
    },
    "unicode": {
        "message": "Zugriff verweigert für Müller 😀",
        "actor": "müller",
        "action": "deny",
        "status": "failed",
        "target": "AND",
        "timestamp": _t("2023-12-31T23:59:59+00:00"),
    },
    "bare": {"message": "message only"},
}

# query -> names of the events it selects, one line per grammar form at least.
EXPECTED: dict[str, set[str]] = {
    "": set(REFERENCE_EVENTS),
    'message:""': set(REFERENCE_EVENTS),
    "actor:jane": {"jane_lower"},
    "actor:Jane": {"jane"},
    'actor:"Jane Doe"': {"jane"},
    "actor=jane": set(),
    'actor="jane doe"': {"jane_lower"},
    "-actor:jane": set(REFERENCE_EVENTS) - {"jane_lower"},
    "-actor=monitor": set(REFERENCE_EVENTS) - {"percent"},
    "status:ok": {"nedry", "jane"},
    "status=failed action:login": {"jane_lower"},
    "status=failed AND action:login": {"jane_lower"},
    "action:view OR action:deny": {"jane", "unicode"},
    "status:ok AND (action:view OR action:Off)": {"nedry", "jane"},
    "(action:view OR action:deny) -status:failed": {"jane"},
    "action:view OR action:deny status:failed": {"jane", "unicode"},
    "-(status:ok OR status:failed)": {"percent", "bare"},
    "jane": {"jane_lower"},
    "Jane": {"jane"},
    '"x-ray of"': {"jane"},
    "x-ray": {"jane"},
    "100%": {"percent"},
    "full_now": {"percent"},
    "_": {"percent"},
    "%": {"percent"},
    '"\\\\"': {"percent"},
    'new:"\\"raised\\""': {"percent"},
    "old=50%": {"percent"},
    "Müller": {"unicode"},
    "😀": {"unicode"},
    '"AND"': {"unicode"},
    "target=AND": {"unicode"},
    "tenant_id=hospital": {"jane", "jane_lower"},
    "source:ra -tenant_id:x": {"jane"},
    "timestamp>2024-01-01T10:00:00Z": {"jane", "percent"},
    "timestamp>=2024-01-01T10:00:00Z": {"nedry", "jane", "percent"},
    "timestamp<2024-01-01": {"unicode"},
    "timestamp<=2024-01-01T11:00:00+01:00": {"nedry", "unicode"},
    "timestamp=2024-02-01T00:00:00Z": {"jane"},
    "-timestamp>2000-01-01": {"jane_lower", "bare"},
    "message:only OR (timestamp>2024-02-15 AND -source:x)": {"bare", "percent"},
    "nothing-matches-this": set(),
}


@pytest.mark.parametrize(("query", "expected"), sorted(EXPECTED.items()))
def test_every_grammar_form_selects_exactly_the_expected_events(
    query: str, expected: set[str]
) -> None:
    expr = parse_query(query)
    found = {name for name, event in REFERENCE_EVENTS.items() if matches(expr, event)}
    assert found == expected


def test_trees_of_the_grammar_forms() -> None:
    t = Term
    assert parse_query("  ") is None
    assert parse_query("actor:bob") == t("actor", "contains", "bob")
    assert parse_query("actor=bob") == t("actor", "eq", "bob")
    assert parse_query('actor:"a b"') == t("actor", "contains", "a b")
    assert parse_query("-actor:bob") == Not(t("actor", "contains", "bob"))
    assert parse_query("a b") == And((t(None, "contains", "a"), t(None, "contains", "b")))
    assert parse_query("a AND b") == parse_query("a b")
    # AND binds tighter than OR; parentheses override.
    assert parse_query("a OR b c") == Or(
        (t(None, "contains", "a"), And((t(None, "contains", "b"), t(None, "contains", "c"))))
    )
    assert parse_query("(a OR b) c") == And(
        (Or((t(None, "contains", "a"), t(None, "contains", "b"))), t(None, "contains", "c"))
    )
    assert parse_query("-(a)") == Not(t(None, "contains", "a"))
    # Lower-case and/or are plain words.
    assert parse_query("a or b") == And(
        (t(None, "contains", "a"), t(None, "contains", "or"), t(None, "contains", "b"))
    )
    when = datetime(2024, 1, 2, tzinfo=UTC)
    assert parse_query("timestamp>2024-01-02") == Term("timestamp", "gt", "2024-01-02", when)
    assert parse_query("received_at<=2024-01-02T00:00:00Z") == Term(
        "received_at", "le", "2024-01-02T00:00:00Z", when
    )


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("(a", "missing ')'"),
        ("a)", "unexpected ')'"),
        ("a OR", "ends where a term"),
        ("AND a", "unexpected 'AND'"),
        ("foo:bar", "unknown field 'foo'"),
        ("actor>b", "actor is text"),
        ("timestamp:2024", "timestamp is a time"),
        ("timestamp>yesterday", "not an RFC 3339 time"),
        ("actor:", "has no value"),
        ('"open', "unterminated quote"),
        ("a\x00b", "NUL"),
        ("(" * 40 + "a" + ")" * 40, "deeper than"),
        ("a " * 3000, "longer than"),
    ],
)
def test_malformed_queries_say_what_is_wrong(query: str, complaint: str) -> None:
    with pytest.raises(SearchQueryError, match=re.escape(complaint)):
        parse_query(query)


NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0d", NOW),
        ("7d", NOW - timedelta(days=7)),
        ("30days", NOW - timedelta(days=30)),
        ("90mins", NOW - timedelta(minutes=90)),
        ("2h", NOW - timedelta(hours=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("1mo", NOW - timedelta(days=30)),
        ("1y", NOW - timedelta(days=365)),
        ("15s", NOW - timedelta(seconds=15)),
        ("2024-01-02T03:04:05.123456Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T03:04:05+02:00", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_time_bounds_are_rfc3339_or_durations_ago(value: str, expected: datetime) -> None:
    assert parse_time_bound(value, NOW) == expected


@pytest.mark.parametrize("value", ["7x", "d7", "", "yesterday", "-7d", "99999999999d"])
def test_bad_time_bounds_are_refused(value: str) -> None:
    with pytest.raises(SearchQueryError):
        parse_time_bound(value, NOW)


# Round trip: any tree, printed in the grammar, parses back to itself. ------------------------

_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=8,
)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(expr: Expr) -> str:
    """Print a tree in the grammar, fully parenthesized and quoted."""
    if isinstance(expr, Term):
        op = {"contains": ":", "eq": "="}[expr.op]
        return _quote(expr.value) if expr.field is None else f"{expr.field}{op}{_quote(expr.value)}"
    if isinstance(expr, Not):
        return f"-({render(expr.expr)})"
    joiner = " AND " if isinstance(expr, And) else " OR "
    return "(" + joiner.join(render(p) for p in expr.parts) + ")"


terms = st.builds(
    Term,
    st.sampled_from((None, *TEXT_FIELDS)),
    st.sampled_from(("contains", "eq")),
    _values,
).map(lambda t: Term(None, "contains", t.value) if t.field is None else t)
trees = st.recursive(
    terms,
    lambda sub: st.one_of(
        sub.map(Not),
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: And(tuple(ps))),
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: Or(tuple(ps))),
    ),
    max_leaves=8,
)


@given(trees)
def test_printed_trees_parse_back_to_themselves(expr: Expr) -> None:
    assert parse_query(render(expr)) == expr
