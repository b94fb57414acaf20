"""PostgreSQL access shared by the services: pools, migrations and the schema-version guard.

Migrations are plain SQL files in ``auditlog/pg/migrations`` named ``NNNN_name.sql`` and applied in
order by ``auditlog migrate``, each in its own transaction together with its ``schema_version``
row. Services call :func:`check_schema` at start and refuse to run against another version.

Errors: :class:`SchemaMismatch` (a service met a database of another schema version).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from auditlog.core.errors import AuditLogError
from auditlog.core.tiles import TileID

# Serialises concurrent `auditlog migrate` runs (tests and `auditlog up` may race).
_MIGRATION_LOCK_ID = 0x6175646974


class SchemaMismatch(AuditLogError):  # noqa: N818 - reads as a verdict, like the core tree
    """The database's schema version is not the one this code was written for."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bundled migration, in order."""
    out: list[tuple[int, str, str]] = []
    for entry in resources.files("auditlog.pg.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        version = int(name.split("_", 1)[0])
        out.append((version, name, entry.read_text(encoding="utf-8")))
    out.sort()
    return out


SCHEMA_VERSION = migrations()[-1][0]


async def _keep_session(_: asyncpg.Connection) -> None:
    """A pool reset that leaves session state alone (asyncpg still rolls back transactions)."""


async def connect_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    reset_session: bool = True,
    init: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]] | None = None,
    statement_timeout: float | None = None,
) -> asyncpg.Pool:
    """A pool; ``reset_session=False`` only for callers that never change session state, and
    ``init`` run on each new connection (type codecs). ``statement_timeout`` (seconds) bounds
    every statement of the pool's sessions: PostgreSQL cancels a longer one, and the caller
    gets ``asyncpg.QueryCanceledError``.

    asyncpg resets every connection it takes back (``RESET ALL``, ``UNLISTEN *``, advisory
    locks, ``CLOSE ALL``) with one more round trip per acquire; a service that never sets any
    of those pays it for nothing.
    """
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        reset=None if reset_session else _keep_session,
        init=init,
        server_settings=(
            {"statement_timeout": str(round(statement_timeout * 1000))}
            if statement_timeout
            else None
        ),
    )
    if pool is None:  # pragma: no cover - create_pool returns None only when awaited lazily
        raise AuditLogError("could not create a PostgreSQL pool")
    return pool


def database_url(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def create_database(admin_url: str, name: str, *, up_to: int | None = None) -> str:
    """Create database ``name`` with the migrated schema, or that of migration ``up_to``
    (scratch databases of tests and benchmarks, upgrades); returns its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = database_url(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, up_to=up_to)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, name: str, attempts: int = 20) -> None:
    """Drop database ``name`` and end its sessions (scratch databases of tests and benchmarks).

    ``WITH (FORCE)`` cannot end an autovacuum worker, which runs as the superuser, when the
    caller is not one, and a worker vacuuming a table of millions of rows can run for minutes.
    But autovacuum gives way to any lock request it blocks (after ``deadlock_timeout``): so the
    schema's tables are dropped first, which requests all of their locks and leaves autovacuum
    nothing to come back for, and the drop is tried again.
    """
    conn = await asyncpg.connect(admin_url)
    try:
        for attempt in range(attempts):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                if attempt == attempts - 1:
                    raise
                if attempt == 0:
                    await _drop_tables(admin_url, name)
                await asyncio.sleep(0.5)
            else:
                return
    finally:
        await conn.close()


async def _drop_tables(admin_url: str, name: str) -> None:
    """Drop everything in database ``name``'s public schema (which its owner owns)."""
    try:
        conn = await asyncpg.connect(admin_url, database=name)
    except (asyncpg.InvalidCatalogNameError, asyncpg.CannotConnectNowError):
        return  # gone already, or going: the drop itself is tried again
    try:
        await conn.execute("SET statement_timeout = '60s'")
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
    except (asyncpg.InsufficientPrivilegeError, asyncpg.QueryCanceledError):
        pass  # not the schema's owner (PostgreSQL < 15), or something else held on: retry only
    finally:
        await conn.close()


async def migrate(conn: asyncpg.Connection, *, up_to: int | None = None) -> list[str]:
    """Apply the missing migrations (those up to ``up_to`` only, when given: a database at an
    older schema, for upgrade tests and benchmarks); returns the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for version, name, sql in migrations():
            if version in done or (up_to is not None and version > up_to):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied


async def current_version(conn: asyncpg.Connection | asyncpg.Pool) -> int | None:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return None
    version: Any = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version) if version is not None else None


async def check_schema(pool: asyncpg.Pool | asyncpg.Connection) -> None:
    """Refuse to serve against a database this code does not know."""
    version = await current_version(pool)
    if version != SCHEMA_VERSION:
        raise SchemaMismatch(
            f"database schema version is {version}, this build needs {SCHEMA_VERSION}: "
            "run `auditlog migrate`"
        )


async def fetch_tiles(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool,
    log_id: str,
    wanted: Sequence[TileID],
) -> dict[TileID, bytes]:
    """The stored contents of ``wanted`` tiles of one log (those that exist), in one query."""
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT level, idx, data FROM tiles WHERE log_id = $1"
        " AND (level, idx) IN (SELECT * FROM unnest($2::int[], $3::bigint[]))",
        log_id,
        [t.level for t in wanted],
        [t.index for t in wanted],
    )
    return {TileID(r["level"], r["idx"]): bytes(r["data"]) for r in rows}
