"""``auditlog loadtest``: drive an ingest endpoint and print throughput and latency."""

from __future__ import annotations

import argparse
import os

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError


def cmd_loadtest(args: argparse.Namespace) -> int:
    from auditlog.loadtest import run as loadtest

    token = args.token or os.environ.get("PANGEA_AUDIT_TOKEN")
    if not token:
        raise UsageError("--token (or PANGEA_AUDIT_TOKEN) is required")
    if args.seconds <= 0 or args.seconds > 3600:
        raise UsageError("--seconds must be in (0, 3600]")
    result = loadtest.run(
        args.url.rstrip("/"),
        token,
        seconds=args.seconds,
        rate=args.rate,
        concurrency=args.concurrency,
        bulk=args.bulk,
        templated=args.templated,
    )
    shape = f"{args.rate:g} requests/s" if args.rate else f"{args.concurrency} clients"
    kind = f"/v2/log x{args.bulk}" if args.bulk > 1 else "/v1/log"
    kind += ", templated events" if args.templated else ", realistic events"
    print(result.summary(f"{kind}, {shape}, {args.seconds:g} s"))
    return EXIT_OK if result.errors == 0 else EXIT_FAILED


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    lt = sub.add_parser("loadtest", help="load an ingest endpoint; prints throughput and latency")
    lt.add_argument("--url", default=os.environ.get("AUDITLOG_URL", "http://127.0.0.1:8000"))
    lt.add_argument("--token", help="a token with the log scope (default: $PANGEA_AUDIT_TOKEN)")
    lt.add_argument("--seconds", type=float, default=10)
    lt.add_argument("--rate", type=float, help="open loop at this many requests/s")
    lt.add_argument("--concurrency", type=int, default=64, help="closed-loop clients")
    lt.add_argument("--bulk", type=int, default=1, help="events per request (/v2/log when > 1)")
    lt.add_argument(
        "--templated",
        action="store_true",
        help="send one templated event pattern (a best case) instead of realistic events",
    )
    lt.set_defaults(func=cmd_loadtest)
