"""One ``auditlog loadtest`` run: clients, scenario, load, live progress, and the result.

The result is a plain dict (the JSON report, :func:`result`), from which the HTML report and
the threshold checks are made. The generator's own limits are in it: the CPU it used (Python
drives its requests from one core), the request rate one core would drive at that CPU per
request (its ceiling on this machine; a floor at low rates, where each request costs more),
and how many requests started late; a warning says when the generator, not the service, set
the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp

from auditlog.loadtest.engine import Picker, Run
from auditlog.loadtest.outcome import exception_kind
from auditlog.loadtest.pacing import Plan
from auditlog.loadtest.reads import ReadTarget
from auditlog.loadtest.scenarios import Clients, operations, read_rng
from auditlog.loadtest.sealing import SealSampler
from auditlog.loadtest.tally import LATE_SECONDS, Counts, Tally
from auditlog.loadtest.writes import POOL_EVENTS, event_pool
from auditlog.producer import AuditProducer

RESULT_VERSION = 1
# Above this share of one core the generator is near its ceiling: its timers fire late and its
# reads of answers queue behind its sends.
_BUSY_CPU = 0.85


@dataclass(frozen=True, slots=True)
class Config:
    scenario: str
    url: str
    token: str
    query_url: str
    read_token: str
    plan: Plan | None  # None: closed loop
    concurrency: int = 0
    seconds: float = 0.0  # closed loop only; an open loop lasts as long as its plan
    max_requests: int | None = None
    bulk: int = 100
    max_in_flight: int = 1000
    timeout: float = 30.0
    seal_samples: int = 200
    seal_wait: float = 30.0
    kafka_bootstrap: str | None = None
    topic: str = "audit.events"
    seed: int = 0
    templated: bool = False
    tenant: str | None = None
    stop_on_errors: float | None = None  # stop sending when the last seconds' error rate passes


def _session(token: str, connections: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


class TargetUnreachable(Exception):  # noqa: N818 - reads as a verdict, like the core tree
    """The service to load does not answer; nothing was sent."""


async def _preflight(session: aiohttp.ClientSession, url: str) -> None:
    """One request before the load: it fails fast on a wrong URL, and it opens a connection and
    loads the HTTP client's lazily imported parts, which would otherwise hold up the first
    requests due."""
    try:
        async with session.get(url + "/healthz") as resp:
            await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TargetUnreachable(f"cannot reach {url}: {exception_kind(exc)}") from exc


def planned_requests(config: Config) -> int:
    if config.plan is not None:
        return config.plan.planned_requests
    if config.max_requests is not None:
        return config.max_requests
    return int(config.seconds * config.concurrency * 100)  # a guess: 10 ms per request


async def execute(config: Config, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    connections = config.max_in_flight if config.plan is not None else config.concurrency
    started_at = datetime.now(UTC)
    events = event_pool(config.seed, POOL_EVENTS, templated=config.templated, tenant=config.tenant)
    async with (
        _session(config.token, connections, config.timeout) as ingest,
        _session(config.read_token, connections, config.timeout) as query,
    ):
        await _preflight(ingest, config.url)
        if config.query_url != config.url:
            await _preflight(query, config.query_url)
        producer = None
        if config.scenario == "kafka" and config.kafka_bootstrap:
            producer = AuditProducer(
                config.kafka_bootstrap, config.topic, ack_timeout=config.timeout
            )
            await producer.start()
        reads = ReadTarget(query, config.query_url, events, read_rng(config.seed))
        try:
            ops = operations(
                config.scenario, Clients(ingest, config.url, reads, producer), events, config.bulk
            )
            logging_share = sum(op.weight for op in ops if op.logs_events) / sum(
                op.weight for op in ops
            )
            sampler = None
            if logging_share > 0 and config.seal_samples > 0:
                sampler = SealSampler(
                    query,
                    config.query_url,
                    ingest,
                    config.url,
                    wanted=config.seal_samples,
                    planned_logging_requests=int(planned_requests(config) * logging_share),
                    on_sealed=reads.learn,
                )
            if any(not op.logs_events for op in ops):
                await reads.prepare()
            run = Run(Picker(ops, random.Random(config.seed)), sampler)
            # The event pools are ~100,000 long-lived objects: a full collection scanning
            # them would stall the event loop for tens of milliseconds, and every request due
            # meanwhile would start late. Frozen, the collector skips them.
            gc.collect()
            gc.freeze()
            cpu_before = time.process_time()
            reporter = asyncio.create_task(_progress(run, config, progress))
            watchdog = asyncio.create_task(_watch_errors(run, config.stop_on_errors))
            with run.interruptible():
                if config.plan is not None:
                    await run.open_loop(config.plan, config.max_in_flight)
                else:
                    await run.closed_loop(config.concurrency, config.seconds, config.max_requests)
            duration = run.elapsed
            cpu = time.process_time() - cpu_before
            for task in (reporter, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if progress is not None and progress.isatty():
                print(file=progress)  # end the progress line rewritten in place
            if sampler is not None:
                if progress is not None and sampler.sampled > sampler.latency.count:
                    print(
                        f"waiting up to {config.seal_wait:g} s for"
                        f" {sampler.sampled - sampler.latency.count} sampled events to seal",
                        file=progress,
                    )
                await sampler.wait(0 if run.stopped_early else config.seal_wait)
        finally:
            gc.unfreeze()
            await reads.close()
            if producer is not None:
                await producer.stop()
    return result(config, run, duration, cpu, started_at, sampler)


def _line(run: Run, config: Config, window: Counts) -> str:
    t = run.tally
    total = config.plan.seconds if config.plan is not None else config.seconds
    return (
        f"{run.elapsed:5.0f}/{total:g} s  sent {t.total.requests + t.in_flight:,}"
        f"  ok {t.total.ok:,}  errors {t.total.failed:,}"
        f"  {window.requests:,.0f} req/s  p50 {window.latency.percentile(50) / 1000:.1f} ms"
        f"  p99 {window.latency.percentile(99) / 1000:.1f} ms  in flight {t.in_flight}"
        f"  late {t.late:,}"
    )


async def _progress(run: Run, config: Config, out: TextIO | None) -> None:
    """One line a second: on a terminal rewritten in place, elsewhere every 5 s."""
    if out is None:
        return
    tty = out.isatty()
    tick = 0
    while True:
        await asyncio.sleep(1)
        tick += 1
        second = int(run.elapsed) - 1
        seconds = run.tally.seconds
        window = seconds[second] if 0 <= second < len(seconds) else Counts()
        if tty:
            print("\r" + _line(run, config, window) + "\x1b[K", end="", file=out, flush=True)
        elif tick % 5 == 0:
            print(_line(run, config, window), file=out, flush=True)


# --stop-on-errors looks at this many whole seconds, and only once they hold this many requests:
# a short burst of errors, or a handful at a low rate, does not end a run.
_ERROR_WINDOW = 5
_ERROR_WINDOW_MIN_REQUESTS = 20


async def _watch_errors(run: Run, bound: float | None) -> None:
    if bound is None:
        return
    while True:
        await asyncio.sleep(1)
        done = int(run.elapsed)
        window = run.tally.seconds[max(0, done - _ERROR_WINDOW) : done]
        requests = sum(c.requests for c in window)
        failed = sum(c.failed for c in window)
        if requests >= _ERROR_WINDOW_MIN_REQUESTS and failed / requests > bound:
            run.stop(
                f"--stop-on-errors: {failed:,} of {requests:,} requests failed in the last"
                f" {len(window)} s ({failed / requests:.1%} > {bound:.1%})",
                failing=True,
            )
            return


def _counts(c: Counts) -> dict[str, Any]:
    return {
        "requests": c.requests,
        "ok": c.ok,
        "failed": c.failed,
        "events": c.events,
        "errors": dict(sorted(c.errors.items(), key=lambda kv: -kv[1])),
        "latency_ms": c.latency.summary_ms(),
    }


def _timeline(t: Tally) -> list[dict[str, Any]]:
    out = []
    for second in range(max(len(t.seconds), len(t.offered))):
        c = t.seconds[second] if second < len(t.seconds) else Counts()
        row: dict[str, Any] = {
            "second": second,
            "offered": t.offered[second] if second < len(t.offered) else 0,
            "requests": c.requests,
            "ok": c.ok,
            "events": c.events,
            "errors": c.errors,
            "late": t.late_by_second[second] if second < len(t.late_by_second) else 0,
        }
        if c.requests:
            row |= {
                "p50_ms": c.latency.percentile(50) / 1000,
                "p99_ms": c.latency.percentile(99) / 1000,
                "max_ms": c.latency.max / 1000,
            }
        out.append(row)
    return out


def _generator(config: Config, run: Run, duration: float, cpu: float) -> dict[str, Any]:
    t = run.tally
    share = cpu / duration if duration > 0 else 0.0
    ceiling = t.total.requests / cpu if cpu > 0 else None
    late_share = t.late / t.total.requests if t.total.requests else 0.0
    warnings = []
    # A handful of late sends in a short run is noise, not a generator at its limit.
    if late_share > 0.01 and t.late >= 5:
        if t.waited_for_slot:
            why = (
                f"{t.waited_for_slot:,} found {config.max_in_flight} requests already out"
                " (--max-in-flight): the service answered too slowly for the planned rate"
            )
        elif share >= _BUSY_CPU:
            why = (
                f"the generator is CPU-bound ({share:.0%} of one core; it drives about"
                f" {ceiling or 0:,.0f} requests/s on this machine): run it on another machine,"
                " or split the load"
            )
        else:
            why = (
                f"the generator's event loop was held up, though it used only {share:.0%} of"
                " a core: other processes on this machine compete for its CPU"
            )
        warnings.append(
            f"{t.late:,} of {t.total.requests:,} requests ({late_share:.1%}) started more than"
            f" {LATE_SECONDS * 1000:g} ms after their due time (at most {t.max_lag * 1000:,.0f}"
            f" ms late): {why}. Their latencies include the wait, but fewer requests were"
            " offered than planned while it lasted."
        )
    elif share >= _BUSY_CPU:
        warnings.append(
            f"the generator used {share:.0%} of one core: it is near its ceiling of about"
            f" {ceiling or 0:,.0f} requests/s on this machine"
        )
    return {
        "cpu_s": round(cpu, 3),
        "cpu_share": round(share, 3),
        "ceiling_requests_per_s": round(ceiling) if ceiling else None,
        "late_requests": t.late,
        "late_share": round(late_share, 5),
        "late_after_ms": LATE_SECONDS * 1000,
        "max_lag_ms": round(t.max_lag * 1000, 3),
        "waited_for_slot": t.waited_for_slot,
        "warnings": warnings,
    }


def result(
    config: Config,
    run: Run,
    duration: float,
    cpu: float,
    started_at: datetime,
    sampler: SealSampler | None,
) -> dict[str, Any]:
    t = run.tally
    # No tokens (reports are shared as CI artifacts), and only the settings this run used.
    unused = {"token", "read_token", "plan"}
    unused |= {"concurrency", "seconds"} if config.plan is not None else {"max_in_flight"}
    if config.scenario not in ("bulk", "async", "mixed"):
        unused.add("bulk")
    if config.scenario != "kafka":
        unused |= {"kafka_bootstrap", "topic"}
    settings = {k: v for k, v in asdict(config).items() if k not in unused}
    plan = config.plan
    planned: dict[str, Any] = {"mode": "open" if plan is not None else "closed"}
    if plan is not None:
        planned |= {
            "start_rate": plan.start_rate,
            "stages": [{"seconds": s.seconds, "target_rate": s.target} for s in plan.stages],
            "seconds": plan.seconds,
            "requests": plan.planned_requests,
            "peak_rate": plan.peak_rate,
        }
    else:
        planned |= {"concurrency": config.concurrency, "seconds": config.seconds}
    per_s = max(duration, 1e-9)
    sealed = sampler.summary() if sampler is not None else None
    return {
        "tool": "auditlog loadtest",
        "version": RESULT_VERSION,
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "scenario": config.scenario,
        "config": settings,
        "plan": planned,
        "duration_s": round(duration, 3),
        "stopped_early": run.stopped_early,
        "stopped_failing": run.failing,
        **_counts(t.total),
        "error_rate": t.total.failed / t.total.requests if t.total.requests else 0.0,
        "requests_per_s": t.total.requests / per_s,
        "ok_requests_per_s": t.total.ok / per_s,
        "events_per_s": t.total.events / per_s,
        "operations": {name: _counts(c) for name, c in sorted(t.operations.items())},
        "sealed": sealed,
        "generator": _generator(config, run, duration, cpu),
        "timeline": _timeline(t),
        "histogram": t.total.latency.to_json(),
    }


def figures(res: dict[str, Any]) -> dict[str, float | None]:
    """The figures thresholds apply to (:mod:`auditlog.loadtest.thresholds`)."""
    latency = res["latency_ms"]
    sealed = (res.get("sealed") or {}).get("latency_ms", {})
    return {
        "latency_p50_ms": latency.get("p50"),
        "latency_p99_ms": latency.get("p99"),
        "error_rate": res["error_rate"],
        "ok_requests_per_s": res["ok_requests_per_s"],
        "events_per_s": res["events_per_s"],
        "sealed_p99_ms": sealed.get("p99"),
    }
