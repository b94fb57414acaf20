"""The query service: search, proofs, roots, tiles, receipts and exports over PostgreSQL.

It never writes the log tables. Its own writes are search result sets, exports and download
capabilities (tables of schema 2). Every proof is built against a signed checkpoint and returned
with it, from tiles, which only ever grow by appending; so a proof and its checkpoint always
agree even while the sealer writes (see query/proofs.py).

Composition root: :func:`lifespan` opens the pool, the token cache and the proof caches and hands
them to handlers as ``request.state.query``; a background task drops expired result sets,
exports and downloads. Shutdown: stop accepting requests (uvicorn), cancel the sweeper, close
the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auditlog.core.envelope import parse_received_at
from auditlog.core.errors import InvalidEvent, TileError
from auditlog.core.log_keys import log_vkey
from auditlog.core.note import NoteVerifier
from auditlog.core.receipt import Receipt
from auditlog.core.schema import error_item
from auditlog.core.tiles import TILE_WIDTH, decode_bundle, encode_bundle, parse_tile_path
from auditlog.pg import db
from auditlog.pg.tokens import TokenCache, TokenInfo
from auditlog.runtime import stalls
from auditlog.runtime.observability import configure_logging, declare_build_info
from auditlog.runtime.settings import describe
from auditlog.web.app import Edge, service_app
from auditlog.web.pangea import (
    PangeaResponse,
    not_found,
    success,
    unavailable,
    validation_error,
)
from auditlog.web.params import non_negative_int
from auditlog.web.ratelimit import Limits
from query import (
    downloads,
    idempotency,
    openapi,
    roots,
    search,
    statements,
    viewer_tokens,
    web_console,
)
from query.hashes import HashIndexProbe, find_at, find_by_hash
from query.heads import HeadCache
from query.proofs import ProofBuilder
from query.replica import READ_FROM_HEADER, REPLICA, Reads, ReplicaLag
from query.roots import IMMUTABLE, text
from query.settings import Settings
from query.state import COST_READ, QueryState, admitted, state

log = structlog.get_logger("query")

HASH_SIZE = 32
SWEEP_SECONDS = 600.0


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


async def list_logs(request: Request) -> Response:
    st = state(request)
    rows = await st.reads().pool.fetch(
        "SELECT log_id, origin, hash_scheme, size, topic, kafka_partition,"
        # When the latest checkpoint was signed: one primary-key lookup a log.
        " (SELECT created_at FROM checkpoints c WHERE c.log_id = l.log_id AND c.size = l.size)"
        ' AS checkpoint_at FROM logs l ORDER BY log_id COLLATE "C"'
    )
    key = NoteVerifier.from_vkey(st.settings.vkey) if st.settings.vkey else None
    return success(
        request,
        {
            "logs": [
                {
                    "log": r["log_id"],
                    "origin": r["origin"],
                    "hash_scheme": r["hash_scheme"],
                    "size": r["size"],
                    "topic": r["topic"],
                    "partition": r["kafka_partition"],
                    "vkey": log_vkey(key, r["origin"]) if key is not None else None,
                    "checkpoint_at": _iso(r["checkpoint_at"]),
                }
                for r in rows
            ]
        },
    )


async def checkpoint(request: Request) -> Response:
    note = (
        await state(request)
        .reads()
        .pool.fetchval("SELECT checkpoint FROM logs WHERE log_id = $1", request.path_params["log"])
    )
    if note is None:
        return not_found(request, "no such log, or nothing sealed in it yet")
    return text(note)


async def tile(request: Request) -> Response:
    log_id = request.path_params["log"]
    try:
        level, index, width = parse_tile_path("tile/" + request.path_params["rest"])
    except TileError:
        return not_found(request, "not a tile path")
    pool = state(request).reads().pool
    if level is None:
        # Entry bundles carry the events themselves: the same rights as search.
        token = await admitted(request, COST_READ)
        if isinstance(token, Response):
            return token
        if token.tenant_id is not None:
            return PangeaResponse(
                request,
                "Forbidden",
                None,
                "entry bundles mix tenants; a tenant-bound token cannot read them",
            )
        data = await pool.fetchval(
            "SELECT data FROM bundles WHERE log_id = $1 AND idx = $2", log_id, index
        )
        if data is None:
            return not_found(request, "no such entry bundle")
        entries = decode_bundle(bytes(data))
        if len(entries) < width:
            return not_found(request, "entry bundle not that wide yet")
        body = bytes(data) if len(entries) == width else encode_bundle(entries[:width])
    else:
        data = await pool.fetchval(
            "SELECT data FROM tiles WHERE log_id = $1 AND level = $2 AND idx = $3",
            log_id,
            level,
            index,
        )
        if data is None or len(data) < width * HASH_SIZE:
            return not_found(request, "no such tile")
        body = bytes(data)[: width * HASH_SIZE]
    cache = IMMUTABLE if width == TILE_WIDTH else "public, max-age=60"
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": cache})


async def _receipt(
    request: Request, reads: Reads, token: TokenInfo, row: asyncpg.Record | None
) -> Response:
    # A tenant-bound token gets the same answer for another tenant's event as for a missing one.
    if row is None or (token.tenant_id is not None and row["tenant_id"] != token.tenant_id):
        return not_found(request, "no sealed event with that hash or index")
    return await _receipt_at(request, reads, row["log_id"], row["idx"], entry_read=True)


async def _receipt_at(
    request: Request, reads: Reads, log_id: str, index: int, *, entry_read: bool
) -> Response:
    head = await reads.heads.covering(log_id, index, entry_read=entry_read)
    if head is None or head.size <= index:
        return not_found(request, "no sealed event with that hash or index")
    # The proof is built for the head's size and sent with that head's checkpoint, never another,
    # both read from one server (query/replica.py).
    proof = await reads.proofs.inclusion(head, index)
    receipt = Receipt(index=index, proof=tuple(proof), checkpoint=head.checkpoint)
    response = text(receipt.to_text(), cache="private, no-cache")
    response.headers[READ_FROM_HEADER] = reads.source
    return response


async def receipt_by_hash(request: Request) -> Response:
    try:
        digest = bytes.fromhex(request.path_params["hash"])
    except ValueError:
        digest = b""
    if len(digest) != HASH_SIZE:
        return not_found(request, "an event hash is 64 hex characters")
    received = request.query_params.get("received_at")
    try:
        received_at = None if received is None else parse_received_at(received)
    except InvalidEvent as exc:
        return validation_error(request, [error_item("BadFormatDateTime", str(exc), "received_at")])
    token = await admitted(request, COST_READ)
    if isinstance(token, Response):
        return token
    reads = state(request).reads()
    if received_at is None and not await reads.hash_index.available():
        return validation_error(
            request,
            [
                error_item(
                    "FieldRequired",
                    "this deployment keeps no event-hash index (auditlog hash-index):"
                    " pass received_at, the envelope's, to find the event by time",
                    "received_at",
                )
            ],
        )
    row = await find_by_hash(reads.pool, digest, token.tenant_id, received_at)
    return await _receipt(request, reads, token, row)


async def receipt_by_index(request: Request) -> Response:
    index = non_negative_int(request.path_params["index"])
    if index is None:
        return not_found(request, "an index is a non-negative integer")
    token = await admitted(request, COST_READ)
    if isinstance(token, Response):
        return token
    if token.tenant_id is None:
        # Every sealed entry is this token's to see, and the signed head alone says whether the
        # entry is sealed (index < size): no row to read.
        reads = state(request).reads()
        return await _receipt_at(
            request, reads, request.path_params["log"], index, entry_read=False
        )
    reads = state(request).reads()
    row = await find_at(reads.pool, request.path_params["log"], index)
    return await _receipt(request, reads, token, row)


async def healthz(request: Request) -> Response:
    return PangeaResponse(request, "Success", {"status": "ok"}, "alive")


async def readyz(request: Request) -> Response:
    try:
        async with asyncio.timeout(2):
            await state(request).pool.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return unavailable(request, "PostgreSQL is not reachable")
    return PangeaResponse(request, "Success", {"status": "ready"}, "ready")


def routes() -> list[BaseRoute]:
    # The edge (auditlog/web/app.py) tries templated routes in order, one regular expression
    # each: the busiest (receipts and tiles, thousands per second) come first. No two patterns
    # overlap, so order is only cost.
    return [
        Route("/v1/logs/{log}/receipts/{index}", receipt_by_index, methods=["GET"]),
        Route("/v1/logs/{log}/tile/{rest:path}", tile, methods=["GET"]),
        Route("/v1/receipts/{hash}", receipt_by_hash, methods=["GET"]),
        Route("/v1/receipts", idempotency.receipt_by_key, methods=["GET"]),
        # Pangea-compatible
        Route("/v1/search", search.search, methods=["POST"]),
        Route("/v1/results", search.results, methods=["POST"]),
        Route("/v1/root", roots.root, methods=["POST"]),
        Route("/v1/download_results", downloads.download_results, methods=["POST"]),
        Route("/v1/export", downloads.export, methods=["POST"]),
        Route("/request/{request_id}", downloads.request_status, methods=["GET"]),
        # Native
        Route("/v1/logs", list_logs, methods=["GET"]),
        Route("/v1/logs/{log}/checkpoint", checkpoint, methods=["GET"]),
        Route("/v1/logs/{log}/checkpoints/{size}", roots.checkpoint_at, methods=["GET"]),
        Route("/v1/logs/{log}/pruned", statements.pruned, methods=["GET"]),
        Route("/v1/logs/{log}/erasures", statements.erasures, methods=["GET"]),
        Route("/v1/proofs/consistency", roots.consistency, methods=["GET"]),
        Route("/v1/downloads/{secret}/{name}", downloads.serve_download, methods=["GET"]),
        Route("/v1/openapi.json", openapi.endpoint, methods=["GET"]),
        Route("/v1/viewer_tokens", viewer_tokens.mint, methods=["POST"]),
        # The web console (static files; query/web_console.py)
        Route("/console", web_console.to_index, methods=["GET"]),
        Route("/console/", web_console.index, methods=["GET"]),
        Route("/console/{name}", web_console.asset, methods=["GET"]),
        # Operations
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


async def _sweep(pool: asyncpg.Pool) -> None:
    """Drop expired result sets, exports, downloads and viewer tokens now and then."""
    while True:
        for table in ("search_results", "exports", "downloads", "api_tokens"):
            try:
                await pool.execute(f"DELETE FROM {table} WHERE expires_at < now()")  # noqa: S608
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("sweep_failed", table=table, error=str(exc))
        await asyncio.sleep(SWEEP_SECONDS)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    log.info("starting", **describe(settings))
    stalls.tune_collector()
    # The service keeps no session state on its connections (no SET, LISTEN, advisory locks or
    # held cursors), so the pool skips asyncpg's per-release reset query: a round trip per
    # query that was a tenth of a receipt's cost. Open transactions are still rolled back.
    pool = await db.connect_pool(
        settings.database_url.value,
        max_size=settings.pool_size,
        reset_session=False,
        statement_timeout=settings.statement_timeout_seconds,
    )
    replica_pool = None
    try:
        await db.check_schema(pool)
        proofs = ProofBuilder(
            pool, tile_limit=settings.tile_cache_tiles, node_limit=settings.node_cache_nodes
        )
        if settings.replica_database_url is not None:
            replica_pool = await db.connect_pool(
                settings.replica_database_url.value,
                max_size=settings.pool_size,
                reset_session=False,
                statement_timeout=settings.statement_timeout_seconds,
            )
            await db.check_schema(replica_pool)
        # Background tasks live in a group; they run until the app stops serving, then are
        # cancelled before the pool closes (shutdown order: docs/query.md).
        async with asyncio.TaskGroup() as background:
            tasks = [
                background.create_task(_sweep(pool), name="query-sweeper"),
                background.create_task(stalls.watch_event_loop(), name="loop-watch"),
            ]
            try:
                heads = HeadCache(pool, ttl=settings.head_ttl_seconds, spawn=background.create_task)
                hashes = HashIndexProbe(pool, ttl=settings.hash_index_ttl_seconds)
                limits = Limits.of(settings.rate_limits)
                query = QueryState(settings, pool, TokenCache(pool), proofs, heads, hashes, limits)
                if replica_pool is not None:
                    query.replica, query.replica_lag = _replica(settings, replica_pool, background)
                    await query.replica_lag.measure()
                    tasks.append(
                        background.create_task(query.replica_lag.watch(), name="replica-lag")
                    )
                yield {"query": query}
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        if replica_pool is not None:
            await replica_pool.close()
        await pool.close()


def _replica(
    settings: Settings, pool: asyncpg.Pool, background: asyncio.TaskGroup
) -> tuple[Reads, ReplicaLag]:
    """The replica's read path, with caches of its own: a head or tile cached from one server
    never serves a request that reads the other."""
    reads = Reads(
        REPLICA,
        pool,
        HeadCache(pool, ttl=settings.head_ttl_seconds, spawn=background.create_task),
        ProofBuilder(
            pool, tile_limit=settings.tile_cache_tiles, node_limit=settings.node_cache_nodes
        ),
        HashIndexProbe(pool, ttl=settings.hash_index_ttl_seconds),
    )
    return reads, ReplicaLag(pool, settings.replica_max_lag)


def create_app(settings: Settings) -> Edge:
    configure_logging(settings.log_level)
    declare_build_info("query")
    return service_app(
        routes(),
        lambda: lifespan(settings),
        "query",
        max_body_bytes=settings.max_body_bytes,
        metrics_route=not settings.metrics_port,
    )
