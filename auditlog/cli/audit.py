"""``auditlog audit``: re-derive whole logs from PostgreSQL or the read API and report damage."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from auditlog.cli.args import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    UsageError,
    database_url,
    vkeys,
)


class _ProgressBar:
    """One self-overwriting stderr line per log; silent unless asked for or on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, log: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.started, 1e-6)
        pct = 100 * done // total if total else 100
        bar = "#" * (pct // 5) + "." * (20 - pct // 5)
        sys.stderr.write(f"\r{log} [{bar}] {done}/{total} entries {pct}% {rate:,.0f}/s ")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _trusted_checkpoints(state: dict[str, str]) -> dict[str, list[Any]]:
    from auditlog.core.audit import StoredCheckpoint

    return {origin: [StoredCheckpoint(note, source="state")] for origin, note in state.items()}


async def _audit_database(
    args: argparse.Namespace, verifiers: list[Any], state: dict[str, str], progress: _ProgressBar
) -> list[Any]:
    import asyncpg

    from auditlog.verify.audit_db import audit_database

    try:
        conn = await asyncpg.connect(database_url(args))
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"cannot connect to the database: {exc}") from exc
    try:
        return await audit_database(
            conn,
            verifiers,
            log_ids=args.log or None,
            extra_checkpoints=_trusted_checkpoints(state),
            progress=progress,
            max_findings=args.max_findings,
        )
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"database error: {exc}") from exc
    finally:
        await conn.close()


def _audit_api(
    args: argparse.Namespace, verifiers: list[Any], state: dict[str, str], progress: _ProgressBar
) -> list[Any]:
    from auditlog.verify.audit_http import audit_api
    from auditlog.verify.read_api import ReadApi, ReadApiError

    token = args.token or os.environ.get("AUDITLOG_TOKEN") or None
    try:
        with ReadApi(args.url, token=token) as api:
            results: list[Any] = audit_api(
                api,
                verifiers,
                log_ids=args.log or None,
                extra_checkpoints=_trusted_checkpoints(state),
                progress=progress,
                max_findings=args.max_findings,
            )
            return results
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from exc
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def _print_audit(results: list[Any]) -> None:
    for r in results:
        for f in r.findings:
            print(f"DAMAGE {f.line()}")
        if r.suppressed:
            print(f"DAMAGE {r.log}: {r.suppressed} more findings not listed")
        clean = not r.findings and not r.suppressed
        print(
            f"{'OK' if clean else 'FAILED'} {r.log} ({r.origin}): {r.entries} entries, "
            f"size {r.size}, {r.checkpoints} signed checkpoints verified"
            + ("" if clean else f", {len(r.findings) + r.suppressed} findings")
        )
    if not results:
        print("no logs to audit")


def cmd_audit(args: argparse.Namespace) -> int:
    from auditlog.verify.trust_state import StateError, load_state, save_state

    verifiers = vkeys(args.key)
    state_path = Path(args.state) if args.state else None
    try:
        state = load_state(state_path) if state_path else {}
    except StateError as exc:
        raise UsageError(str(exc)) from exc
    progress = _ProgressBar(args.progress if args.progress is not None else sys.stderr.isatty())
    try:
        if args.url:
            results = _audit_api(args, verifiers, state, progress)
        else:
            results = asyncio.run(_audit_database(args, verifiers, state, progress))
    finally:
        progress.done()
    findings = [f for r in results for f in r.findings]
    suppressed = sum(r.suppressed for r in results)
    if args.json:
        report = {
            "ok": not findings and not suppressed,
            "source": args.url or "database",
            "logs": [r.to_dict() for r in results],
            "findings": [f.to_dict() for f in findings],
            "suppressed": suppressed,
        }
        print(json.dumps(report, indent=1))
    else:
        _print_audit(results)
    if state_path is not None:
        # Only a clean log's head is trusted; a damaged log keeps its last good checkpoint.
        for r in results:
            if not r.findings and not r.suppressed and r.head_note:
                state[r.origin] = r.head_note
        try:
            save_state(state_path, state)
        except OSError as exc:
            raise UsageError(f"cannot write state file {state_path}: {exc.strerror}") from exc
    return EXIT_FAILED if findings or suppressed else EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    aud = sub.add_parser(
        "audit", help="re-derive and cross-check whole logs, trusting only the public key"
    )
    aud.add_argument("--key", required=True, action="append", help="verifier key or key file")
    aud.add_argument("--log", action="append", help="audit only this log id (repeatable)")
    src = aud.add_mutually_exclusive_group()
    src.add_argument("--database-url", help="audit from PostgreSQL (default AUDITLOG_DATABASE_URL)")
    src.add_argument("--url", help="audit from the public read API instead, e.g. http://host:8000")
    aud.add_argument(
        "--token",
        help="API token with search scope for entry bundles (--url mode;"
        " default AUDITLOG_TOKEN); without it only tiles and checkpoints are checked",
    )
    aud.add_argument("--state", help="remember verified checkpoints here; catches rollbacks")
    aud.add_argument("--json", action="store_true", help="print a JSON report")
    aud.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    aud.add_argument(
        "--max-findings",
        type=int,
        default=10_000,
        help="list at most this many findings of each kind per log",
    )
    aud.set_defaults(func=cmd_audit)
