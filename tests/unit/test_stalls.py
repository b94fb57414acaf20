"""The stall watchers: every collection is timed, a blocked event loop is seen and named."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from auditlog.runtime import stalls


def _count(histogram_name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(f"{histogram_name}_count", labels)
    return value or 0.0


@pytest.fixture(autouse=True)
def _uninstall() -> Iterator[None]:
    # The callback is process-global: later tests must not time (and log) their collections.
    yield
    while stalls._on_collection in gc.callbacks:
        gc.callbacks.remove(stalls._on_collection)
    stalls._installed = False


@pytest.fixture
def tuned() -> Iterator[None]:
    thresholds = gc.get_threshold()
    stalls.tune_collector()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("tuned")
def test_every_collection_is_timed_per_generation() -> None:
    before = _count("auditlog_gc_pause_seconds", generation="2")
    gc.collect()
    assert _count("auditlog_gc_pause_seconds", generation="2") == before + 1
    assert gc.get_threshold()[0] == stalls.FIRST_THRESHOLD


@pytest.mark.usefixtures("tuned")
def test_a_slow_collection_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stalls, "SLOW_SECONDS", 0.0)
    with capture_logs() as logs:
        gc.collect()
    pauses = [e for e in logs if e["event"] == "gc_pause"]
    assert pauses
    assert pauses[-1]["generation"] == 2
    assert pauses[-1]["log_level"] == "warning"


def test_tuning_twice_installs_one_callback() -> None:
    thresholds = gc.get_threshold()
    try:
        stalls.tune_collector()
        stalls.tune_collector()
        assert gc.callbacks.count(stalls._on_collection) == 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_collections_at_exit_are_not_logged_to_closed_streams() -> None:
    # Interpreter shutdown collects after the streams are closed: a slow collection's warning
    # then failed with "I/O operation on closed file", printed on stderr.
    script = (
        "import sys\n"
        "from auditlog.runtime import observability, stalls\n"
        "observability.configure_logging('info')\n"
        "stalls.SLOW_SECONDS = 0.0\n"
        "stalls.tune_collector()\n"
        "sys.stdout.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_blocked_loop_is_measured_and_named() -> None:
    async def scenario() -> list[dict[str, object]]:
        stop = asyncio.Event()
        with capture_logs() as logs:
            watcher = asyncio.create_task(stalls.watch_event_loop(stop, tick=0.005))
            await asyncio.sleep(0.02)
            time.sleep(0.12)  # noqa: ASYNC251 - blocking the loop is the point
            await asyncio.sleep(0.02)
            stop.set()
            await asyncio.wait_for(watcher, 1)
        return logs

    before = _count("auditlog_event_loop_lag_seconds")
    logs = asyncio.run(scenario())
    stalled = [e for e in logs if e["event"] == "event_loop_stall"]
    assert stalled
    assert max(float(e["ms"]) for e in stalled) >= 100  # type: ignore[arg-type]
    assert _count("auditlog_event_loop_lag_seconds") > before + 2
