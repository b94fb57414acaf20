"""Asynchronous Pangea requests (``/v2/log_async``, ``/v1/export``) and their polling.

A request is a row in ``async_requests``: created ``pending`` when the 202 goes out, then
``done`` with its final result or ``failed`` with a reason. ``GET /request/{id}`` answers from
the row, so any replica can answer the poll. Only the token that made a request (or an admin
token) may poll it; others get ``NotFound``, exactly as for an unknown id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response

from auditlog.pg.tokens import TokenInfo
from auditlog.web.pangea import PangeaResponse, not_found, success, unavailable

TTL = timedelta(days=2)


async def create(pool: asyncpg.Pool, request_id: str, token_id: str, kind: str) -> None:
    await pool.execute(
        "INSERT INTO async_requests (request_id, token_id, kind, status, expires_at)"
        " VALUES ($1, $2, $3, 'pending', now() + $4::interval)",
        request_id,
        token_id,
        kind,
        TTL,
    )


async def finish(
    pool: asyncpg.Pool, request_id: str, result: dict[str, Any] | None, failure: str | None
) -> None:
    await pool.execute(
        "UPDATE async_requests SET status = $2, result = $3, summary = $4 WHERE request_id = $1",
        request_id,
        "failed" if failure is not None else "done",
        orjson.dumps(result) if result is not None else None,
        failure,
    )


def accepted(request: Request, request_id: str) -> Response:
    return PangeaResponse(
        request,
        "Accepted",
        {
            "ttl_mins": int(TTL.total_seconds() // 60),
            "retry_counter": 0,
            "location": f"/request/{request_id}",
        },
        "Your request is in progress",
    )


def _may_read(token: TokenInfo, owner_id: str, owner_tenant: str | None) -> bool:
    """The token that made a request reads it; so does an admin, within its own tenant when
    it is bound to one (a tenant's admin is no admin of the other tenants)."""
    if owner_id == token.token_id:
        return True
    return token.allows("admin") and token.tenant_id in (None, owner_tenant)


async def answer(
    request: Request, pool: asyncpg.Pool, token: TokenInfo, request_id: str
) -> Response:
    row = await pool.fetchrow(
        "SELECT r.token_id, r.status, r.result, r.summary, t.tenant_id AS owner_tenant"
        " FROM async_requests r LEFT JOIN api_tokens t ON t.token_id = r.token_id"
        " WHERE r.request_id = $1 AND r.expires_at > now()",
        request_id,
    )
    if row is None or not _may_read(token, row["token_id"], row["owner_tenant"]):
        return not_found(request, f"request {request_id} not found")
    if row["status"] == "pending":
        return accepted(request, request_id)
    if row["status"] == "failed":
        return unavailable(request, row["summary"] or "request failed; submit it again")
    return success(request, orjson.loads(row["result"]))
