"""``auditlog monitor``: follow logs' checkpoints over the read API and alert on inconsistency."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auditlog.cli.args import Subparsers, UsageError, max_cosignature_age, policy, vkeys


def _state_path(args: argparse.Namespace, keys: list[str]) -> Path | None:
    from auditlog.verify.trust_state import default_state_path

    if args.no_state:
        return None
    return Path(args.state) if args.state else default_state_path("monitor", args.url, keys)


def _forget(state_path: Path | None, origins: list[str]) -> None:
    from auditlog.verify.trust_state import load_state, save_state

    if state_path is None:
        raise UsageError("--forget needs a state file (drop --no-state)")
    state = load_state(state_path)
    unknown = set(origins) - set(state.logs)
    if unknown:
        raise UsageError(f"--forget: {', '.join(sorted(unknown))} is not remembered")
    state.forget(origins)
    save_state(state_path, state)


def _textfile(path: str | None) -> Callable[[int, Sequence[Any]], None] | None:
    """Each round's outcome for node-exporter's textfile collector (--textfile)."""
    from auditlog.runtime.textfile import write_run_metrics

    if path is None:
        return None

    def write(checked: int, alerts: Sequence[Any]) -> None:
        counts = {"logs_checked": (float(checked), "Logs the last round checked")}
        try:
            write_run_metrics(Path(path), "monitor", success=not alerts, counts=counts)
        except OSError as exc:
            raise UsageError(f"cannot write --textfile {path}: {exc.strerror}") from exc

    return write


def cmd_monitor(args: argparse.Namespace) -> int:
    from auditlog.verify.monitor import run_monitor
    from auditlog.verify.read_api import ReadApi
    from auditlog.verify.trust_state import StateError

    verifiers = vkeys(args.key)
    log_policy = policy(args.policy)
    max_age = max_cosignature_age(args, log_policy)
    state_path = _state_path(args, [v.vkey() for v in verifiers])
    print(
        f"state: {state_path}"
        if state_path is not None
        else "state: in memory only (--no-state): forgotten when this process exits",
        flush=True,
    )
    try:
        if args.forget:
            _forget(state_path, args.forget)
        with ReadApi(args.url) as api:
            return run_monitor(
                api,
                verifiers,
                state_path,
                log_ids=args.log or None,
                policy=log_policy,
                max_cosignature_age=max_age,
                webhook=args.webhook,
                interval=args.interval,
                once=args.once,
                on_round=_textfile(args.textfile),
            )
    except StateError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"state file {state_path}: {exc}") from exc


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    mon = sub.add_parser("monitor", help="follow logs' checkpoints and alert on any inconsistency")
    mon.add_argument("--url", required=True, help="the read API, e.g. http://host:8000")
    mon.add_argument("--key", required=True, action="append", help="verifier key or key file")
    mem = mon.add_mutually_exclusive_group()
    mem.add_argument(
        "--state",
        help="where every log's origin, hash scheme and last trusted checkpoint are kept"
        " (default: $XDG_STATE_HOME/auditlog/monitor-<source>-<hash>.json)",
    )
    mem.add_argument(
        "--no-state",
        action="store_true",
        help="remember in memory only, for as long as this process runs",
    )
    mon.add_argument(
        "--forget",
        action="append",
        metavar="ORIGIN",
        help="drop a remembered log on purpose (retired or moved) before starting (repeatable)",
    )
    mon.add_argument("--log", action="append", help="follow only this log id (repeatable)")
    mon.add_argument("--policy", help="C2SP tlog-policy file new checkpoints must satisfy")
    mon.add_argument(
        "--max-cosignature-age",
        type=int,
        metavar="SECONDS",
        help="with --policy: witness cosignatures older than this do not count toward the quorum",
    )
    mon.add_argument("--webhook", help="POST each alert as JSON to this URL")
    mon.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    mon.add_argument("--once", action="store_true", help="one round, then exit 0/1/2")
    mon.add_argument(
        "--textfile",
        metavar="PATH",
        help="write each round's outcome for node-exporter's textfile collector (a .prom file)",
    )
    mon.set_defaults(func=cmd_monitor)
