"""``auditlog forward``: run the forwarder, or look at and steer its destinations.

``auditlog forward`` alone runs the service (``AUDITLOG_FORWARD_DESTINATIONS_FILE``); ``status``,
``pause``, ``resume``, ``replay`` and ``forget`` act on the state it keeps in PostgreSQL, and a
running forwarder follows within seconds (docs/forwarding.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, UsageError, database_url


def cmd_forward(args: argparse.Namespace) -> int:
    if args.forward_cmd is None:
        return _run_service()
    return asyncio.run(_steer(args))


def _run_service() -> int:
    from auditlog.core.errors import AuditLogError
    from auditlog.runtime.settings import SettingsError
    from forward.main import main

    try:
        main()
    except (OSError, SettingsError, AuditLogError) as exc:
        print(f"auditlog forward: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _steer(args: argparse.Namespace) -> int:
    from auditlog.pg import db
    from forward import cursors

    pool = await db.connect_pool(database_url(args), max_size=1)
    try:
        await db.check_schema(pool)
        if args.forward_cmd == "status":
            _print_status(await cursors.status(pool))
            return EXIT_OK
        if args.forward_cmd in ("pause", "resume"):
            done = await cursors.set_paused(pool, args.name, args.forward_cmd == "pause")
        elif args.forward_cmd == "forget":
            done = await cursors.forget(pool, args.name)
        else:
            moved = await cursors.replay(
                pool, args.name, index=args.from_index, since=_since(args), log_id=args.log
            )
            for log_id, index in moved:
                print(f"{args.name}\t{log_id}\tfrom {index}")
            done = bool(moved)
        if not done:
            print(f"auditlog forward: no destination {args.name!r} (or no cursor)", file=sys.stderr)
            return EXIT_FAILED
        if args.forward_cmd != "replay":
            print(f"{args.name}: {args.forward_cmd}d" if args.forward_cmd != "forget" else
                  f"{args.name}: forgotten")  # fmt: skip
        return EXIT_OK
    finally:
        await pool.close()


def _since(args: argparse.Namespace) -> Any:
    if args.from_time is None:
        if args.from_index is None:
            raise UsageError("replay needs --from-index N or --from-time T")
        return None
    if args.from_index is not None:
        raise UsageError("give --from-index or --from-time, not both")
    from datetime import UTC, datetime

    from auditlog.core.search_query import SearchQueryError, parse_time_bound

    try:
        return parse_time_bound(args.from_time, datetime.now(UTC))
    except SearchQueryError as exc:
        raise UsageError(f"--from-time: {exc}") from exc


def _print_status(rows: list[Any]) -> None:
    print("destination\tkind\tstate\tlog\tcursor\tsize\tlag\tdelivered_at\tdead_letters")
    for r in rows:
        state = "paused" if r["paused"] else "running"
        delivered = r["delivered_at"].isoformat() if r["delivered_at"] else "-"
        print(
            f"{r['name']}\t{r['kind']}\t{state}\t{r['log_id'] or '-'}\t"
            f"{_dash(r['next_idx'])}\t{_dash(r['size'])}\t{_dash(r['lag'])}\t{delivered}\t"
            f"{_dash(r['dead_letters'] if r['log_id'] else None)}"
        )


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "forward",
        help="forward sealed events to syslog, webhooks, files, Splunk HEC, OTLP",
        description="Without a subcommand: run the forwarder (docs/forwarding.md).",
    )
    p.set_defaults(func=cmd_forward, forward_cmd=None)
    steer = p.add_subparsers(dest="forward_cmd")
    status = steer.add_parser("status", help="each destination's cursor, lag, dead letters")
    status.add_argument("--database-url")
    for name, text in (
        ("pause", "stop delivering to a destination (its events wait in PostgreSQL)"),
        ("resume", "deliver again to a paused destination"),
        ("forget", "remove a destination's cursors and dead letters"),
    ):
        q = steer.add_parser(name, help=text)
        q.add_argument("name")
        q.add_argument("--database-url")
    replay = steer.add_parser("replay", help="deliver again from an index or a time")
    replay.add_argument("name")
    replay.add_argument("--from-index", type=int, metavar="N")
    replay.add_argument("--from-time", metavar="T", help="RFC 3339 time, or a duration ago (7d)")
    replay.add_argument("--log", help="one log only (e.g. audit.events-0)")
    replay.add_argument("--database-url")
