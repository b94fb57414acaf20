"""The SQL translation of search queries, run on PostgreSQL, against the reference evaluator.

The reference events are written as ``events`` rows of a log of their own, with the search
blocks the sealer would write; every query (the hand-written grammar forms and generated trees)
must select exactly the events that :func:`auditlog.core.search_query.matches` selects, both
narrowed by the blocks and reading every event, and every ordering must sort as Python does.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings

from auditlog.core.search_query import Expr, matches, parse_query
from auditlog.pg import search_index
from auditlog.pg.search_blocks import block_rows, copy_blocks
from query.search_sql import (
    ORDER_BY,
    Filter,
    SqlParams,
    block_predicate,
    blocks_probe,
    compile_filter,
    order_clause,
    probed_span,
    select_matching,
)
from tests.conftest import Services, scratch_database
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
        # The blocks the sealer writes with the events (their first idx decides the grouping).
        rows = await conn.fetch(
            "SELECT idx, received_at, tenant_id, actor, action, target, status, source, message,"
            " new_value, old_value FROM events WHERE log_id = $1 ORDER BY idx",
            log_id,
        )
        await copy_blocks(conn, block_rows(log_id, [tuple(r) for r in rows]))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def reference_log(services: Services) -> str:
    log_id = f"search-sql-{secrets.token_hex(4)}"
    asyncio.run(_insert(services.database_url, log_id))
    return log_id


async def _select(url: str, log_id: str, expr: Expr | None, order: str = "") -> list[str]:
    """Every event, read and checked (what search does when the blocks cannot narrow it)."""
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


async def _search(url: str, log_id: str, expr: Expr | None) -> list[str]:
    """What search runs: narrowed by the blocks whenever the query allows it; and as
    query.search.run narrows it further, to the span of the blocks the probe finds, or to
    nothing when it finds none, which must not change the answer."""
    params = SqlParams(first=2)
    sql = select_matching(expr, Filter(), params, logs="$1", columns="e.envelope")
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(sql, [log_id], *params.values)
        probe_params = SqlParams(first=3)
        probe = blocks_probe(expr, probe_params, logs="$1", cap="$2")
        if probe is not None:
            probed = await conn.fetchrow(probe, [log_id], 10_000, *probe_params.values)
            assert probed is not None
            if probed["found"] == 0:
                assert rows == []
            span = probed_span(probed)
            assert (span is None) == (probed["found"] == 0)
            spanned_params = SqlParams(first=2)
            spanned_sql = select_matching(
                expr, Filter(), spanned_params, logs="$1", columns="e.envelope", span=span
            )
            spanned = await conn.fetch(spanned_sql, [log_id], *spanned_params.values)
            assert spanned == rows
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
    narrowed = asyncio.run(_search(services.database_url, reference_log, parse_query(query)))
    assert set(narrowed) == expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trees)
def test_sql_agrees_with_the_reference_evaluator_on_generated_queries(
    services: Services, reference_log: str, expr: Expr
) -> None:
    # Printed and parsed again, so the grammar path is exercised too.
    parsed = parse_query(render(expr))
    expected = _reference(parsed)
    assert set(asyncio.run(_select(services.database_url, reference_log, parsed))) == expected
    assert set(asyncio.run(_search(services.database_url, reference_log, parsed))) == expected


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


def test_whole_tokens_narrow_by_blocks_and_other_values_do_not() -> None:
    narrowed = [
        'actor="alice@example.com"',
        'message:"the disk is full"',
        "message:x-1234-y",
        "status=ok (actor:@b. OR message:.c.)",
        "actor=a -message:b",
    ]
    for query in narrowed:
        assert block_predicate(parse_query(query), SqlParams()) is not None, query
    not_narrowed = ["deadbeef42", "actor:alice@exa", "-actor=x", "a OR actor=b", 'message:""']
    not_narrowed.append('message:"disk full"')  # either word may go on: "diskette fullness"
    for query in not_narrowed:
        assert block_predicate(parse_query(query), SqlParams()) is None, query


def test_a_narrowed_search_reads_events_by_their_blocks(
    services: Services, reference_log: str
) -> None:
    async def plan() -> str:
        params = SqlParams(first=2)
        sql = select_matching(parse_query("actor=x@y.z"), Filter(), params, logs="$1")
        conn = await asyncpg.connect(services.database_url)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")
                return str(
                    await conn.fetchval(
                        f"EXPLAIN (FORMAT JSON) {sql}", [reference_log], *params.values
                    )
                )
        finally:
            await conn.close()

    # Which index finds the blocks is the planner's choice (on a table this small, the primary
    # key); what matters is that events are read by the blocks' ranges, not scanned.
    found = asyncio.run(plan())
    assert "search_blocks" in found
    assert "(idx >= b.first_idx)" in found


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


@pytest.fixture(scope="module")
def trigram_database(services: Services) -> Iterator[str]:
    """A database where an operator built the optional trigram index."""
    with scratch_database(services.database_url, f"trigram_{secrets.token_hex(4)}") as url:

        async def build() -> None:
            conn = await asyncpg.connect(url)
            try:
                await search_index.create(conn, lambda _: None)
            finally:
                await conn.close()

        asyncio.run(build())
        yield url


@pytest.mark.parametrize(
    "query",
    ["deadbeef42", "actor:alice@exa", "target=res/123", 'message:"two words" OR status:fail'],
)
def test_terms_are_looked_up_in_the_search_text_index(trigram_database: str, query: str) -> None:
    # SEARCH_TEXT must stay the expression `search-index create` indexes, or search scans.
    assert asyncio.run(_plan_indexes(trigram_database, query))
