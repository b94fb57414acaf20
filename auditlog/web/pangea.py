"""Pangea's HTTP response envelope and error statuses, shared by ingest and query.

Every answer is JSON with ``request_id, request_time, response_time, status, summary, result``
(see shared/reference/pangea-audit-api.md §1.3), including 404, 405 and 503, because the official
SDK parses every body it gets.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.schema import error_item
from auditlog.pg.tokens import TokenCache, TokenInfo
from auditlog.runtime.clock import iso_ms
from auditlog.web.ratelimit import Limits

RATE_LIMITED = Counter("auditlog_rate_limited_total", "Requests refused by a rate limit", ["limit"])

STATUS_HTTP = {
    "Success": 200,
    "Accepted": 202,
    "ValidationError": 400,
    "BadOffset": 400,
    "TreeNotFound": 404,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "TooManyRequests": 429,
    "ServiceNotAvailable": 503,
    "InternalError": 500,
}


# Request ids come from the system's CSPRNG (an async request's id is what its owner polls),
# drawn a page at a time: one getrandom call per request was a visible share of a receipt's
# cost. A forked child must not hand out its parent's remaining bytes.
_random_bytes = bytearray()


def _forget_random_bytes() -> None:
    _random_bytes.clear()


os.register_at_fork(after_in_child=_forget_random_bytes)


def new_request_id() -> str:
    if len(_random_bytes) < 16:
        _random_bytes[:] = secrets.token_bytes(4096)
    chunk = _random_bytes[-16:]
    del _random_bytes[-16:]
    return "prq_" + chunk.hex()


def now() -> str:
    """The current time as Pangea writes it: ISO 8601, UTC, milliseconds, ``Z``."""
    return iso_ms()


class PangeaResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        request: Request,
        status: str,
        result: Any,
        summary: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        request_id = getattr(request.state, "request_id", None) or new_request_id()
        request_time = getattr(request.state, "request_time", None) or now()
        body = {
            "request_id": request_id,
            "request_time": request_time,
            "response_time": now(),
            "status": status,
            "summary": summary,
            "result": result,
        }
        super().__init__(
            orjson.dumps(body), status_code=STATUS_HTTP.get(status, 400), headers=headers
        )


def success(request: Request, result: Any, summary: str = "Success") -> PangeaResponse:
    return PangeaResponse(request, "Success", result, summary)


def validation_error(
    request: Request, errors: list[dict[str, str]], summary: str | None = None
) -> PangeaResponse:
    text = summary or (errors[0]["detail"] if errors else "Invalid request")
    return PangeaResponse(request, "ValidationError", {"errors": errors}, text)


def unauthorized(request: Request) -> PangeaResponse:
    return PangeaResponse(
        request, "Unauthorized", {"errors": []}, "Not authorized to access this resource"
    )


def not_found(request: Request, summary: str = "Resource not found") -> PangeaResponse:
    return PangeaResponse(request, "NotFound", None, summary)


def unavailable(request: Request, summary: str, retry_after: int = 1) -> PangeaResponse:
    return PangeaResponse(
        request,
        "ServiceNotAvailable",
        None,
        summary,
        headers={"Retry-After": str(retry_after)},
    )


def too_many_requests(request: Request, summary: str, retry_after: int) -> PangeaResponse:
    """Pangea's ``TooManyRequests`` (the SDK's RateLimitException), HTTP 429 with Retry-After."""
    return PangeaResponse(
        request,
        "TooManyRequests",
        None,
        summary,
        headers={"Retry-After": str(retry_after)},
    )


def throttle(
    request: Request, limits: Limits, token: TokenInfo, cost: float, *, charge: bool = True
) -> Response | None:
    """Charge ``cost`` to the token (and its tenant); the 429 to send when a limit refuses.
    ``charge=False`` only asks whether ``cost`` would be admitted."""
    admit = limits.admit if charge else limits.check
    refusal = admit(token.token_id, token.tenant_id, cost)
    if refusal is None:
        return None
    RATE_LIMITED.labels(refusal.scope).inc()
    return too_many_requests(
        request,
        f"Rate limit of this {refusal.scope} exceeded; retry in {refusal.retry_after} s",
        refusal.retry_after,
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def parse_json_object(raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """A request body as a JSON object, or the Pangea errors saying why it is not one.

    Pangea's SDKs send JSON without a JSON content type, so the body is parsed regardless.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [error_item("InvalidJSON", f"request body is not JSON: {exc}", "/")]
    if not isinstance(body, dict):
        return None, [error_item("InvalidObject", "request body must be a JSON object", "/")]
    return body, []


async def authorize(request: Request, tokens: TokenCache, scope: str) -> TokenInfo | None:
    """The bearer token's grant if it is valid and has ``scope`` (or admin); None otherwise."""
    token = bearer_token(request)
    if token is None:
        return None
    info = await tokens.resolve(token)
    if info is None or not info.allows(scope):
        return None
    return info


async def authorized_json(
    request: Request,
    tokens: TokenCache,
    scope: str,
    limits: Limits | None = None,
    cost: float = 1,
) -> tuple[TokenInfo, dict[str, Any]] | Response:
    """Authorize, charge ``cost`` to ``limits`` (none: no limit), then parse the body: the
    grant and the body, or the response to send. A refused request's body is never read."""
    info = await authorize(request, tokens, scope)
    if info is None:
        return unauthorized(request)
    if limits is not None:
        refused = throttle(request, limits, info, cost)
        if refused is not None:
            return refused
    body, errors = parse_json_object(await request.body())
    if body is None:
        return validation_error(request, errors)
    return info, body
