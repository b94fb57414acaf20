"""API tokens: bearer secrets stored hashed in PostgreSQL, with scopes and an optional tenant.

A token looks like ``alt_<id>_<secret>``; only ``sha256(token)`` is stored, so a database dump
gives nobody a usable token. The services resolve a presented token through :class:`TokenCache`,
which keeps positive and negative answers for a few seconds so that a flood of requests costs
one query per token, while a revocation still takes effect within ``ttl`` seconds (and keeps
known tokens working through a short database outage; see the class).

A token may carry an expiry (``expires_at``, schema 10): the console's *viewer tokens*
(:func:`mint_viewer_token`) are read-only, bound to one tenant and short-lived. Past its expiry a
token is refused at once, by the database and by the cache alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import asyncpg

SCOPES = ("log", "search", "admin")
# What a viewer token may do: read (search, results, receipts, downloads), never log or mint.
VIEWER_SCOPES: Final = frozenset({"search"})
VIEWER_TTL_MAX: Final = timedelta(hours=24)

_V = TypeVar("_V")


class TokenRevoked(ValueError):  # noqa: N818 - reads as a verdict
    """The secret belongs to a revoked token."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    scopes: frozenset[str]
    tenant_id: str | None
    expires_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    name: str,
    scopes: set[str],
    tenant_id: str | None = None,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, TokenInfo]:
    """Store a new token and return (secret token, info).

    ``token`` lets development set-ups keep one secret across runs: an existing, valid token
    with that secret is returned as it is. A revoked or expired one raises :class:`TokenRevoked`:
    creating a token must never bring a revoked secret back to life.
    """
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {sorted(scopes)}")
    token_id = secrets.token_hex(6)
    secret = token or f"alt_{token_id}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_tokens (token_id, token_hash, name, scopes, tenant_id, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (token_hash) DO NOTHING",
        token_id,
        hash_token(secret),
        name,
        sorted(scopes),
        tenant_id,
        expires_at,
    )
    info = await lookup_token(conn, secret)
    if info is None:
        raise TokenRevoked("that token was revoked or has expired; it cannot be created again")
    return secret, info


async def mint_viewer_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant_id: str,
    ttl: timedelta,
    name: str = "viewer",
) -> tuple[str, TokenInfo]:
    """A viewer token: scope ``search`` only, bound to ``tenant_id``, valid for ``ttl``.

    What a product hands the console it embeds for one of its customers: it reads that tenant's
    events (search, results, receipts, downloads) and nothing else, and stops working by itself.
    """
    if not tenant_id:
        raise ValueError("a viewer token is bound to a tenant")
    if not timedelta(0) < ttl <= VIEWER_TTL_MAX:
        raise ValueError(f"a viewer token lives more than 0 s and at most {VIEWER_TTL_MAX}")
    expires = datetime.now(UTC) + ttl
    return await create_token(conn, name, set(VIEWER_SCOPES), tenant_id, expires_at=expires)


async def lookup_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> TokenInfo | None:
    row = await conn.fetchrow(
        "SELECT token_id, name, scopes, tenant_id, expires_at FROM api_tokens"
        " WHERE token_hash = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        hash_token(token),
    )
    if row is None:
        return None
    return TokenInfo(
        row["token_id"],
        row["name"],
        frozenset(row["scopes"]),
        row["tenant_id"],
        row["expires_at"],
    )


async def list_tokens(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT token_id, name, scopes, tenant_id, created_at, revoked_at, expires_at"
            " FROM api_tokens ORDER BY created_at"
        )
    )


async def revoke_token(conn: asyncpg.Connection | asyncpg.Pool, token_id: str) -> bool:
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
        token_id,
    )
    return bool(status.endswith(" 1"))


# Errors that mean "the database cannot answer now", as opposed to an answer.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,  # past the pool's statement timeout: a database in trouble
)

# Our tokens are ~60 characters; anything far longer is not one, and is not worth a query.
MAX_TOKEN_LENGTH = 512


class TokenCache:
    """A bounded, short-lived cache in front of :func:`lookup_token`.

    - A known token is trusted for ``ttl`` seconds, then looked up again, so a revocation takes
      effect within ``ttl``.
    - While PostgreSQL cannot answer, a token that was valid within the last ``grace`` seconds
      is still accepted (so ingest keeps taking events that need only Kafka through a restart
      of the database); a token never seen, or last seen longer ago, is refused by the error.
      At worst a revocation therefore takes ``ttl + grace`` seconds, and only during an outage.
    - A token with an expiry is refused from that instant on (``wall_clock``), cached or not.
    - Unknown tokens are remembered apart from known ones, so a flood of made-up tokens evicts
      no real one, and at most ``max_lookups`` lookups run at once, so such a flood holds at
      most that many database connections.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 5.0,
        grace: float = 60.0,
        max_entries: int = 10_000,
        max_lookups: int = 4,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._wall_clock = wall_clock
        self._ttl = ttl
        self._grace = grace
        self._max = max_entries
        self._lookups = asyncio.Semaphore(max_lookups)
        # Keyed by the token itself: the process holds every token it is sent anyway, and
        # hashing it (what the database stores) only on a miss keeps a hit to a dict lookup.
        # Values: when the answer was read (monotonic seconds), and the answer.
        self._known: OrderedDict[str, tuple[float, TokenInfo]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()

    async def resolve(self, token: str) -> TokenInfo | None:
        """The token's grant, None for no valid token; raises one of :data:`UNREACHABLE` when
        the database cannot answer and the token is not known within the grace window."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        now = self._clock()
        known = self._known.get(token)
        if known is not None and known[1].expired(self._wall_clock()):
            # Expiry is final: nothing to look up again, not even during an outage.
            del self._known[token]
            self._remember(self._unknown, token, now)
            return None
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        refused_at = self._unknown.get(token)
        if refused_at is not None and now - refused_at < self._ttl:
            return None
        try:
            async with self._lookups:
                info = await lookup_token(self._pool, token)
        except UNREACHABLE:
            if known is not None and now - known[0] < self._ttl + self._grace:
                return known[1]
            raise
        read_at = self._clock()
        if info is None:
            self._known.pop(token, None)
            self._remember(self._unknown, token, read_at)
        else:
            self._unknown.pop(token, None)
            self._remember(self._known, token, (read_at, info))
        return info

    def _remember(self, entries: OrderedDict[str, _V], token: str, value: _V) -> None:
        entries[token] = value
        entries.move_to_end(token)
        while len(entries) > self._max:
            entries.popitem(last=False)
