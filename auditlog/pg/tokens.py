"""API tokens: bearer secrets stored hashed in PostgreSQL, with scopes and an optional tenant.

A token looks like ``alt_<id>_<secret>``; only ``sha256(token)`` is stored, so a database dump
gives nobody a usable token. The services resolve a presented token through :class:`TokenCache`,
which keeps positive and negative answers for a few seconds so that a flood of requests costs
one query per token, while a revocation still takes effect within ``ttl`` seconds.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import asyncpg

SCOPES = ("log", "search", "admin")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    scopes: frozenset[str]
    tenant_id: str | None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    name: str,
    scopes: set[str],
    tenant_id: str | None = None,
    token: str | None = None,
) -> tuple[str, TokenInfo]:
    """Store a new token and return (secret token, info). ``token`` lets dev set-ups reuse one."""
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {sorted(scopes)}")
    token_id = secrets.token_hex(6)
    secret = token or f"alt_{token_id}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_tokens (token_id, token_hash, name, scopes, tenant_id)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL",
        token_id,
        hash_token(secret),
        name,
        sorted(scopes),
        tenant_id,
    )
    info = await lookup_token(conn, secret)
    assert info is not None  # just written
    return secret, info


async def lookup_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> TokenInfo | None:
    row = await conn.fetchrow(
        "SELECT token_id, name, scopes, tenant_id FROM api_tokens"
        " WHERE token_hash = $1 AND revoked_at IS NULL",
        hash_token(token),
    )
    if row is None:
        return None
    return TokenInfo(row["token_id"], row["name"], frozenset(row["scopes"]), row["tenant_id"])


async def list_tokens(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT token_id, name, scopes, tenant_id, created_at, revoked_at"
            " FROM api_tokens ORDER BY created_at"
        )
    )


async def revoke_token(conn: asyncpg.Connection | asyncpg.Pool, token_id: str) -> bool:
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
        token_id,
    )
    return bool(status.endswith(" 1"))


class TokenCache:
    """Bounded, short-lived cache in front of :func:`lookup_token`."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_entries
        # Keyed by the token itself: the process holds every token it is sent anyway, and
        # hashing it (what the database stores) only on a miss keeps a hit to a dict lookup.
        self._entries: OrderedDict[str, tuple[float, TokenInfo | None]] = OrderedDict()

    async def resolve(self, token: str) -> TokenInfo | None:
        now = time.monotonic()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await lookup_token(self._pool, token)
        self._entries[token] = (now + self._ttl, info)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return info
