"""A search its blocks cannot narrow walks ``events`` a month at a time (query/search_months.py):
the same answer as one statement over every month, in either direction, cut at max_results
within or across months, within a time range, in time order or by another column (NULLs, ties,
text past ASCII); it holds no month's locks once read; and it falls back to one statement when
events lie outside every month."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from auditlog.core.note import NoteSigner
from auditlog.core.search_query import parse_query
from bench.query_data import build_log
from query import events as event_rows
from query.downloads import _export_chunks
from query.search import MAX_RESULTS, SearchSpec, run
from query.search_sql import Filter, SqlParams, select_matching
from sealer.partitions import Partitions
from sealer.timestamps import micros
from tests.conftest import Services, connected, insert_event, scratch_database

pytestmark = pytest.mark.integration

LOG, TOPIC = "months-0", "months"
# Entries 0-99 in January, 100-199 in February, 200-299 in March.
MONTHS = [datetime(2031, m, 1, tzinfo=UTC) for m in (1, 2, 3)]
ANY_TIME = Filter()
QUERY = "message:ser1"  # no whole token: the blocks cannot narrow it, so events are read in order


def _received(idx: int) -> datetime:
    return MONTHS[idx // 100] + timedelta(days=1, minutes=idx % 100)


async def _write(conn: asyncpg.Connection, idxs: range, at: datetime | None = None) -> None:
    await Partitions().ensure(conn, LOG, [micros(m + timedelta(days=1)) for m in MONTHS])
    for idx in idxs:
        await insert_event(conn, LOG, idx, at or _received(idx), f"key rotated by user{idx} today")


async def _search(
    conn: asyncpg.Connection,
    *,
    descending: bool,
    most: int,
    flt: Filter = ANY_TIME,
    order_by: str = "received_at",
    query: str = QUERY,
) -> tuple[list[int], int]:
    """The indexes run() finds, and how many months of ``events`` its transaction held locked."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        spec = SearchSpec(query, flt, order_by, descending, 20, most, False)
        _, keys = await run(conn, spec, TOPIC)
        locks = await _months_locked(conn)
    return [k[1] for k in keys], locks


async def _both(conn: asyncpg.Connection, **search: Any) -> tuple[list[int], list[int], int]:
    """What run() finds, what one statement over every month finds, and the months run() held
    locked."""
    found, held = await _search(conn, **search)
    return found, await _one_statement(conn, **search), held


async def _months_locked(conn: asyncpg.Connection) -> int:
    """How many months of ``events`` this session holds locked."""
    locked: int = await conn.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = pg_backend_pid() AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'"
    )
    return locked


async def _one_statement(
    conn: asyncpg.Connection,
    *,
    descending: bool,
    most: int,
    flt: Filter = ANY_TIME,
    order_by: str = "received_at",
    query: str = QUERY,
) -> list[int]:
    params = SqlParams(first=3)
    sql = select_matching(
        parse_query(query),
        flt,
        params,
        logs="$1",
        order_by=order_by,
        descending=descending,
        limit="$2",
        columns="e.idx",
    )
    return [r["idx"] for r in await conn.fetch(sql, [LOG], most, *params.values)]


async def _three_months(url: str, signer: NoteSigner) -> None:
    """The log of 300 entries, 100 a month, with their events."""
    await build_log(url, LOG, TOPIC, 300, signer)
    async with connected(url) as conn:
        await _write(conn, range(300))


def test_month_by_month_answers_as_one_statement_and_plans_only_the_months_it_reads(
    services: Services, note_signer: NoteSigner
) -> None:
    with scratch_database(services.database_url, f"months_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            await _three_months(url, note_signer)
            async with connected(url) as conn:
                ser1 = [i for i in range(300) if "ser1" in f"user{i} "]
                cases: list[tuple[bool, int, Filter]] = [
                    (True, MAX_RESULTS, Filter()),
                    (False, MAX_RESULTS, Filter()),
                    (True, 5, Filter()),  # March holds none: February's last five
                    (False, 15, Filter()),  # January's 11, then February's first
                    (True, 105, Filter()),  # past February into January
                    # Within a range that starts and ends inside February.
                    (True, MAX_RESULTS, Filter(_received(150), _received(170))),
                ]
                for descending, most, flt in cases:
                    found, expected, _ = await _both(
                        conn, descending=descending, most=most, flt=flt
                    )
                    assert found == expected, (descending, most, flt)
                assert (await _search(conn, descending=True, most=MAX_RESULTS))[0] == ser1[::-1]
                # However many months it read, the walk gives back each month's locks.
                assert (await _search(conn, descending=False, most=5))[1] == 0
                assert (await _search(conn, descending=True, most=MAX_RESULTS))[1] == 0

                # Ordered by another column, every month is read and merged: actors with ties,
                # NULLs, upper case and letters past ASCII (byte order: "Z" < "a" < "z" < "é");
                # event times with NULLs and ties too.
                names = ["zoë", "Zoe", "zoe", "álvaro", "ß", "b", None, "a", "A", None, "zoë"]
                for idx in range(300):
                    await conn.execute(
                        "UPDATE events SET actor = $3, event_time = $4"
                        " WHERE log_id = $1 AND idx = $2",
                        LOG,
                        idx,
                        names[idx % len(names)],
                        None if idx % 9 == 0 else MONTHS[0] + timedelta(hours=idx % 17),
                    )
                for order_by in ("actor", "timestamp"):
                    for descending, most in ((True, MAX_RESULTS), (False, MAX_RESULTS),
                                             (True, 7), (False, 4), (True, 12)):  # fmt: skip
                        found, expected, held = await _both(
                            conn, descending=descending, most=most, order_by=order_by
                        )
                        assert found == expected, (order_by, descending, most)
                        assert held == 0
                    window = Filter(_received(150), _received(250))
                    found, expected, _ = await _both(
                        conn, descending=False, most=9, flt=window, order_by=order_by
                    )
                    assert found == expected

                # Long values: the merge holds their first 256 characters. Different within
                # them, the walk goes on; agreeing that far and going on, it cannot tell their
                # order, and the search reads its range in one statement.
                async def actors(**by_idx: str) -> None:
                    for idx, actor in by_idx.items():
                        await conn.execute(
                            "UPDATE events SET actor = $3 WHERE log_id = $1 AND idx = $2",
                            LOG,
                            int(idx.removeprefix("i")),
                            actor,
                        )

                await actors(i1="q" * 250 + "b" * 50, i150="q" * 250 + "a" * 50)
                for descending in (False, True):
                    found, expected, held = await _both(
                        conn, descending=descending, most=MAX_RESULTS, order_by="actor"
                    )
                    assert found == expected and held == 0, descending
                await actors(i10="q" * 300 + "d", i160="q" * 300 + "c")
                for descending in (False, True):
                    found, expected, held = await _both(
                        conn, descending=descending, most=MAX_RESULTS, order_by="actor"
                    )
                    assert found == expected and held > 0, descending

                # Entries without blocks (these events have none: the log says so) may lie
                # anywhere: a search with whole tokens walks the months too, each month's
                # ranges with them, and answers as one statement over everything.
                await conn.execute(
                    "INSERT INTO search_coverage (log_id, below) VALUES ($1, 300)", LOG
                )
                for query in ('message:"by user150 today"', 'message:"key rotated"'):
                    for descending, most in ((True, MAX_RESULTS), (False, 120), (True, 7)):
                        found, expected, held = await _both(
                            conn, descending=descending, most=most, query=query
                        )
                        assert found == expected and found, (query, descending, most)
                        assert held == 0
                await conn.execute("DELETE FROM search_coverage WHERE log_id = $1", LOG)

                # A page of events read by key plans (and locks) only its keys' months.
                for idxs, months in (((3, 5), 1), ((3, 150), 2), ((3, 150, 299), 3)):
                    async with conn.transaction():
                        page = await event_rows.fetch(conn, [(LOG, i, _received(i)) for i in idxs])
                        assert [e.idx for e in page] == list(idxs)
                        assert await _months_locked(conn) == months

                # The search's time limit bounds the months together.
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    spec = SearchSpec(QUERY, ANY_TIME, "received_at", True, 20, MAX_RESULTS, False)
                    with pytest.raises(asyncpg.QueryCanceledError):
                        await run(conn, spec, TOPIC, time_limit=1e-9)
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    _, keys = await run(conn, spec, TOPIC, time_limit=60)
                assert [k[1] for k in keys] == ser1[::-1]

                # An event outside every month lands in the default partition: one statement
                # over all of them again, and it is found.
                await _write(conn, range(1000, 1001), at=datetime(2040, 6, 1, tzinfo=UTC))
                found, leaves = await _search(conn, descending=True, most=3)
                assert found[0] == 1000  # user1000
                # One statement's: every month (the one ahead too), held to the end.
                assert leaves == await conn.fetchval(
                    "SELECT count(*) FROM pg_class WHERE relname ~ '^events_[0-9]{4}_[0-9]{2}$'"
                )
                assert leaves >= 3
                assert found == await _one_statement(conn, descending=True, most=3)

        asyncio.run(check())


def test_an_export_reads_a_month_at_a_time_in_either_order(
    services: Services, note_signer: NoteSigner
) -> None:
    with scratch_database(services.database_url, f"months_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            await _three_months(url, note_signer)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            assert pool is not None
            try:
                snap = SimpleNamespace(heads=[SimpleNamespace(log_id=LOG, size=300)])
                for page_bytes in (10**6, 1):  # whole months at once; one event a statement
                    st = SimpleNamespace(
                        pool=pool, settings=SimpleNamespace(max_page_bytes=page_bytes)
                    )
                    for order, start, end, expected in (
                        ("asc", None, None, list(range(300))),
                        ("desc", None, None, list(range(299, -1, -1))),
                        ("asc", _received(95), _received(205), list(range(95, 206))),
                        ("desc", _received(150), None, list(range(299, 149, -1))),
                    ):
                        params = {
                            "order": order,
                            "start": start.isoformat() if start else None,
                            "end": end.isoformat() if end else None,
                        }
                        chunks = _export_chunks(st, params, None, snap, 0)  # type: ignore[arg-type]
                        found = [e.idx for chunk in [c async for c in chunks] for e in chunk]
                        assert found == expected, (page_bytes, order, start, end)
            finally:
                await pool.close()

        asyncio.run(check())
