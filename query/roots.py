"""Roots and consistency: Pangea's ``/v1/root`` and the native checkpoint and consistency reads.

``/v1/root`` serves any tree size up to the log's latest checkpoint, computed from tiles, with
the Pangea consistency proof from the size before (what the SDK checks, §4.5). Which log: the
one log of the configured topic, or the one named by the optional ``tree_name`` (its origin or
log id) when the topic has several.

``GET /v1/proofs/consistency?log=&from=&to=`` answers in the body format of C2SP tlog-witness's
add-checkpoint request: the proof is never separated from the signed checkpoint it leads to::

    old <from>
    <base64 hash>            (zero or more, RFC 9162 order)
    <blank line>
    <signed checkpoint of size `to`, verbatim>

``to`` must be a checkpointed size (default: the latest).
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.hashing import PANGEA_SHA256
from auditlog.core.schema import error_item
from auditlog.web.pangea import PangeaResponse, not_found, success, validation_error
from auditlog.web.params import non_negative_int
from query.proofs import LogHead, load_head
from query.replica import Reads
from query.snapshot import checkpoint_url, rfc3339
from query.state import COST_PAGE, authorized_json, public_base, state

IMMUTABLE = "public, max-age=31536000, immutable"


def text(body: str, *, cache: str = "no-cache", status: int = 200) -> Response:
    return Response(
        body,
        status_code=status,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": cache},
    )


def _tree_not_found(request: Request, why: str) -> Response:
    return PangeaResponse(request, "TreeNotFound", None, why)


async def _root_log(request: Request, tree_name: str | None) -> tuple[LogHead, Reads] | Response:
    """The tree's head and the server it was read from (the rest of the request reads there)."""
    st = state(request)
    reads = st.reads()
    rows = await reads.pool.fetch(
        "SELECT log_id, origin FROM logs WHERE topic = $1 AND checkpoint IS NOT NULL"
        " AND size > 0 AND ($2::text IS NULL OR origin = $2 OR log_id = $2)",
        st.settings.topic,
        tree_name,
    )
    if not rows:
        return _tree_not_found(request, "no such tree, or nothing sealed in it yet")
    if len(rows) > 1:
        names = ", ".join(sorted(r["origin"] for r in rows))
        return validation_error(
            request,
            [error_item("MustProvideOne", f"several trees; name one in tree_name: {names}", "/")],
        )
    head = await load_head(reads.pool, rows[0]["log_id"])
    if head is None:
        return _tree_not_found(request, "nothing sealed yet")
    return head, reads


async def root(request: Request) -> Response:
    granted = await authorized_json(request, COST_PAGE)
    if isinstance(granted, Response):
        return granted
    _, body = granted
    size = body.get("tree_size")
    tree_name = body.get("tree_name")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        return validation_error(
            request, [error_item("InvalidInteger", "'/tree_size' must be >= 1", "/tree_size")]
        )
    if tree_name is not None and not isinstance(tree_name, str):
        return validation_error(
            request, [error_item("InvalidString", "'/tree_name' must be a string", "/tree_name")]
        )
    found = await _root_log(request, tree_name)
    if isinstance(found, Response):
        return found
    head, reads = found
    size = head.size if size is None else size
    if size > head.size:
        return validation_error(
            request,
            [error_item("IsTooBig", f"the tree has {head.size} leaves", "/tree_size")],
            f"tree_size {size} is beyond the tree's {head.size} leaves",
        )
    covering = await reads.pool.fetchrow(
        "SELECT size, note, created_at FROM checkpoints WHERE log_id = $1 AND size >= $2"
        " ORDER BY size LIMIT 1",
        head.log_id,
        size,
    )
    data: dict[str, Any] = {
        "tree_name": head.origin,
        "size": size,
        "root_hash": (await reads.proofs.root(head, size)).hex(),
        "url": checkpoint_url(public_base(request), head.log_id, size),
    }
    if covering is not None:
        data["published_at"] = rfc3339(covering["created_at"])
        if covering["size"] == size:
            data["checkpoint"] = covering["note"]
    if head.hash_scheme == PANGEA_SHA256 and size > 1:
        data["consistency_proof"] = await reads.proofs.pangea_consistency(head, size - 1, size)
    return success(request, {"data": data})


async def checkpoint_at(request: Request) -> Response:
    """The signed checkpoint a log published at one size: immutable once it exists."""
    size = non_negative_int(request.path_params["size"])
    if size is None:
        return not_found(request, "a size is a non-negative integer")
    note = (
        await state(request)
        .reads()
        .pool.fetchval(
            "SELECT note FROM checkpoints WHERE log_id = $1 AND size = $2",
            request.path_params["log"],
            size,
        )
    )
    if note is None:
        return not_found(request, "the log has no checkpoint of that size")
    return text(note, cache=IMMUTABLE)


def _size_param(request: Request, name: str) -> int | str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = non_negative_int(raw)
    return f"'{name}' must be a non-negative integer" if value is None else value


async def consistency(request: Request) -> Response:
    log_id = request.query_params.get("log")
    size1, size2 = _size_param(request, "from"), _size_param(request, "to")
    problems = [p for p in (size1, size2) if isinstance(p, str)]
    if log_id is None:
        problems.append("'log' is required")
    if size1 is None:
        problems.append("'from' is required")
    if problems:
        return validation_error(request, [error_item("InvalidQuery", p, "/") for p in problems])
    assert isinstance(size1, int)
    assert log_id is not None
    assert not isinstance(size2, str)
    reads = state(request).reads()
    head = await load_head(reads.pool, log_id)
    if head is None:
        return not_found(request, "no such log, or nothing sealed in it yet")
    note = head.checkpoint
    if isinstance(size2, int) and size2 != head.size:
        found = await reads.pool.fetchval(
            "SELECT note FROM checkpoints WHERE log_id = $1 AND size = $2", log_id, size2
        )
        if found is None:
            return not_found(request, f"log {log_id} has no checkpoint of size {size2}")
        note = found
    target = head.size if size2 is None else size2
    if size1 > target:
        return validation_error(
            request, [error_item("IsTooBig", f"'from' must be at most {target}", "/from")]
        )
    proof = await reads.proofs.consistency(head, size1, target)
    lines = [f"old {size1}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    body = "\n".join(lines) + "\n\n" + note
    return text(body, cache=IMMUTABLE if size2 is not None else "no-cache")
