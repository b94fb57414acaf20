"""``auditlog monitor``: follow logs' checkpoints over the read API and alert on inconsistency."""

from __future__ import annotations

import argparse
from pathlib import Path

from auditlog.cli.args import Subparsers, UsageError, policy, vkeys


def cmd_monitor(args: argparse.Namespace) -> int:
    from auditlog.verify.monitor import run_monitor
    from auditlog.verify.read_api import ReadApi
    from auditlog.verify.trust_state import StateError

    verifiers = vkeys(args.key)
    try:
        with ReadApi(args.url) as api:
            return run_monitor(
                api,
                verifiers,
                Path(args.state),
                log_ids=args.log or None,
                policy=policy(args.policy),
                webhook=args.webhook,
                interval=args.interval,
                once=args.once,
            )
    except StateError as exc:
        raise UsageError(str(exc)) from exc


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    mon = sub.add_parser("monitor", help="follow logs' checkpoints and alert on any inconsistency")
    mon.add_argument("--url", required=True, help="the read API, e.g. http://host:8000")
    mon.add_argument("--key", required=True, action="append", help="verifier key or key file")
    mon.add_argument(
        "--state",
        default=".auditlog/monitor-state.json",
        help="where the last trusted checkpoint of each log is kept",
    )
    mon.add_argument("--log", action="append", help="follow only this log id (repeatable)")
    mon.add_argument("--policy", help="C2SP tlog-policy file new checkpoints must satisfy")
    mon.add_argument("--webhook", help="POST each alert as JSON to this URL")
    mon.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    mon.add_argument("--once", action="store_true", help="one round, then exit 0/1/2")
    mon.set_defaults(func=cmd_monitor)
