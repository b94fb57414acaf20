"""What every query handler shares: the service state, authorization and request bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from auditlog.pg.tokens import TokenCache, TokenInfo
from auditlog.web import pangea as pangea_http
from query.hashes import HashIndexProbe
from query.heads import HeadCache
from query.proofs import ProofBuilder
from query.settings import Settings


@dataclass(slots=True)
class QueryState:
    settings: Settings
    pool: asyncpg.Pool
    tokens: TokenCache
    proofs: ProofBuilder
    heads: HeadCache
    hash_index: HashIndexProbe


def state(request: Request) -> QueryState:
    value: QueryState = request.state.query
    return value


async def authorize(request: Request, scope: str = "search") -> TokenInfo | None:
    return await pangea_http.authorize(request, state(request).tokens, scope)


async def authorized_json(request: Request) -> tuple[TokenInfo, dict[str, Any]] | Response:
    """A search-scope grant and the JSON body, or the response to send instead."""
    return await pangea_http.authorized_json(request, state(request).tokens, "search")


def public_base(request: Request) -> str:
    """Where clients reach this service: AUDITLOG_PUBLIC_URL, else the request's own base."""
    configured = state(request).settings.public_url
    return configured or str(request.base_url).rstrip("/")
