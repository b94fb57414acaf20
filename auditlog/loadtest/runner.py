"""One ``auditlog loadtest`` run: clients, scenario, load, live progress, and the result
(:mod:`auditlog.loadtest.results`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
from aiokafka.errors import KafkaError

from auditlog.loadtest.engine import Operation, Picker, Run
from auditlog.loadtest.options import Config, planned_requests
from auditlog.loadtest.outcome import exception_kind
from auditlog.loadtest.reads import ReadTarget
from auditlog.loadtest.results import result
from auditlog.loadtest.scenarios import Clients, operations, read_rng
from auditlog.loadtest.sealing import SealSampler
from auditlog.loadtest.tally import Counts
from auditlog.loadtest.writes import POOL_EVENTS, event_pool
from auditlog.producer import AuditProducer


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


async def _producer(config: Config) -> AuditProducer | None:
    """The producer library's client, started, for the kafka scenario."""
    if config.scenario != "kafka" or not config.kafka_bootstrap:
        return None
    producer = AuditProducer(
        config.kafka_bootstrap,
        config.topic,
        ack_timeout=config.timeout,
        security=config.kafka_security,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise TargetUnreachable(
            f"cannot reach Kafka at {config.kafka_bootstrap}: {type(exc).__name__}"
        ) from exc
    return producer


def _sampler(
    config: Config,
    ops: list[Operation],
    ingest: aiohttp.ClientSession,
    query: aiohttp.ClientSession,
    reads: ReadTarget,
) -> SealSampler | None:
    logging_share = sum(op.weight for op in ops if op.logs_events) / sum(op.weight for op in ops)
    if logging_share == 0 or config.seal_samples <= 0:
        return None
    return SealSampler(
        query,
        config.query_url,
        ingest,
        config.url,
        wanted=config.seal_samples,
        planned_logging_requests=int(planned_requests(config) * logging_share),
        on_sealed=reads.learn,
    )


async def execute(config: Config, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the load ``config`` describes; the result (:func:`result`). Progress goes to
    ``progress`` (None: silent)."""
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
        producer = await _producer(config)
        reads = ReadTarget(query, config.query_url, events, read_rng(config.seed))
        try:
            ops = operations(
                config.scenario, Clients(ingest, config.url, reads, producer), events, config.bulk
            )
            sampler = _sampler(config, ops, ingest, query, reads)
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
