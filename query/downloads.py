"""Downloads and exports: ``/v1/download_results``, ``/v1/export`` and the capability URLs.

The Pangea SDK downloads with a plain GET and no Authorization header, so ``dest_url`` is a
capability: ``/v1/downloads/<secret>/<file name>``, where the secret is 256 random bits, stored
only as its SHA-256, and expires (``AUDITLOG_QUERY_DOWNLOAD_TTL_MINUTES``). Only the token that
owns a result set or export can mint one, and the content is exactly what that token could read.

An export records its filter and the size of every log of the topic at the time (202, then
``GET /request/{id}`` answers ``{}``); rows are read when the file is downloaded, in keyset
pages, and nothing beyond the recorded sizes is included, so every download of one export is
identical however much the log has grown.

File formats (both streamed):

json
    ``{"root": <Pangea root, verbose Pangea-verifiable only>, "events": [SearchEvent, ...]}``,
    each event as ``/v1/search`` returns it, envelope bytes exactly as sealed.
csv
    a header, then one line per event: ``hash, log, leaf_index, received_at, timestamp, actor,
    action, target, status, source, tenant_id, message, new, old, envelope`` (the canonical
    envelope JSON, which is what the hash covers), plus ``membership_proof`` when verbose on a
    Pangea-verifiable snapshot. A field cell that starts with ``= + - @``, a tab or a carriage
    return gets a leading ``'`` so that no spreadsheet runs it as a formula; the envelope
    column (JSON, starting with ``{``) is never changed, and stays what the hash covers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from auditlog.core.schema import error_item
from auditlog.core.search_query import SearchQueryError, parse_time_bound
from auditlog.pg.tokens import TokenInfo
from auditlog.web import requests_store
from auditlog.web.pangea import not_found, success, throttle, unauthorized, validation_error
from query import caps, search_months
from query import events as event_rows
from query import snapshot as snapshots
from query.search import load_owned
from query.search_sql import Filter, SqlParams, compile_filter, order_clause
from query.state import (
    COST_PAGE,
    COST_READ,
    COST_SEARCH,
    QueryState,
    authorize,
    authorized_json,
    public_base,
    state,
)

CHUNK: Final = 1000
FORMATS: Final = ("csv", "json")
CSV_COLUMNS: Final = (
    "hash", "log", "leaf_index", "received_at", "timestamp", "actor", "action", "target",
    "status", "source", "tenant_id", "message", "new", "old", "envelope",
)  # fmt: skip


def _secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def file_name(kind: str, source_id: str, fmt: str) -> str:
    prefix = "search_results" if kind == "search" else "export"
    return f"{prefix}_{source_id}.{fmt}"


async def _mint(
    request: Request,
    token: TokenInfo,
    kind: str,
    source_id: str,
    fmt: str,
    not_after: datetime | None,
) -> Response:
    st = state(request)
    full = await caps.refuse_at_cap(request, st, token, caps.DOWNLOADS)
    if full is not None:
        return full
    expires_at = datetime.now(UTC) + timedelta(minutes=st.settings.download_ttl_minutes)
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    secret = secrets.token_urlsafe(32)
    await st.pool.execute(
        "INSERT INTO downloads (secret_hash, kind, source_id, format, expires_at, token_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        _secret_hash(secret),
        kind,
        source_id,
        fmt,
        expires_at,
        token.token_id,
    )
    url = f"{public_base(request)}/v1/downloads/{secret}/{file_name(kind, source_id, fmt)}"
    return success(request, {"dest_url": url, "expires_at": snapshots.rfc3339(expires_at)})


def _format(body: dict[str, Any]) -> str | None:
    fmt = body.get("format", "csv")
    return fmt if fmt in FORMATS else None


async def download_results(request: Request) -> Response:
    granted = await authorized_json(request, COST_PAGE)
    if isinstance(granted, Response):
        return granted
    token, body = granted
    result_id, request_id = body.get("result_id"), body.get("request_id")
    fmt = _format(body)
    if fmt is None:
        return validation_error(
            request, [error_item("NotEnumMember", "'/format' must be csv or json", "/format")]
        )
    if (result_id is None) == (request_id is None):
        return validation_error(
            request,
            [error_item("MustProvideOne", "give exactly one of result_id and request_id", "/")],
        )
    st = state(request)
    if isinstance(result_id, str):
        row = await load_owned(st, token, result_id)
        if row is None:
            return not_found(request, f"search result {result_id} not found or expired")
        expires = await st.pool.fetchval(
            "SELECT expires_at FROM search_results WHERE id = $1", result_id
        )
        return await _mint(request, token, "search", result_id, fmt, expires)
    if isinstance(request_id, str):
        expires = await st.pool.fetchval(
            "SELECT expires_at FROM exports WHERE request_id = $1 AND token_id = $2"
            " AND expires_at > now()",
            request_id,
            token.token_id,
        )
        if expires is None:
            return not_found(request, f"export {request_id} not found or expired")
        return await _mint(request, token, "export", request_id, fmt, expires)
    return validation_error(request, [error_item("InvalidString", "the id must be a string", "/")])


def _export_params(
    body: dict[str, Any], now: datetime
) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    params: dict[str, Any] = {}
    for key in ("start", "end"):
        value = body.get(key)
        if value is None:
            params[key] = None
            continue
        if not isinstance(value, str):  # str() of a deeply nested value recursed into a 500
            errors.append(error_item("BadFormatDateTime", f"'/{key}' must be a string", f"/{key}"))
            continue
        try:
            params[key] = parse_time_bound(value, now).isoformat()
        except SearchQueryError as exc:
            errors.append(error_item("BadFormatDateTime", f"'/{key}': {exc}", f"/{key}"))
    order = body.get("order", "asc")
    if order not in ("asc", "desc"):
        errors.append(error_item("NotEnumMember", "'/order' must be asc or desc", "/order"))
    if body.get("order_by", "received_at") != "received_at":
        errors.append(
            error_item("NotEnumMember", "exports are ordered by received_at only", "/order_by")
        )
    verbose = body.get("verbose", True)
    if not isinstance(verbose, bool):
        errors.append(error_item("InvalidBoolean", "'/verbose' must be a boolean", "/verbose"))
    if _format(body) is None:
        errors.append(error_item("NotEnumMember", "'/format' must be csv or json", "/format"))
    params.update(order=order, verbose=verbose is not False)
    return (None if errors else params), errors


async def export(request: Request) -> Response:
    """Record an export and answer 202; ``GET /request/{id}`` then returns ``{}``."""
    granted = await authorized_json(request, COST_SEARCH)
    if isinstance(granted, Response):
        return granted
    token, body = granted
    now = datetime.now(UTC)
    params, errors = _export_params(body, now)
    if params is None:
        return validation_error(request, errors)
    st = state(request)
    full = await caps.refuse_at_cap(request, st, token, caps.EXPORTS)
    if full is not None:
        return full
    request_id: str = request.state.request_id
    snap = await snapshots.take(st.pool, st.settings.topic)
    await st.pool.execute(
        "INSERT INTO exports (request_id, token_id, tenant_id, params, snapshot, expires_at)"
        " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)",
        request_id,
        token.token_id,
        token.tenant_id,
        orjson.dumps(params).decode(),
        orjson.dumps(snap.to_json()).decode(),
        now + requests_store.TTL,
    )
    await requests_store.create(st.pool, request_id, token.token_id, "export")
    # The export's work is done at download time, from the recorded sizes.
    await requests_store.finish(st.pool, request_id, {}, None)
    return requests_store.accepted(request, request_id)


async def request_status(request: Request) -> Response:
    """``GET /request/{id}`` for a query service run on its own (exports)."""
    token = await authorize(request, "log") or await authorize(request, "search")
    if token is None:
        return unauthorized(request)
    refused = throttle(request, state(request).limits, token, COST_READ)
    if refused is not None:
        return refused
    return await requests_store.answer(
        request, state(request).pool, token, request.path_params["request_id"]
    )


# Serving files -----------------------------------------------------------------------------


# Spreadsheets run a cell that starts with one of these as a formula (OWASP's CSV injection);
# tab and carriage return too, as some of them strip those first.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_line(ev: event_rows.SealedEvent, proof: str | None) -> str:
    env = json.loads(ev.envelope)  # stdlib: big integers in custom fields stay exact
    event = env.get("event", {})

    def field(name: str) -> str:
        value = event.get(name)
        return spreadsheet_safe(value) if isinstance(value, str) else ""

    row = [
        ev.event_hash.hex(), ev.log_id, str(ev.idx), env.get("received_at", ""),
        field("timestamp"), field("actor"), field("action"), field("target"), field("status"),
        field("source"), field("tenant_id"), field("message"), field("new"), field("old"),
        ev.envelope.decode("utf-8"),
    ]  # fmt: skip
    if proof is not None:
        row.append(proof)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


class _Writer:
    """Renders chunks of events in one format, with proofs when the source was verbose."""

    def __init__(
        self, st: QueryState, fmt: str, snap: snapshots.Snapshot, verbose: bool, base: str
    ) -> None:
        self.st, self.fmt, self.snap, self.base = st, fmt, snap, base
        self.proofs = verbose and snap.pangea is not None
        self.verbose = verbose
        self.first = True

    def head(self) -> bytes:
        if self.fmt == "csv":
            columns = [*CSV_COLUMNS, "membership_proof"] if self.proofs else list(CSV_COLUMNS)
            return (",".join(columns) + "\n").encode()
        head = self.snap.pangea
        if self.proofs and head is not None:
            published = self.snap.published_at.get(head.log_id)
            root = orjson.dumps(snapshots.root_object(head, published, self.base))
            return b'{"root":' + root + b',"events":['
        return b'{"events":['

    def tail(self) -> bytes:
        return b"" if self.fmt == "csv" else b"]}\n"

    async def chunk(self, events: Sequence[event_rows.SealedEvent]) -> bytes:
        if self.fmt == "csv":
            proofs: list[str | None] = [None] * len(events)
            if self.proofs and self.snap.pangea is not None:
                found = await self.st.proofs.pangea_memberships(
                    self.snap.pangea, [e.idx for e in events]
                )
                proofs = list(found)
            return "".join(_csv_line(e, p) for e, p in zip(events, proofs, strict=True)).encode()
        items = await event_rows.render(events, self.snap, self.verbose, self.st.proofs)
        out = bytearray()
        for item in items:
            out += b"\n" if self.first else b",\n"
            self.first = False
            out += orjson.dumps(item)
        return bytes(out)


async def _search_chunks(
    st: QueryState, result_id: str, overhead: int
) -> AsyncIterator[list[event_rows.SealedEvent]]:
    """A result set's events in order, CHUNK keys read at a time, and of those as many as fit
    in max_page_bytes per chunk."""
    start = 1
    while True:
        row = await st.pool.fetchrow(
            "SELECT log_ids[$2:$3] AS log_ids, idxs[$2:$3] AS idxs,"
            " received_ats[$2:$3] AS received_ats FROM search_results WHERE id = $1",
            result_id,
            start,
            start + CHUNK - 1,
        )
        if row is None or not row["idxs"]:
            return
        keys = list(zip(row["log_ids"], row["idxs"], row["received_ats"], strict=True))
        while keys:
            found = await event_rows.fetch(
                st.pool, keys, max_bytes=st.settings.max_page_bytes, overhead=overhead
            )
            if not found:
                break
            yield found
            keys = keys[event_rows.consumed(keys, found) :]
        start += CHUNK


async def _export_chunks(
    st: QueryState,
    params: dict[str, Any],
    tenant: str | None,
    snap: snapshots.Snapshot,
    overhead: int,
) -> AsyncIterator[list[event_rows.SealedEvent]]:
    descending = params["order"] == "desc"
    flt = Filter(
        datetime.fromisoformat(params["start"]) if params["start"] else None,
        datetime.fromisoformat(params["end"]) if params["end"] else None,
        (),
        tenant,
    )
    sql_params = SqlParams(first=10)
    where = compile_filter(None, flt, sql_params)
    after = "<" if descending else ">"
    order = order_clause("received_at", descending, "e.")
    # A month at a time, its bounds and the logs constants of each statement's plan (a custom
    # one): PostgreSQL then plans and locks that month's partitions of those logs, not every
    # partition of events for every chunk (query/search_months.py). One pass over everything
    # when events may lie outside every month.
    async with st.pool.acquire() as conn:
        months: list[Any] | None = await search_months.event_months(conn, flt)
    if months is None:
        months = [(None, None)]
    for month in reversed(months) if descending else months:
        cursor: tuple[Any, ...] | None = None
        while True:
            keyset = (
                f' AND (e.received_at, e.log_id COLLATE "C", e.idx) {after} ($3, $4, $5)'
                if cursor
                else " AND $3::timestamptz IS NULL AND $4::text IS NULL AND $5::bigint IS NULL"
            )
            # Fixed fragments only; every value is a parameter. Of the next CHUNK rows, those
            # whose envelopes fit in max_bytes (always one) come back: the keyset goes on from
            # the last.
            async with st.pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                rows = await conn.fetch(
                    "SELECT log_id, idx, received_at, event_hash, envelope FROM ("  # noqa: S608
                    "  SELECT e.*, sum(octet_length(e.envelope) + $7::bigint) OVER w AS upto,"
                    "    row_number() OVER w AS n FROM ("
                    "    SELECT e.log_id, e.idx, e.received_at, e.event_hash, e.envelope"
                    "    FROM events e"
                    "    JOIN unnest($1::text[], $2::bigint[]) AS s(log_id, size)"
                    "    ON e.log_id = s.log_id AND e.idx < s.size"
                    f"    WHERE {where}{keyset} AND e.log_id = ANY($1::text[])"
                    "     AND ($8::timestamptz IS NULL OR e.received_at >= $8)"
                    "     AND ($9::timestamptz IS NULL OR e.received_at < $9)"
                    f"    ORDER BY {order} LIMIT {CHUNK}"
                    f"  ) e WINDOW w AS (ORDER BY {order})"
                    f") e WHERE upto <= $6::bigint OR n = 1 ORDER BY {order}",
                    [h.log_id for h in snap.heads],
                    [h.size for h in snap.heads],
                    *(cursor or (None, None, None)),
                    st.settings.max_page_bytes,
                    overhead,
                    *month,
                    *sql_params.values,
                )
            if not rows:
                break
            last = rows[-1]
            cursor = (last["received_at"], last["log_id"], last["idx"])
            yield [
                event_rows.SealedEvent(
                    r["log_id"], r["idx"], bytes(r["event_hash"]), bytes(r["envelope"])
                )
                for r in rows
            ]


async def serve_download(request: Request) -> Response:
    """A capability URL: no token, the secret in the path is the right to read."""
    st = state(request)
    secret = request.path_params["secret"]
    if not secret.isascii():  # minted secrets are URL-safe base64; nothing else can match
        return not_found(request, "no such download, or it expired")
    row = await st.pool.fetchrow(
        "SELECT kind, source_id, format FROM downloads WHERE secret_hash = $1"
        " AND expires_at > now()",
        _secret_hash(secret),
    )
    name = request.path_params["name"]
    if row is None or name != file_name(row["kind"], row["source_id"], row["format"]):
        return not_found(request, "no such download, or it expired")
    kind, source_id, fmt = row["kind"], row["source_id"], row["format"]
    # A download is only as alive as the token that made its search or export: revoking the
    # token ends every capability URL it minted (the URL is a bearer secret too).
    if kind == "search":
        src = await st.pool.fetchrow(
            "SELECT s.is_verbose, s.snapshot::text AS snapshot FROM search_results s"
            " JOIN api_tokens t ON t.token_id = s.token_id"
            " WHERE s.id = $1 AND t.revoked_at IS NULL",
            source_id,
        )
    else:
        src = await st.pool.fetchrow(
            "SELECT e.params::text AS params, e.tenant_id, e.snapshot::text AS snapshot"
            " FROM exports e JOIN api_tokens t ON t.token_id = e.token_id"
            " WHERE e.request_id = $1 AND t.revoked_at IS NULL",
            source_id,
        )
    if src is None:
        return not_found(
            request, "the search or export behind this download expired or its token was revoked"
        )
    snap = snapshots.Snapshot.from_json(orjson.loads(src["snapshot"]))
    params = orjson.loads(src["params"]) if kind == "export" else {}
    verbose = bool(src["is_verbose"]) if kind == "search" else bool(params["verbose"])
    writer = _Writer(st, fmt, snap, verbose, public_base(request))

    async def body() -> AsyncIterator[bytes]:
        yield writer.head()
        # Chunks of at most max_page_bytes of envelopes: a result set of large events is
        # streamed, never held whole.
        overhead = event_rows.overhead_bytes(snap, verbose)
        chunks = (
            _search_chunks(st, source_id, overhead)
            if kind == "search"
            else _export_chunks(st, params, src["tenant_id"], snap, overhead)
        )
        async for found in chunks:
            yield await writer.chunk(found)
        yield writer.tail()

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )
