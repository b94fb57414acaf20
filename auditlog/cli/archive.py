"""``auditlog archive``: write a self-contained, offline-verifiable archive of a range of a log.

``auditlog audit --bundle FILE --key VKEY`` verifies one with nothing but the public key
(:mod:`auditlog.core.archive` has the format; docs/retention.md the procedure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError, database_url


async def _archive(args: argparse.Namespace, path: Path, location: str) -> Any:
    import asyncpg

    from auditlog.pg.archive import write_archive

    try:
        conn = await asyncpg.connect(database_url(args))
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"cannot connect to the database: {exc}") from exc
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("wb") as out:
            written = await write_archive(conn, args.log, args.first, args.end, out, location)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        return written
    finally:
        tmp.unlink(missing_ok=True)
        await conn.close()


def cmd_archive(args: argparse.Namespace) -> int:
    from auditlog.pg.archive import ArchiveRefused

    path = Path(args.out)
    try:
        written = asyncio.run(_archive(args, path, str(path.resolve())))
    except ArchiveRefused as exc:
        print(f"not archived: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    print(
        f"archived {written.log_id} entries [{written.first}, {written.end}) against checkpoint"
        f" size {written.size} ({written.erased} erased) to {path}, sha256 {written.sha256}"
    )
    return EXIT_OK


def audit_bundle(path: str, verifiers: list[Any]) -> int:
    """``auditlog audit --bundle``: verify an archive offline."""
    from auditlog.core.archive import ArchiveError, verify_archive

    try:
        with Path(path).open("rb") as lines:
            done = verify_archive(lines, verifiers)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except ArchiveError as exc:
        print(f"FAILED archive {path}: {exc}")
        return EXIT_FAILED
    print(
        f"OK archive {path} ({done.origin}): entries [{done.first}, {done.end}) verified against"
        f" the signed checkpoint of size {done.size}"
        + (f", {done.erased} erased" if done.erased else "")
    )
    return EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    arc = sub.add_parser(
        "archive", help="write an offline-verifiable archive of a range of a log's entries"
    )
    arc.add_argument("--log", required=True, help="the log id")
    arc.add_argument(
        "--from", dest="first", type=int, help="first index (default: the pruned bound)"
    )
    arc.add_argument("--to", dest="end", type=int, help="end index, exclusive (default: the size)")
    arc.add_argument("--out", required=True, help="the archive file to write")
    arc.add_argument("--database-url", help="default AUDITLOG_DATABASE_URL")
    arc.set_defaults(func=cmd_archive)
