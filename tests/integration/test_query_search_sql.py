"""The SQL translation of search queries, run on PostgreSQL, against the reference evaluator.

The reference events are written as ``events`` rows of a log of their own; every query (the
hand-written grammar forms and generated trees) must select exactly the events that
:func:`auditlog.core.search_query.matches` selects, and every ordering must sort as Python does.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings

from auditlog.core.search_query import Expr, matches, parse_query
from query.search_sql import ORDER_BY, Filter, SqlParams, compile_filter, order_clause
from tests.conftest import Services
from tests.unit.test_search_query import EXPECTED, REFERENCE_EVENTS, render, trees

pytestmark = pytest.mark.integration

NAMES = sorted(REFERENCE_EVENTS)
BASE = datetime(2030, 1, 1, tzinfo=UTC)
# Two events share received_at, as a bulk request's do: idx breaks the tie.
RECEIVED = {name: BASE + timedelta(seconds=min(i, 3)) for i, name in enumerate(NAMES)}
FIELDS = (
    "tenant_id", "actor", "action", "target", "status", "source", "message", "new", "old",
    "timestamp",
)  # fmt: skip


async def _insert(url: str, log_id: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for idx, name in enumerate(NAMES):
            event = REFERENCE_EVENTS[name]
            digest = hashlib.sha256(f"{log_id}/{name}".encode()).digest()
            await conn.execute(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,"
                " tenant_id, actor, action, target, status, source, message, new_value,"
                " old_value, event_time)"
                " VALUES ($1, $2, $3, $4, $5, $2, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                log_id,
                idx,
                digest,
                name.encode(),
                RECEIVED[name],
                *(event.get(f) for f in FIELDS),
            )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def reference_log(services: Services) -> str:
    log_id = f"search-sql-{secrets.token_hex(4)}"
    asyncio.run(_insert(services.database_url, log_id))
    return log_id


async def _select(url: str, log_id: str, expr: Expr | None, order: str = "") -> list[str]:
    params = SqlParams(first=2)
    where = compile_filter(expr, Filter(), params)
    order_sql = order or order_clause("received_at", False)
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f"SELECT envelope FROM events WHERE log_id = $1 AND {where} ORDER BY {order_sql}",
            log_id,
            *params.values,
        )
    finally:
        await conn.close()
    return [bytes(r["envelope"]).decode() for r in rows]


def _reference(expr: Expr | None) -> set[str]:
    return {name for name in NAMES if matches(expr, REFERENCE_EVENTS[name])}


@pytest.mark.parametrize(("query", "expected"), sorted(EXPECTED.items()))
def test_sql_selects_the_expected_events(
    services: Services, reference_log: str, query: str, expected: set[str]
) -> None:
    found = asyncio.run(_select(services.database_url, reference_log, parse_query(query)))
    assert set(found) == expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trees)
def test_sql_agrees_with_the_reference_evaluator_on_generated_queries(
    services: Services, reference_log: str, expr: Expr
) -> None:
    # Printed and parsed again, so the grammar path is exercised too.
    parsed = parse_query(render(expr))
    found = asyncio.run(_select(services.database_url, reference_log, parsed))
    assert set(found) == _reference(parsed)


def _python_order(field: str, descending: bool) -> list[str]:
    def key(name: str) -> tuple[object, ...]:
        value = REFERENCE_EVENTS[name].get(field) if field != "received_at" else RECEIVED[name]
        return (value, RECEIVED[name], NAMES.index(name))

    present = [n for n in NAMES if field == "received_at" or REFERENCE_EVENTS[n].get(field)]
    missing = [n for n in NAMES if n not in present]
    ordered = sorted(present, key=key, reverse=descending)
    # Missing values go last either way; among them, the tie-breakers keep the direction.
    tail = sorted(missing, key=lambda n: (RECEIVED[n], NAMES.index(n)), reverse=descending)
    return ordered + tail


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("field", sorted(ORDER_BY))
def test_orderings_sort_like_python_with_missing_values_last(
    services: Services, reference_log: str, field: str, descending: bool
) -> None:
    found = asyncio.run(
        _select(services.database_url, reference_log, None, order_clause(field, descending))
    )
    assert found == _python_order(field, descending)


def test_values_are_parameters_never_sql(services: Services, reference_log: str) -> None:
    hostile = "actor:\"'; DROP TABLE events; --\" OR message:\"' OR '1'='1\""
    assert asyncio.run(_select(services.database_url, reference_log, parse_query(hostile))) == []
    assert set(asyncio.run(_select(services.database_url, reference_log, None))) == set(NAMES)


async def _plan_indexes(url: str, query: str) -> set[str]:
    params = SqlParams()
    where = compile_filter(parse_query(query), Filter(), params)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET enable_seqscan = off")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT idx FROM events WHERE {where}", *params.values
        )
        # The search-text index and its per-partition copies.
        names = await conn.fetch(
            "SELECT c.relname FROM pg_class c WHERE c.relname = 'events_search_text'"
            " OR c.oid IN (SELECT inhrelid FROM pg_inherits"
            "              WHERE inhparent = 'events_search_text'::regclass)"
        )
    finally:
        await conn.close()
    search_text = {r["relname"] for r in names}
    return {name for name in search_text if f'"{name}"' in str(plan)}


@pytest.mark.parametrize(
    "query",
    ["deadbeef42", "actor:alice@exa", "target=res/123", 'message:"two words" OR status:fail'],
)
def test_terms_are_looked_up_in_the_search_text_index(services: Services, query: str) -> None:
    # SEARCH_TEXT must stay the expression migration 0003 indexes, or search silently scans.
    assert asyncio.run(_plan_indexes(services.database_url, query))
