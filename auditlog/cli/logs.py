"""``auditlog logs``: each log's origin and verifier key, for operators to publish.

Each log signs its checkpoints under a key name equal to its origin (the key-name rule,
:mod:`auditlog.core.log_keys`), so each has its own vkey. This command prints them: one vkey a
line (a file verifiers take with ``--key FILE``), or in the witness network's log-list format
(:mod:`auditlog.core.log_list`) to ask public witnesses to cosign the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError, database_url, vkeys

# One add-checkpoint request a second: a sealer asks its witnesses once per sealed batch, and
# batches of a busy log close every AUDITLOG_BATCH_MAX_AGE (50 ms by default), so an operator
# asking public witnesses should raise AUDITLOG_BATCH_MAX_AGE or state a larger figure.
DEFAULT_QPD = 86_400


async def _origins_from_database(url: str) -> list[tuple[str, str]]:
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"cannot connect to the database: {exc}") from exc
    try:
        rows = await conn.fetch('SELECT log_id, origin FROM logs ORDER BY log_id COLLATE "C"')
    except asyncpg.PostgresError as exc:
        raise UsageError(f"database error: {exc}") from exc
    finally:
        await conn.close()
    return [(row["log_id"], row["origin"]) for row in rows]


def _listing(url: str) -> list[dict[str, Any]]:
    from auditlog.verify.read_api import ReadApi, ReadApiError

    try:
        with ReadApi(url) as api:
            return api.logs()
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def _log_vkeys(args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(log id, origin, vkey) of every log, and the disagreements between key and listing."""
    from auditlog.core.log_keys import log_vkey
    from auditlog.runtime.settings import Env

    given = args.key or ([vkey] if (vkey := Env().optional("VKEY")) else [])
    keys = vkeys(given)
    if len(keys) > 1:
        raise UsageError("give one deployment verifier key with --key")
    key = keys[0] if keys else None
    problems: list[str] = []
    out: list[tuple[str, str, str]] = []
    if args.url:
        for entry in _listing(args.url):
            log, origin, listed = str(entry["log"]), str(entry["origin"]), entry.get("vkey")
            vkey = log_vkey(key, origin) if key is not None else listed
            if vkey is None:
                raise UsageError(
                    f"{args.url} lists no vkey for {log} (the query service has no AUDITLOG_VKEY):"
                    " give the deployment's verifier key with --key"
                )
            if listed is not None and listed != vkey:
                problems.append(f"{log}: {args.url} lists {listed}, --key gives {vkey}")
            out.append((log, origin, str(vkey)))
        return out, problems
    if key is None:
        raise UsageError("give the deployment's verifier key with --key (or read --url)")
    rows = asyncio.run(_origins_from_database(database_url(args)))
    return [(log, origin, log_vkey(key, origin)) for log, origin in rows], problems


def cmd_logs(args: argparse.Namespace) -> int:
    from auditlog.core.errors import NoteError
    from auditlog.core.log_list import LogListEntry, format_log_list

    logs, problems = _log_vkeys(args)
    if args.format == "log-list":
        if not args.contact:
            raise UsageError("--format log-list needs --contact (how witnesses reach you)")
        try:
            entries = [
                LogListEntry(vkey, origin, args.qpd, args.contact) for _, origin, vkey in logs
            ]
        except NoteError as exc:
            raise UsageError(str(exc)) from exc
        sys.stdout.write(format_log_list(entries))
    elif args.format == "vkeys":
        sys.stdout.write("".join(f"{vkey}\n" for _, _, vkey in logs))
    else:
        for log, origin, vkey in logs:
            print(f"{log}\t{origin}\t{vkey}")
    for problem in problems:
        print(f"MISMATCH: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    logs = sub.add_parser(
        "logs", help="each log's origin and verifier key (vkeys, or a witness log list)"
    )
    src = logs.add_mutually_exclusive_group()
    src.add_argument("--database-url", help="read the logs from PostgreSQL (the default)")
    src.add_argument("--url", help="read the logs from GET /v1/logs of this query service")
    logs.add_argument(
        "--key",
        action="append",
        help="the deployment's verifier key (the signing key's .vkey; default AUDITLOG_VKEY):"
        " each log's vkey is this key under the log's origin; with --url, checked against the"
        " listed vkeys",
    )
    logs.add_argument(
        "--format",
        choices=("table", "vkeys", "log-list"),
        default="table",
        help="table: log, origin, vkey; vkeys: one vkey a line (a --key file for verifiers);"
        " log-list: the witness network's logs/v0 format",
    )
    logs.add_argument("--contact", help="log-list: how witness operators reach you")
    logs.add_argument(
        "--qpd",
        type=int,
        default=DEFAULT_QPD,
        help=f"log-list: add-checkpoint requests a day each log may send (default {DEFAULT_QPD})",
    )
    logs.set_defaults(func=cmd_logs)
