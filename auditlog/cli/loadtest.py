"""``auditlog loadtest``: run a load scenario, print progress and figures, write the JSON and
HTML reports, and exit 1 when a threshold is not met (docs/loadtest.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError
from auditlog.producer import KafkaSecurity
from auditlog.runtime.settings import Env

MAX_SECONDS = 3600


def _plan(args: argparse.Namespace) -> object:
    from auditlog.loadtest.pacing import Plan, PlanError, Stage, parse_duration, parse_stages

    try:
        seconds = parse_duration(args.duration)
        if args.stages:
            if args.rate is not None or args.concurrency is not None:
                raise UsageError("--stages replaces --rate and --concurrency")
            stages = parse_stages(args.stages)
            start = args.start_rate if args.start_rate is not None else 0.0
            plan = Plan(tuple(stages), start_rate=start, max_requests=args.max_requests)
        elif args.concurrency is not None:
            if args.rate is not None:
                raise UsageError(
                    "--rate (open loop) and --concurrency (closed loop) exclude each other"
                )
            if args.concurrency < 1:
                raise UsageError("--concurrency is at least 1")
            if not 0 < seconds <= MAX_SECONDS:
                raise UsageError(f"--duration must be in (0, {MAX_SECONDS}] s")
            return None
        else:
            rate = args.rate if args.rate is not None else 100.0
            plan = Plan((Stage(seconds, rate),), start_rate=rate, max_requests=args.max_requests)
    except PlanError as exc:
        raise UsageError(str(exc)) from exc
    if plan.seconds > MAX_SECONDS:
        raise UsageError(f"a run lasts at most {MAX_SECONDS} s; these stages last {plan.seconds:g}")
    return plan


def _bounds(args: argparse.Namespace) -> dict[str, float]:
    from auditlog.loadtest.thresholds import LIMITS, parse_rate

    bounds: dict[str, float] = {}
    for limit in LIMITS:
        raw = getattr(args, limit.option.removeprefix("--").replace("-", "_"))
        if raw is None:
            continue
        try:
            bounds[limit.option] = (
                parse_rate(raw) if limit.option == "--max-error-rate" else float(raw)
            )
        except ValueError as exc:
            raise UsageError(f"{limit.option}: {exc}") from exc
    return bounds


def cmd_loadtest(args: argparse.Namespace) -> int:
    from auditlog.loadtest import options, report, results, runner, thresholds
    from auditlog.loadtest.pacing import Plan, parse_duration
    from auditlog.loadtest.thresholds import parse_rate

    token = args.token or os.environ.get("PANGEA_AUDIT_TOKEN")
    if not token:
        raise UsageError("--token (or PANGEA_AUDIT_TOKEN) is required")
    plan = _plan(args)
    assert plan is None or isinstance(plan, Plan)
    bounds = _bounds(args)
    kafka = args.kafka_bootstrap or os.environ.get("AUDITLOG_KAFKA_BOOTSTRAP")
    if args.scenario == "kafka" and not kafka:
        raise UsageError("the kafka scenario needs --kafka-bootstrap (or AUDITLOG_KAFKA_BOOTSTRAP)")
    if not 1 <= args.bulk <= 1000:
        raise UsageError("--bulk is 1 to 1000 events per request (ingest's limit)")
    try:
        stop_on_errors = None if args.stop_on_errors is None else parse_rate(args.stop_on_errors)
    except ValueError as exc:
        raise UsageError(f"--stop-on-errors: {exc}") from exc
    url = args.url.rstrip("/")
    config = options.Config(
        scenario=args.scenario,
        url=url,
        token=token,
        query_url=(args.query_url or url).rstrip("/"),
        read_token=args.read_token or token,
        plan=plan,
        concurrency=args.concurrency or 0,
        seconds=parse_duration(args.duration),
        max_requests=args.max_requests,
        bulk=args.bulk,
        max_in_flight=args.max_in_flight,
        timeout=args.timeout,
        seal_samples=args.seal_samples,
        seal_wait=args.seal_wait,
        kafka_bootstrap=kafka,
        kafka_security=KafkaSecurity.from_env(Env()),
        topic=args.topic,
        seed=args.seed,
        templated=args.templated,
        tenant=args.tenant,
        stop_on_errors=stop_on_errors,
    )
    progress = None if args.quiet else sys.stderr
    try:
        res = asyncio.run(runner.execute(config, progress))
    except runner.TargetUnreachable as exc:
        raise UsageError(str(exc)) from exc
    checks = thresholds.evaluate(bounds, results.figures(res))
    json_path, html_path = report.write(res, checks, Path(args.out))
    for line in summary(res):
        print(line)
    for check in checks:
        print(f"  {check.describe()}")
    print(f"report: {html_path} and {json_path}")
    passed = not res["stopped_failing"] and all(c.passed for c in checks)
    return EXIT_OK if passed else EXIT_FAILED


def summary(res: dict[str, object]) -> list[str]:
    """What the terminal shows at the end: the figures a reader checks first."""
    r: dict[str, object] = res
    lat = r["latency_ms"]
    assert isinstance(lat, dict)

    def ms(key: str) -> str:
        value = lat.get(key)
        return "-" if value is None else f"{value:,.1f}"

    lines = [f"STOPPED EARLY: {r['stopped_early']}"] if r["stopped_early"] else []
    lines += [
        f"{r['scenario']}: {r['requests']:,} requests in {r['duration_s']:,.1f} s,"
        f" {r['ok_requests_per_s']:,.1f} ok requests/s, {r['events_per_s']:,.1f} events/s,"
        f" errors {r['failed']:,} ({r['error_rate']:.2%})",
        f"  latency from intended send time: p50 {ms('p50')} ms, p90 {ms('p90')} ms,"
        f" p99 {ms('p99')} ms, max {ms('max')} ms",
    ]
    errors = r["errors"]
    assert isinstance(errors, dict)
    if errors:
        lines.append("  errors: " + ", ".join(f"{k} {n:,}" for k, n in errors.items()))
    sealed = r.get("sealed")
    if isinstance(sealed, dict):
        if sealed.get("unavailable"):
            lines.append(f"  logged -> sealed: not measured: {sealed['unavailable']}")
        elif not sealed["sealed"]:
            lines.append(
                f"  logged -> sealed: none of {sealed['sampled']} sampled events seen sealed"
            )
        else:
            s = sealed["latency_ms"]
            lines.append(
                f"  logged -> sealed ({sealed['sealed']} of {sealed['sampled']} sampled events):"
                f" p50 {s.get('p50', 0):,.1f} ms, p99 {s.get('p99', 0):,.1f} ms"
            )
    generator = r["generator"]
    assert isinstance(generator, dict)
    lines += [f"  WARNING: {w}" for w in generator["warnings"]]
    return lines


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    from auditlog.loadtest.scenarios import SCENARIOS

    lt = sub.add_parser(
        "loadtest",
        help="run a load scenario against ingest/query; JSON and HTML report, thresholds",
        description="Open-loop load with latency from the intended send time (docs/loadtest.md)."
        " Exit 0 when every threshold holds, 1 when one does not, 2 on a usage error.",
    )
    lt.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="single",
        help="what each request does (default single; mixed is the standard scenario)",
    )
    lt.add_argument(
        "--url",
        default=os.environ.get("AUDITLOG_URL", "http://127.0.0.1:8000"),
        help="ingest base URL (default $AUDITLOG_URL)",
    )
    lt.add_argument(
        "--query-url",
        default=os.environ.get("AUDITLOG_QUERY_URL"),
        help="query base URL for reads and receipts (default: --url)",
    )
    lt.add_argument("--token", help="a token with the log scope (default: $PANGEA_AUDIT_TOKEN)")
    lt.add_argument("--read-token", help="a token with the search scope (default: --token)")
    load = lt.add_argument_group("load shape (a run always stops by itself)")
    load.add_argument("--rate", type=float, help="open loop at this many requests/s (default 100)")
    load.add_argument(
        "--stages", help="open-loop ramps, DURATION:RATE,... e.g. 10s:50,1m:200,10s:0"
    )
    load.add_argument("--start-rate", type=float, help="rate the first stage starts from (0)")
    load.add_argument("--concurrency", type=int, help="closed loop with this many clients instead")
    load.add_argument(
        "--duration",
        "--seconds",
        default="10s",
        help="run time with --rate or --concurrency: 30s, 2m... (default 10s)",
    )
    load.add_argument("--max-requests", type=int, help="stop after this many requests")
    load.add_argument(
        "--stop-on-errors",
        metavar="RATE",
        help="stop sending when more than RATE (0.05 or 5%%) of the last 5 s failed",
    )
    load.add_argument(
        "--bulk",
        type=int,
        default=100,
        help="events per request of the bulk and async scenarios (default 100)",
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        help="open loop: requests out at once; later ones wait, and it counts",
    )
    load.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    load.add_argument(
        "--tenant", help="set every event's tenant_id (what a tenant-bound --token needs)"
    )
    load.add_argument("--seed", type=int, default=0, help="seed of the events and the mix")
    load.add_argument(
        "--templated",
        action="store_true",
        help="one templated event pattern (a flattering best case)",
    )
    seal = lt.add_argument_group("logged -> sealed latency")
    seal.add_argument(
        "--seal-samples",
        type=int,
        default=200,
        help="logged events followed to their receipt (0: none)",
    )
    seal.add_argument(
        "--seal-wait",
        type=float,
        default=30.0,
        help="seconds to wait after the load for sampled events to seal",
    )
    kafka = lt.add_argument_group("kafka scenario")
    kafka.add_argument("--kafka-bootstrap", help="default $AUDITLOG_KAFKA_BOOTSTRAP")
    kafka.add_argument(
        "--topic",
        default=os.environ.get("AUDITLOG_TOPIC", "audit.events"),
        help="default $AUDITLOG_TOPIC, else audit.events",
    )
    out = lt.add_argument_group("reports and thresholds (exit 1 when one is not met)")
    out.add_argument(
        "--out",
        default="loadtest-report",
        help="directory for report.json and report.html (default loadtest-report)",
    )
    out.add_argument("--quiet", action="store_true", help="no live progress line")
    out.add_argument("--max-p50", metavar="MS", help="p50 latency of all requests, ms")
    out.add_argument("--max-p99", metavar="MS", help="p99 latency of all requests, ms")
    out.add_argument(
        "--max-error-rate", metavar="RATE", default="1%", help="0.01 or 1%% (default 1%%)"
    )
    out.add_argument("--min-rate", metavar="REQ/S", help="ok requests per second")
    out.add_argument("--min-events-rate", metavar="EVENTS/S", help="events logged per second")
    out.add_argument(
        "--max-sealed-p99", metavar="MS", help="p99 of the sampled logged -> sealed latency, ms"
    )
    lt.set_defaults(func=cmd_loadtest)
