"""What every query handler shares: the service state, authorization and request bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request

from auditlog.pangea_http import bearer_token, error_item
from auditlog.tokens import TokenCache, TokenInfo
from query.proofs import ProofBuilder
from query.settings import Settings


@dataclass(slots=True)
class QueryState:
    settings: Settings
    pool: asyncpg.Pool
    tokens: TokenCache
    proofs: ProofBuilder


def state(request: Request) -> QueryState:
    value: QueryState = request.state.query
    return value


async def authorize(request: Request, scope: str = "search") -> TokenInfo | None:
    token = bearer_token(request)
    if token is None:
        return None
    info = await state(request).tokens.resolve(token)
    if info is None or not info.allows(scope):
        return None
    return info


async def json_body(request: Request) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    # Pangea's SDKs send JSON without a JSON content type, so the body is parsed regardless.
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        return None, [error_item("InvalidJSON", f"request body is not JSON: {exc}", "/")]
    if not isinstance(body, dict):
        return None, [error_item("InvalidObject", "request body must be a JSON object", "/")]
    return body, []


def public_base(request: Request) -> str:
    """Where clients reach this service: AUDITLOG_PUBLIC_URL, else the request's own base."""
    configured = state(request).settings.public_url
    return configured or str(request.base_url).rstrip("/")
