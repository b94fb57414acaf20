"""What every query handler shares: the service state, authorization and request bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from auditlog.pg.tokens import TokenCache, TokenInfo
from auditlog.web import pangea as pangea_http
from auditlog.web.ratelimit import Limits
from query.hashes import HashIndexProbe
from query.heads import HeadCache
from query.proofs import ProofBuilder
from query.replica import PRIMARY, Reads, ReplicaLag
from query.settings import Settings

# What a request costs against the token's (and tenant's) rate limit, in units: about what it
# costs the service. Searches run a query over the log and store a result set; exports and file
# downloads stream whole result sets; pages read up to 10,000 stored events.
COST_READ: Final = 1  # a receipt, an entry bundle, a request poll
COST_PAGE: Final = 5  # /v1/results, /v1/root, /v1/download_results
COST_SEARCH: Final = 20  # /v1/search, /v1/export, a file download


@dataclass(slots=True)
class QueryState:
    settings: Settings
    pool: asyncpg.Pool
    tokens: TokenCache
    proofs: ProofBuilder
    heads: HeadCache
    hash_index: HashIndexProbe
    limits: Limits = field(default_factory=Limits.unlimited)
    # A read replica and its lag (query/replica.py); None: everything reads the primary.
    replica: Reads | None = None
    replica_lag: ReplicaLag | None = None

    def reads(self) -> Reads:
        """The server this request reads receipts, proofs, tiles and checkpoints from: the
        replica while it is within the lag bound, else the primary. Pick once per request."""
        if self.replica is not None and self.replica_lag is not None and self.replica_lag.fresh:
            return self.replica
        return Reads(PRIMARY, self.pool, self.heads, self.proofs, self.hash_index)


def state(request: Request) -> QueryState:
    value: QueryState = request.state.query
    return value


async def authorize(request: Request, scope: str = "search") -> TokenInfo | None:
    return await pangea_http.authorize(request, state(request).tokens, scope)


async def admitted(request: Request, cost: int, scope: str = "search") -> TokenInfo | Response:
    """The grant of a token with ``scope``, charged ``cost``; or 401, or 429 past its limit."""
    token = await authorize(request, scope)
    if token is None:
        return pangea_http.unauthorized(request)
    return pangea_http.throttle(request, state(request).limits, token, cost) or token


async def authorized_json(
    request: Request, cost: int
) -> tuple[TokenInfo, dict[str, Any]] | Response:
    """A search-scope grant charged ``cost`` and the JSON body, or the response to send."""
    st = state(request)
    return await pangea_http.authorized_json(request, st.tokens, "search", st.limits, cost)


def public_base(request: Request) -> str:
    """Where clients reach this service: AUDITLOG_PUBLIC_URL, else the request's own base."""
    configured = state(request).settings.public_url
    return configured or str(request.base_url).rstrip("/")
