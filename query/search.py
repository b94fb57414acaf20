"""Pangea's ``/v1/search`` and ``/v1/results``: stored, expiring, consistently paged result sets.

A search runs once, in a read-only repeatable-read transaction: it takes the snapshot of the
topic's logs and the ordered keys of up to ``max_results`` matching events together, so every
event found lies inside the snapshot's trees. The keys, the snapshot and the token that asked
are stored as a result set (``pas_...``); ``/v1/results`` slices the stored keys, so pages never
shift or repeat while the log grows, and proofs stay against the same root.

A page (the search's first, or ``/v1/results``) holds at most ``limit`` events and at most
``AUDITLOG_QUERY_MAX_PAGE_BYTES`` of them (always one): PostgreSQL sums the envelopes' sizes and
sends only those that fit, so a page of large events is never built whole. ``count`` stays the
result set's size; a client paging by offset goes on from ``offset + len(events)``.

Tenant isolation: a tenant-bound token's search always carries ``tenant_id = <its tenant>``, and
a result set can be paged or downloaded only by the token that created it; to any other token it
does not exist (NotFound, as for an unknown id).
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson
from prometheus_client import Histogram
from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.schema import error_item
from auditlog.core.search_keys import BLOCK_SIZE
from auditlog.core.search_query import Expr, SearchQueryError, parse_query, parse_time_bound
from auditlog.pg import search_generations
from auditlog.pg.locks import fetch_released
from auditlog.pg.tokens import TokenInfo
from auditlog.web.pangea import PangeaResponse, not_found, success, validation_error
from query import caps, search_months
from query import events as event_rows
from query import snapshot as snapshots
from query.search_sql import (
    COLUMNS,
    ORDER_BY,
    RESTRICTABLE,
    Filter,
    Span,
    SqlParams,
    blocks_probe,
    probed_span,
    select_matching,
)
from query.state import COST_PAGE, COST_SEARCH, QueryState, authorized_json, public_base, state

SEARCH_SECONDS = Histogram(
    "auditlog_query_search_seconds", "Time to run a search and store its result set"
)

MAX_RESULTS: Final = 10_000
# Blocks a search reads by their keys at least, however small the logs.
BLOCKS_PROBE_MIN: Final = 1000
DEFAULT_LIMIT: Final = 20
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits


def new_result_id() -> str:
    return "pas_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(32))


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """A validated search: what to match, in which order, how many."""

    query: str
    filter: Filter
    order_by: str
    descending: bool
    limit: int
    max_results: int
    verbose: bool


class _Errors(list[dict[str, str]]):
    def add(self, code: str, detail: str, source: str) -> None:
        self.append(error_item(code, detail, source))


def _int(body: dict[str, Any], key: str, default: int, top: int, errors: _Errors) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add("InvalidInteger", f"'/{key}' must be an integer", f"/{key}")
        return default
    if not 1 <= value <= top:
        errors.add(
            "IsTooBig" if value > top else "IsTooSmall", f"'/{key}' must be 1..{top}", f"/{key}"
        )
        return default
    return value


def _restriction(
    raw: object, errors: _Errors, source: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        errors.add("InvalidObject", f"'{source}' must be an object of value lists", source)
        return ()
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, values in sorted(raw.items()):
        where = f"{source}/{name}"
        if name not in RESTRICTABLE:
            errors.add("UnexpectedProperty", f"cannot restrict on {name!r}", where)
        elif (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and "\x00" not in v for v in values)
        ):
            errors.add("InvalidArray", f"'{where}' must be a non-empty list of strings", where)
        else:
            out.append((name, tuple(sorted(set(values)))))
    return tuple(out)


def _time(body: dict[str, Any], key: str, now: datetime, errors: _Errors) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add("BadFormatDateTime", f"'/{key}' must be a string", f"/{key}")
        return None
    try:
        return parse_time_bound(value, now)
    except SearchQueryError as exc:
        errors.add("BadFormatDateTime", f"'/{key}': {exc}", f"/{key}")
        return None


def parse_spec(
    body: dict[str, Any], token: TokenInfo, now: datetime
) -> tuple[SearchSpec | None, _Errors]:
    """Validate a /v1/search body (pangea-audit-api.md §2.4)."""
    errors = _Errors()
    query = body.get("query")
    if not isinstance(query, str):
        errors.add("FieldRequired", "'/query' is required and must be a string", "/query")
        query = ""
    order = body.get("order", "desc")
    if order not in ("asc", "desc"):
        errors.add("NotEnumMember", "'/order' must be 'asc' or 'desc'", "/order")
    order_by = body.get("order_by", "received_at")
    if not isinstance(order_by, str) or order_by not in ORDER_BY:  # a list is unhashable
        allowed = ", ".join(sorted(ORDER_BY))
        errors.add("NotEnumMember", f"'/order_by' must be one of {allowed}", "/order_by")
    verbose = body.get("verbose", True)
    if not isinstance(verbose, bool):
        errors.add("InvalidBoolean", "'/verbose' must be a boolean", "/verbose")
    limit = _int(body, "limit", DEFAULT_LIMIT, MAX_RESULTS, errors)
    max_results = _int(body, "max_results", MAX_RESULTS, MAX_RESULTS, errors)
    start = _time(body, "start", now, errors)
    end = _time(body, "end", now, errors)
    restriction = _restriction(body.get("search_restriction"), errors, "/search_restriction")
    try:
        parse_query(query)
    except SearchQueryError as exc:
        errors.add("InvalidQuery", str(exc), "/query")
    if errors:
        return None, errors
    flt = Filter(start, end, restriction, token.tenant_id)
    spec = SearchSpec(
        query, flt, order_by, order == "desc", limit, max_results, verbose is not False
    )
    return spec, errors


async def run(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    spec: SearchSpec,
    topic: str,
    *,
    time_limit: float | None = None,
) -> tuple[snapshots.Snapshot, list[event_rows.Key]]:
    """Snapshot and matching keys, read together (call inside a repeatable-read transaction).
    ``time_limit``: seconds the months of a search in time order may take together, each
    statement of it cancelled past what is left (asyncpg.QueryCanceledError)."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    snap = await snapshots.take(conn, topic)
    if not snap.heads:
        return snap, []
    expr = parse_query(spec.query)
    logs = [h.log_id for h in snap.heads]
    blocks = True
    flt = spec.filter
    # A time range reads only the search generations that overlap it; found first, so that
    # the search's plan leaves the others out.
    generations = (
        None
        if flt.start is None and flt.end is None
        else await search_generations.overlapping(conn, flt.start, flt.end)
    )
    probe_params = SqlParams(first=3)
    probe = blocks_probe(expr, probe_params, logs="$1", cap="$2", flt=flt, generations=generations)
    span = None
    if probe is not None:
        # The planner knows neither that reading a block's keys costs a TOAST fetch nor how few
        # events a block holds: left alone, it scans every block, or every event, for a handful;
        # and from such estimates it would compile the plan (JIT, 0.6 s at 10M events) for work
        # that takes a millisecond.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
        # Past an eighth of the logs' blocks, the events read in order find the matches sooner.
        cap = max(BLOCKS_PROBE_MIN, sum(h.size for h in snap.heads) // BLOCK_SIZE // 8)
        # Released after: it plans every generation the range allows, the search only those
        # its blocks lie in.
        (probed,) = await fetch_released(conn, probe, logs, cap, *probe_params.values)
        blocks = probed["found"] < cap
        if not blocks:
            await conn.execute("SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL jit TO DEFAULT")
        elif probed["found"] == 0:
            return snap, []  # no block holds the keys, and every entry has its blocks
        else:
            # Where the matching blocks lie, so that the search plans (and locks) only those
            # months, logs and generations, not every one (auditlog/pg/locks.py).
            span = probed_span(probed)
            if span is not None:
                generations = await search_generations.overlapping(conn, span.first, span.last)
    if span is None:
        # Not narrowed to a span (no whole token, a value in most blocks, or entries without
        # blocks, which may lie anywhere): read a month at a time (query/search_months.py),
        # each month's statement planning (and locking) that month's partitions only and
        # giving them back once read, where one statement plans every partition of every month.
        months = await search_months.event_months(conn, flt)
        if months is not None:

            async def read(month: search_months.Month, limit: int) -> list[asyncpg.Record]:
                return await _matching(
                    conn, expr, spec, logs, limit, blocks=blocks, generations=generations,
                    month=month,
                )  # fmt: skip

            keys = await search_months.walk(
                conn,
                months,
                read,
                order_by=spec.order_by,
                descending=spec.descending,
                most=spec.max_results,
                deadline=deadline,
            )
            if keys is not None:
                return snap, keys
    rows = await _matching(
        conn, expr, spec, logs, spec.max_results, blocks=blocks, generations=generations, span=span
    )
    return snap, [(r["log_id"], r["idx"], r["received_at"]) for r in rows]


async def _matching(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    expr: Expr | None,
    spec: SearchSpec,
    logs: list[str],
    limit: int,
    *,
    blocks: bool = True,
    generations: search_generations.Overlap | None = None,
    span: Span | None = None,
    month: search_months.Month | None = None,
) -> list[asyncpg.Record]:
    """The first ``limit`` events of ``logs`` matching the search, in its order (``log_id``,
    ``idx``, ``received_at`` and, ordered by another column, its ``value``): one statement of
    :func:`~query.search_sql.select_matching`, narrowed as given; a month's locks released
    after it (a walk holds one month's at a time)."""
    params = SqlParams(first=3)
    columns = "e.log_id, e.idx, e.received_at"
    if spec.order_by == "timestamp":
        columns += f", e.{COLUMNS[spec.order_by]} AS value, false AS cut"
    elif spec.order_by != "received_at":
        column, prefix = f"e.{COLUMNS[spec.order_by]}", search_months.VALUE_PREFIX
        columns += f", left({column}, {prefix}) AS value, length({column}) > {prefix} AS cut"
    sql = select_matching(
        expr,
        spec.filter,
        params,
        logs="$1",
        blocks=blocks,
        order_by=spec.order_by,
        descending=spec.descending,
        limit="$2",
        columns=columns,
        generations=generations,
        span=span,
        month=month,
    )
    if month is None:
        return await conn.fetch(sql, logs, limit, *params.values)
    return await fetch_released(conn, sql, logs, limit, *params.values)


def _restriction_json(restriction: tuple[tuple[str, tuple[str, ...]], ...]) -> bytes:
    return orjson.dumps({name: list(values) for name, values in restriction})


async def _page(
    st: QueryState,
    request: Request,
    keys: list[event_rows.Key],
    snap: snapshots.Snapshot,
    verbose: bool,
) -> dict[str, Any]:
    # At most max_page_bytes of events (always one): a client paging by offset goes on from
    # offset + len(events), which is where this page stopped (docs/query.md#pages).
    events = await event_rows.fetch(
        st.pool,
        keys,
        max_bytes=st.settings.max_page_bytes,
        overhead=event_rows.overhead_bytes(snap, verbose),
    )
    result: dict[str, Any] = {
        "events": await event_rows.render(events, snap, verbose, st.proofs),
    }
    head = snap.pangea
    if verbose and head is not None:
        base = public_base(request)
        result["root"] = snapshots.root_object(head, snap.published_at.get(head.log_id), base)
    return result


async def search(request: Request) -> Response:
    granted = await authorized_json(request, COST_SEARCH)
    if isinstance(granted, Response):
        return granted
    token, body = granted
    now = datetime.now(UTC)
    spec, errors = parse_spec(body, token, now)
    if spec is None:
        return validation_error(request, errors)
    st = state(request)
    full = await caps.refuse_at_cap(request, st, token, caps.RESULT_SETS)
    if full is not None:
        return full
    with SEARCH_SECONDS.time():
        async with (
            st.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # For this transaction only: the pool's shorter bound is for point reads.
            timeout_ms = round(st.settings.search_timeout_seconds * 1000)
            await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            # A plan for these keys, not a generic one: which index pays depends on the values
            # (a rare key through GIN, a common one not at all), and a prepared statement's
            # generic plan cannot see them.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            snap, keys = await run(
                conn, spec, st.settings.topic, time_limit=st.settings.search_timeout_seconds
            )
        result_id = new_result_id()
        expires_at = now + timedelta(hours=st.settings.result_ttl_hours)
        await st.pool.execute(
            "INSERT INTO search_results (id, token_id, tenant_id, is_verbose, restriction,"
            " snapshot, log_ids, idxs, received_ats, expires_at)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10)",
            result_id,
            token.token_id,
            token.tenant_id,
            spec.verbose,
            _restriction_json(spec.filter.restriction).decode(),
            orjson.dumps(snap.to_json()).decode(),
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            expires_at,
        )
    page = await _page(st, request, keys[: spec.limit], snap, spec.verbose)
    result = {
        "id": result_id,
        "expires_at": snapshots.rfc3339(expires_at),
        "count": len(keys),
        **page,
    }
    return success(request, result)


async def load_owned(
    st: QueryState, token: TokenInfo, result_id: str, *, slice_from: int = 1, slice_to: int = 0
) -> asyncpg.Record | None:
    """A live result set created by ``token`` with keys[slice_from..slice_to] (1-based)."""
    row = await st.pool.fetchrow(
        "SELECT token_id, tenant_id, is_verbose, restriction::text AS restriction,"
        " snapshot::text AS snapshot, cardinality(idxs) AS count,"
        " log_ids[$2:$3] AS log_ids, idxs[$2:$3] AS idxs, received_ats[$2:$3] AS received_ats"
        " FROM search_results WHERE id = $1 AND expires_at > now()",
        result_id,
        slice_from,
        slice_to,
    )
    # Another token's result set answers exactly like a missing one.
    if row is None or row["token_id"] != token.token_id:
        return None
    return row


def row_keys(row: asyncpg.Record) -> list[event_rows.Key]:
    return list(zip(row["log_ids"], row["idxs"], row["received_ats"], strict=True))


async def results(request: Request) -> Response:
    granted = await authorized_json(request, COST_PAGE)
    if isinstance(granted, Response):
        return granted
    token, body = granted
    errs = _Errors()
    result_id = body.get("id")
    if not isinstance(result_id, str) or not result_id:
        errs.add("FieldRequired", "'/id' is required: a search result id", "/id")
    limit = _int(body, "limit", DEFAULT_LIMIT, MAX_RESULTS, errs)
    offset = body.get("offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        errs.add("InvalidInteger", "'/offset' must be a non-negative integer", "/offset")
        offset = 0
    asserted = _restriction(
        body.get("assert_search_restriction"), errs, "/assert_search_restriction"
    )
    if errs:
        return validation_error(request, errs)
    assert isinstance(result_id, str)
    st = state(request)
    # A result set never holds more than MAX_RESULTS, so a larger offset is past any of them;
    # clamped, it cannot overflow the slice bounds in SQL, and BadOffset follows below.
    start = min(offset, MAX_RESULTS)
    row = await load_owned(st, token, result_id, slice_from=start + 1, slice_to=start + limit)
    if row is None:
        return not_found(request, f"search result {result_id} not found or expired")
    if offset > row["count"]:
        return PangeaResponse(
            request,
            "BadOffset",
            {"errors": [error_item("BadOffset", "offset is beyond the result count", "/offset")]},
            f"offset {offset} is beyond the {row['count']} results",
        )
    if "assert_search_restriction" in body and orjson.loads(
        _restriction_json(asserted)
    ) != orjson.loads(row["restriction"]):
        return validation_error(
            request,
            [
                error_item(
                    "SearchRestrictionMismatch",
                    "the search ran with another search_restriction",
                    "/assert_search_restriction",
                )
            ],
        )
    snap = snapshots.Snapshot.from_json(orjson.loads(row["snapshot"]))
    page = await _page(st, request, row_keys(row), snap, row["is_verbose"])
    return success(request, {"count": row["count"], **page})
