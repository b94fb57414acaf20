"""The commands that change the database: migrate, token, search-index and hash-index."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError, database_url


async def _migrate(url: str) -> list[str]:
    import asyncpg

    from auditlog.pg import db

    conn = await asyncpg.connect(url)
    try:
        return await db.migrate(conn)
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(database_url(args)))
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return EXIT_OK


async def _token(args: argparse.Namespace) -> int:
    import asyncpg

    from auditlog.pg import tokens

    conn = await asyncpg.connect(database_url(args))
    try:
        if args.token_cmd == "create":  # noqa: S105 - a subcommand name, not a secret
            scopes = {s.strip() for s in args.scope.split(",") if s.strip()}
            try:
                secret, info = await tokens.create_token(conn, args.name, scopes, args.tenant)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            print(
                f"token id {info.token_id} scopes {','.join(sorted(info.scopes))}"
                f"{' tenant ' + info.tenant_id if info.tenant_id else ''}"
            )
            print(secret)
        elif args.token_cmd == "list":  # noqa: S105
            for r in await tokens.list_tokens(conn):
                state = "revoked" if r["revoked_at"] else "active"
                print(
                    f"{r['token_id']}\t{r['name']}\t{','.join(r['scopes'])}\t"
                    f"{r['tenant_id'] or '-'}\t{state}\t{r['created_at']:%Y-%m-%d %H:%M}"
                )
        else:
            if not await tokens.revoke_token(conn, args.token_id):
                print(f"no active token {args.token_id}", file=sys.stderr)
                return EXIT_FAILED
            print(f"revoked {args.token_id}")
    finally:
        await conn.close()
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    return asyncio.run(_token(args))


async def _schema_current(conn: Any, label: str) -> bool:
    """Whether the database has this build's schema; else says so on stderr."""
    from auditlog.pg import db

    try:
        await db.check_schema(conn)
    except db.SchemaMismatch as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return False
    return True


async def _switch_index(
    args: argparse.Namespace,
    label: str,
    state: Callable[[Any], Awaitable[str]],
    create: Callable[[Any], Awaitable[None]],
    drop: Callable[[Any], Awaitable[None]],
    error: type[Exception],
) -> int:
    """``status``, ``create`` or ``drop`` one optional index (auditlog.pg.partitioned_index)."""
    import asyncpg

    conn = await asyncpg.connect(database_url(args))
    try:
        if not await _schema_current(conn, label):
            return EXIT_FAILED
        if args.action == "create":
            await create(conn)
        elif args.action == "drop":
            await drop(conn)
        print(f"{label}: {await state(conn)}")
    except error as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await conn.close()
    return EXIT_OK


def cmd_search_index(args: argparse.Namespace) -> int:
    from auditlog.pg import search_index as ix

    if args.action == "backfill":
        return asyncio.run(_backfill_blocks(args))
    if args.action == "compact":
        return asyncio.run(_compact_generations(args))
    code = asyncio.run(
        _switch_index(args, "trigram index", ix.state, ix.create, ix.drop, ix.SearchIndexError)
    )
    if code == EXIT_OK and args.action == "status":
        code = asyncio.run(_backfill_blocks(args, report_only=True))
    return code


# Searches planning every partition the lock table should hold together: two query processes'
# pools (8 connections each), twice over for other pods and everything else.
_SEARCHES_AT_ONCE = 32
# Closed generations past which status suggests compacting them (each costs a search ~0.07 ms
# and three locks).
_CLOSED_TO_COMPACT = 16


async def _compact_generations(args: argparse.Namespace) -> int:
    """Rewrite runs of closed generations of the search blocks as one each
    (auditlog.pg.search_compaction)."""
    import asyncpg

    from auditlog.pg import search_compaction

    entries = args.entries or search_compaction.DEFAULT_ENTRIES
    conn = await asyncpg.connect(database_url(args))
    try:
        if not await _schema_current(conn, "search blocks"):
            return EXIT_FAILED
        try:
            done = await search_compaction.compact(
                conn, entries, attempts=args.attempts, report=print
            )
        except search_compaction.CompactionError as exc:
            print(f"search blocks: {exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        await conn.close()
    for run in done:
        print(
            f"search blocks: generations {run.numbers[0]}-{run.numbers[-1]} are now generation"
            f" {run.numbers[0]}: {run.blocks:,} blocks of {run.entries:,} entries in"
            f" {run.seconds:.1f} s (the swap's lock at try {run.swap_attempts})"
        )
    if not done:
        print(
            "search blocks: nothing to compact (no two adjacent closed generations hold"
            f" {entries:,} entries or fewer together)"
        )
    return EXIT_OK


async def _backfill_blocks(args: argparse.Namespace, *, report_only: bool = False) -> int:
    """The search blocks' coverage, or (``backfill``) write the blocks entries lack."""
    import asyncpg

    from auditlog.pg import search_blocks, search_generations
    from auditlog.pg.locks import lock_room

    conn = await asyncpg.connect(database_url(args))
    try:
        if not await _schema_current(conn, "search blocks"):
            return EXIT_FAILED
        if not report_only:
            covered = await search_blocks.backfill(conn)
            print(f"search blocks: written for {covered} entries")
        missing = await search_blocks.uncovered(conn)
        generations = await search_generations.generations(conn)
        room = await lock_room(conn)
    finally:
        await conn.close()
    newest = generations[-1]
    print(
        f"search blocks: {len(generations)} generation{'s' * (len(generations) != 1)};"
        f" the newest, {newest.number}, opened"
        f" {newest.opened_at:%Y-%m-%d %H:%M:%S %Z} at {newest.entries_at_open:,} entries"
    )
    print(
        f"locks: a search planning every partition and generation holds {room.per_search:,}"
        " at once;"
        f" PostgreSQL's lock table has {room.slots:,} slots, room for {room.searches:,} such"
        " searches at once"
    )
    closed = len(generations) - 2
    if closed >= _CLOSED_TO_COMPACT:
        print(
            f"search blocks: {closed} closed generations, each probed by every search without a"
            " time range; `auditlog search-index compact` rewrites them as fewer"
            " (docs/query.md#compacting-closed-generations)"
        )
    if room.searches < _SEARCHES_AT_ONCE:
        print(
            f"locks: fewer than {_SEARCHES_AT_ONCE}: raise max_locks_per_transaction, or compact"
            " the closed generations: `auditlog search-index compact` (docs/query.md#generations)"
        )
    if missing:
        print(
            f"search blocks: {sum(missing.values())} entries of {len(missing)} logs sealed before"
            " them are read whole by every search; `auditlog search-index backfill` adds them"
        )
    else:
        print("search blocks: every entry")
    return EXIT_OK


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def cmd_hash_index(args: argparse.Namespace) -> int:
    from auditlog.pg import hash_index as ix

    return asyncio.run(
        _switch_index(args, "hash index", ix.state, ix.create, ix.drop, ix.HashIndexError)
    )


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url")
    mig.set_defaults(func=cmd_migrate)

    tok = sub.add_parser("token", help="manage API tokens")
    tok.add_argument("--database-url")
    toks = tok.add_subparsers(dest="token_cmd", required=True)
    create = toks.add_parser("create")
    create.add_argument("--scope", required=True, help="comma list of log,search,admin")
    create.add_argument("--tenant", help="bind the token to one tenant_id")
    create.add_argument("--name", default="token")
    toks.add_parser("list")
    revoke = toks.add_parser("revoke")
    revoke.add_argument("token_id")
    tok.set_defaults(func=cmd_token)

    six = sub.add_parser(
        "search-index",
        help="search indexes: status, the optional trigram index (create, drop), backfill blocks",
        description="The sealer writes search blocks, which find values with whole tokens"
        " (ids, words between separators). create/drop: the optional trigram index, which"
        " also finds any other substring fast but makes sealing several times dearer."
        " backfill: write the blocks of entries sealed before migration 0007."
        " compact: rewrite adjacent closed generations of the blocks as one (docs/query.md)",
    )
    six.add_argument("action", choices=("status", "create", "drop", "backfill", "compact"))
    six.add_argument("--database-url")
    six.add_argument(
        "--entries",
        type=_positive,
        help="compact: the most entries one compacted generation holds (default 64,000,000)",
    )
    six.add_argument(
        "--attempts",
        type=_positive,
        default=20,
        help="compact: tries at the swap's brief lock on search_blocks (0.5 s each)",
    )
    six.set_defaults(func=cmd_search_index)

    hix = sub.add_parser(
        "hash-index",
        help="the event-hash index: status, create (while the sealers run), drop",
        description="hash: receipts by hash alone, costlier sealing; none: cheaper sealing,"
        " a receipt by hash needs ?received_at= (docs/query.md)",
    )
    hix.add_argument("action", choices=("status", "create", "drop"))
    hix.add_argument("--database-url")
    hix.set_defaults(func=cmd_hash_index)
