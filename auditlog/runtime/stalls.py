"""What stops a service's event loop: the cyclic garbage collector, and anything else.

Sealing and answering requests allocate many short-lived, acyclic objects that reference
counting frees; at CPython's default thresholds the cyclic collector would walk them every 700
allocations and, now and then, walk every long-lived object too (caches, pools, modules). A full
walk stops the event loop for as long as it takes, which shows up as tail latency. So each
service freezes what it allocated at start-up (never walked again), raises the first threshold,
and times every collection (``auditlog_gc_pause_seconds`` per generation).

``watch_event_loop`` measures how late the loop wakes a sleeping task
(``auditlog_event_loop_lag_seconds``): blocking code, a long collection, or the process waiting
for a CPU all show up there. A pause or lag of ``SLOW_SECONDS`` or more is also a warning line,
so a latency spike can be matched to its cause in the logs.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
from time import perf_counter
from typing import Any

import structlog
from prometheus_client import Histogram

log = structlog.get_logger("stalls")

FIRST_THRESHOLD = 50_000
SLOW_SECONDS = 0.05
LOOP_TICK_SECONDS = 0.02

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
GC_PAUSE = Histogram(
    "auditlog_gc_pause_seconds",
    "Time the cyclic garbage collector stopped the process, per collection",
    ["generation"],
    buckets=_BUCKETS,
)
LOOP_LAG = Histogram(
    "auditlog_event_loop_lag_seconds",
    f"How late the event loop woke a task sleeping {LOOP_TICK_SECONDS} s",
    buckets=_BUCKETS,
)

_started: list[float] = []
_installed = False


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(perf_counter())
        return
    if not _started:
        return
    pause = perf_counter() - _started.pop()
    generation = int(info.get("generation", 0))
    GC_PAUSE.labels(str(generation)).observe(pause)
    if pause >= SLOW_SECONDS:
        log.warning(
            "gc_pause",
            generation=generation,
            ms=round(pause * 1000, 1),
            collected=info.get("collected"),
            frozen=gc.get_freeze_count(),
        )


def tune_collector() -> None:
    """Freeze the start-up heap, raise the first threshold and time collections (idempotent)."""
    global _installed  # noqa: PLW0603 - the collector is process-global by nature
    gc.freeze()
    gc.set_threshold(FIRST_THRESHOLD, 20, 20)
    if not _installed:
        gc.callbacks.append(_on_collection)
        # The collections of interpreter shutdown come after the streams a slow one would be
        # logged to are closed ("I/O operation on closed file" at the exit of a test run).
        atexit.register(_stop_timing)
        _installed = True


def _stop_timing() -> None:
    while _on_collection in gc.callbacks:
        gc.callbacks.remove(_on_collection)


async def watch_event_loop(
    until: asyncio.Event | None = None, tick: float = LOOP_TICK_SECONDS
) -> None:
    """Observe how late each ``tick``-second sleep ends, until ``until`` is set (or cancelled)."""
    while until is None or not until.is_set():
        began = perf_counter()
        await asyncio.sleep(tick)
        lag = max(0.0, perf_counter() - began - tick)
        LOOP_LAG.observe(lag)
        if lag >= SLOW_SECONDS:
            log.warning("event_loop_stall", ms=round(lag * 1000, 1))
