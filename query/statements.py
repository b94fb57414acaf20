"""A log's signed statements about its own entries (docs/retention.md): the pruned bound, public
like the checkpoint (it holds no content), and the erasure records, for search-scope tokens
(they name event hashes and say why each was erased)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from auditlog.web.pangea import not_found
from query.roots import text
from query.state import COST_READ, admitted, state


async def pruned(request: Request) -> Response:
    note = await state(request).pool.fetchval(
        "SELECT note FROM pruned_bounds WHERE log_id = $1 ORDER BY below DESC, size DESC LIMIT 1",
        request.path_params["log"],
    )
    if note is None:
        return not_found(request, "nothing of this log was pruned")
    return text(note, cache="no-cache")


async def erasures(request: Request) -> Response:
    token = await admitted(request, COST_READ)
    if isinstance(token, Response):
        return token
    if token.tenant_id is not None:
        # A tenant sees only its own erasures; the audit that needs all of them is an operator's.
        rows = await state(request).pool.fetch(
            "SELECT note FROM erasures WHERE log_id = $1 AND tenant_id = $2 ORDER BY idx",
            request.path_params["log"],
            token.tenant_id,
        )
    else:
        rows = await state(request).pool.fetch(
            "SELECT note FROM erasures WHERE log_id = $1 ORDER BY idx", request.path_params["log"]
        )
    if not rows and not await state(request).pool.fetchval(
        "SELECT true FROM logs WHERE log_id = $1", request.path_params["log"]
    ):
        return not_found(request, "no such log")
    body = orjson.dumps({"erasures": [r["note"] for r in rows]})
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})
