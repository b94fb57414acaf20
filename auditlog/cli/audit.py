"""``auditlog audit``: re-derive whole logs from PostgreSQL or the read API and report damage.

The verifier's memory (:mod:`auditlog.verify.trust_state`) is on by default, in a per-user file
for this source and these keys, so a rollback or a vanished log is caught without asking.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def _audit_database(
    args: argparse.Namespace, verifiers: list[Any], state: Any, progress: _ProgressBar
) -> Any:
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
            state=state,
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
    args: argparse.Namespace, verifiers: list[Any], state: Any, progress: _ProgressBar
) -> Any:
    from auditlog.verify.audit_http import audit_api
    from auditlog.verify.read_api import ReadApi, ReadApiError

    token = args.token or os.environ.get("AUDITLOG_TOKEN") or None
    try:
        with ReadApi(args.url, token=token) as api:
            return audit_api(
                api,
                verifiers,
                log_ids=args.log or None,
                state=state,
                progress=progress,
                max_findings=args.max_findings,
            )
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from exc
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def _print_audit(results: list[Any]) -> None:
    for r in results:
        for e in r.erased:
            print(f"ERASED {r.log}: index {e.index} hash {e.hash} at {e.time}: {e.reason}")
        for f in r.findings:
            print(f"DAMAGE {f.line()}")
        if r.suppressed:
            print(f"DAMAGE {r.log}: {r.suppressed} more findings not listed")
        clean = not r.findings and not r.suppressed
        print(
            f"{'OK' if clean else 'FAILED'} {r.log} ({r.origin}): {r.entries} entries, "
            f"size {r.size}, {r.checkpoints} signed checkpoints verified"
            + (f", pruned below {r.pruned_below}" if r.pruned_below else "")
            + (f", {len(r.erased)} erased" if r.erased else "")
            + ("" if clean else f", {len(r.findings) + r.suppressed} findings")
        )
    if not results:
        print("no logs to audit")


def _state_path(args: argparse.Namespace, verifiers: list[Any]) -> Path | None:
    """--state, or the per-user default for this source and these keys; None with --no-state."""
    from auditlog.verify.trust_state import default_state_path

    if args.no_state:
        if args.forget:
            raise UsageError("--forget needs a state file (drop --no-state)")
        return None
    if args.state:
        return Path(args.state)
    source = args.url or database_url(args)
    return default_state_path("audit", source, [v.vkey() for v in verifiers])


def _load(state_path: Path | None, forget: list[str] | None) -> Any:
    from auditlog.verify.trust_state import StateError, TrustState, load_state

    try:
        state = load_state(state_path) if state_path is not None else TrustState()
    except StateError as exc:
        raise UsageError(str(exc)) from exc
    unknown = set(forget or ()) - set(state.logs)
    if unknown:
        raise UsageError(f"--forget: {', '.join(sorted(unknown))} is not remembered")
    state.forget(forget or ())
    return state


def _save(state_path: Path | None, state: Any, run: Any, out: Any) -> None:
    from auditlog.verify.trust_state import save_state

    if state_path is None:
        print(
            "state: none (--no-state): a log rolled back with its history, or gone, is not caught",
            file=out,
        )
        return
    migrated = state.version != 2
    run.learn(state)
    try:
        save_state(state_path, state)
    except OSError as exc:
        raise UsageError(f"cannot write state file {state_path}: {exc.strerror}") from exc
    print(
        f"state: {state_path} ({len(state.logs)} logs remembered"
        + (", migrated from version 1)" if migrated else ")"),
        file=out,
    )


def _textfile(path: str | None, success: bool, results: list[Any]) -> None:
    """The run's outcome for node-exporter's textfile collector (--textfile)."""
    from auditlog.runtime.textfile import write_run_metrics

    if path is None:
        return
    counts = {
        "entries_checked": (sum(r.entries for r in results), "Entries the last run re-derived"),
        "logs_checked": (len(results), "Logs the last run audited"),
    }
    try:
        write_run_metrics(Path(path), "audit", success=success, counts=counts)
    except OSError as exc:
        raise UsageError(f"cannot write --textfile {path}: {exc.strerror}") from exc


def cmd_audit(args: argparse.Namespace) -> int:
    try:
        return _audit(args)
    except UsageError:
        # The audit could not run (no database, a bad key, a bad state file): that is a failed
        # run to whoever watches the textfile, not a run skipped.
        with contextlib.suppress(UsageError):
            _textfile(args.textfile, False, [])
        raise


def _audit(args: argparse.Namespace) -> int:
    verifiers = vkeys(args.key)
    if args.bundle:
        from auditlog.cli.archive import audit_bundle

        return audit_bundle(args.bundle, verifiers)
    state_path = _state_path(args, verifiers)
    state = _load(state_path, args.forget)
    progress = _ProgressBar(args.progress if args.progress is not None else sys.stderr.isatty())
    try:
        if args.url:
            run = _audit_api(args, verifiers, state, progress)
        else:
            run = asyncio.run(_audit_database(args, verifiers, state, progress))
    finally:
        progress.done()
    results = run.logs
    findings = [f for r in results for f in r.findings]
    suppressed = sum(r.suppressed for r in results)
    if args.json:
        report = {
            "ok": not findings and not suppressed,
            "source": args.url or "database",
            "state": str(state_path) if state_path is not None else None,
            "logs": [r.to_dict() for r in results],
            "findings": [f.to_dict() for f in findings],
            "suppressed": suppressed,
        }
        print(json.dumps(report, indent=1))
    else:
        _print_audit(results)
    # Only a clean log's head is trusted; a damaged log keeps its last good checkpoint.
    _save(state_path, state, run, sys.stderr if args.json else sys.stdout)
    clean = not findings and not suppressed
    _textfile(args.textfile, clean, results)
    return EXIT_OK if clean else EXIT_FAILED


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    aud = sub.add_parser(
        "audit", help="re-derive and cross-check whole logs, trusting only the public key"
    )
    aud.add_argument("--key", required=True, action="append", help="verifier key or key file")
    aud.add_argument("--log", action="append", help="audit only this log id (repeatable)")
    src = aud.add_mutually_exclusive_group()
    src.add_argument("--database-url", help="audit from PostgreSQL (default AUDITLOG_DATABASE_URL)")
    src.add_argument("--url", help="audit from the public read API instead, e.g. http://host:8000")
    src.add_argument(
        "--bundle", metavar="FILE", help="verify an `auditlog archive` file offline instead"
    )
    aud.add_argument(
        "--token",
        help="API token with search scope for entry bundles (--url mode;"
        " default AUDITLOG_TOKEN); without it only tiles and checkpoints are checked",
    )
    mem = aud.add_mutually_exclusive_group()
    mem.add_argument(
        "--state",
        help="the verifier's memory: every log's origin, hash scheme and last verified"
        " checkpoint (default: $XDG_STATE_HOME/auditlog/audit-<source>-<hash>.json)",
    )
    mem.add_argument(
        "--no-state",
        action="store_true",
        help="remember nothing: rollbacks with history and vanished logs go unseen",
    )
    aud.add_argument(
        "--forget",
        action="append",
        metavar="ORIGIN",
        help="drop a remembered log on purpose (retired or moved) before auditing (repeatable)",
    )
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
    aud.add_argument(
        "--textfile",
        metavar="PATH",
        help="write the run's outcome for node-exporter's textfile collector (a .prom file)",
    )
    aud.set_defaults(func=cmd_audit)
