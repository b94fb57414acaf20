"""The query service: the native read API (checkpoints, tiles, receipts) over PostgreSQL.

It only reads. Every proof is built against the signed checkpoint it is returned with, from
tiles, which only ever grow by appending; so a proof and its checkpoint always agree even while
the sealer writes.

Composition root: :func:`lifespan` opens the pool and hands it to handlers as
``request.state.query``. Shutdown: stop accepting requests (uvicorn), close the pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auditlog import db
from auditlog.errors import TileError
from auditlog.hashing import get_hasher
from auditlog.observability import configure_logging
from auditlog.pangea_http import PangeaResponse, bearer_token, not_found, success, unauthorized
from auditlog.proof import inclusion_proof, inclusion_tiles
from auditlog.receipt import Receipt
from auditlog.settings import describe
from auditlog.tiles import TILE_WIDTH, TileID, decode_bundle, encode_bundle, parse_tile_path
from auditlog.tokens import TokenCache, TokenInfo
from auditlog.webapp import build_app
from query.settings import Settings

log = structlog.get_logger("query")

IMMUTABLE = "public, max-age=31536000, immutable"
HASH_SIZE = 32


@dataclass(slots=True)
class QueryState:
    settings: Settings
    pool: asyncpg.Pool
    tokens: TokenCache


def _state(request: Request) -> QueryState:
    state: QueryState = request.state.query
    return state


async def _authorize(request: Request, scope: str = "search") -> TokenInfo | None:
    token = bearer_token(request)
    if token is None:
        return None
    info = await _state(request).tokens.resolve(token)
    if info is None or not info.allows(scope):
        return None
    return info


def _text(body: str, *, cache: str = "no-cache", status: int = 200) -> Response:
    return Response(
        body,
        status_code=status,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": cache},
    )


async def list_logs(request: Request) -> Response:
    rows = await _state(request).pool.fetch(
        "SELECT log_id, origin, hash_scheme, size, topic, kafka_partition FROM logs ORDER BY log_id"
    )
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
                }
                for r in rows
            ]
        },
    )


async def checkpoint(request: Request) -> Response:
    note = await _state(request).pool.fetchval(
        "SELECT checkpoint FROM logs WHERE log_id = $1", request.path_params["log"]
    )
    if note is None:
        return not_found(request, "no such log, or nothing sealed in it yet")
    return _text(note)


async def tile(request: Request) -> Response:
    log_id = request.path_params["log"]
    try:
        level, index, width = parse_tile_path("tile/" + request.path_params["rest"])
    except TileError:
        return not_found(request, "not a tile path")
    pool = _state(request).pool
    if level is None:
        # Entry bundles carry the events themselves: the same rights as search.
        token = await _authorize(request)
        if token is None:
            return unauthorized(request)
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


_RECEIPT_SELECT = (
    "SELECT e.log_id, e.idx, e.tenant_id, l.size, l.checkpoint, l.hash_scheme"
    " FROM events e JOIN logs l USING (log_id)"
)


async def _receipt(request: Request, where: str, *args: Any) -> Response:
    token = await _authorize(request)
    if token is None:
        return unauthorized(request)
    pool = _state(request).pool
    # `where` is one of two fixed fragments written below; values travel as parameters.
    sql = f"{_RECEIPT_SELECT} WHERE {where}"
    row = await pool.fetchrow(sql, *args)
    # A tenant-bound token gets the same answer for another tenant's event as for a missing one.
    if row is None or (token.tenant_id is not None and row["tenant_id"] != token.tenant_id):
        return not_found(request, "no sealed event with that hash or index")
    index, size = row["idx"], row["size"]
    wanted = inclusion_tiles(index, size)
    rows = await pool.fetch(
        "SELECT level, idx, data FROM tiles WHERE log_id = $1"
        " AND (level, idx) IN (SELECT * FROM unnest($2::int[], $3::bigint[]))",
        row["log_id"],
        [t.level for t in wanted],
        [t.index for t in wanted],
    )
    tiles = {TileID(r["level"], r["idx"]): bytes(r["data"]) for r in rows}
    proof = inclusion_proof(get_hasher(row["hash_scheme"]), index, size, tiles)
    receipt = Receipt(index=index, proof=tuple(proof), checkpoint=row["checkpoint"])
    return _text(receipt.to_text(), cache="private, no-cache")


async def receipt_by_hash(request: Request) -> Response:
    try:
        digest = bytes.fromhex(request.path_params["hash"])
    except ValueError:
        digest = b""
    if len(digest) != HASH_SIZE:
        return not_found(request, "an event hash is 64 hex characters")
    return await _receipt(request, "e.event_hash = $1 ORDER BY e.log_id LIMIT 1", digest)


async def receipt_by_index(request: Request) -> Response:
    try:
        index = int(request.path_params["index"])
    except ValueError:
        return not_found(request, "an index is a non-negative integer")
    return await _receipt(
        request, "e.log_id = $1 AND e.idx = $2", request.path_params["log"], index
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/logs", list_logs, methods=["GET"]),
        Route("/v1/logs/{log}/checkpoint", checkpoint, methods=["GET"]),
        Route("/v1/logs/{log}/tile/{rest:path}", tile, methods=["GET"]),
        Route("/v1/logs/{log}/receipts/{index}", receipt_by_index, methods=["GET"]),
        Route("/v1/receipts/{hash}", receipt_by_hash, methods=["GET"]),
    ]


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    log.info("starting", **describe(settings))
    pool = await db.connect_pool(settings.database_url.value, max_size=8)
    try:
        await db.check_schema(pool)
        yield {"query": QueryState(settings, pool, TokenCache(pool))}
    finally:
        await pool.close()


def create_app(settings: Settings) -> Starlette:
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def app_lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with lifespan(settings) as state:
            yield state

    return build_app(routes(), app_lifespan, "query")
