"""Health, readiness and metrics of the running services, on the real Kafka and PostgreSQL.

* Sealers answer /healthz, /readyz and /metrics on their metrics listener: ready once they own
  partitions; every log is reported by exactly one sealer across a rebalance (no stale series),
  so max(topic partitions) - sum(owned partitions) counts the partitions without an owner.
* A sealer whose seals cannot be published (its witness is down) is alive but not ready once
  records waited longer than its bound, names the log, counts the witness's failures, and is
  ready again when the witness is back.
* Ingest's /readyz fails while PostgreSQL is unreachable (every request needs it for tokens).
* ``auditlog audit`` and ``auditlog monitor --once`` write their outcome with ``--textfile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Services
from tests.e2e.conftest import _free_port, stop_processes
from tests.integration.sealer_harness import (
    SealerFleet,
    WitnessProcess,
    produce,
    wait_sealed,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _scrape(port: int) -> Samples:
    status, text = _get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _by_log(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["log"]: v for (n, labels), v in samples.items() if n == name}


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _until(what: str, check: Callable[[], bool], within: float = 60.0) -> None:
    """Poll ``check`` (blocking HTTP) in a thread: the event loop keeps relaying meanwhile."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


def _sealer_env(port: int, **extra: str) -> dict[str, str]:
    return {
        "AUDITLOG_SEALER_METRICS_HOST": "127.0.0.1",
        "AUDITLOG_SEALER_METRICS_PORT": str(port),
        "AUDITLOG_SEALER_READY_MAX_SEAL_AGE": "2",
        **extra,
    }


async def test_sealers_own_every_partition_once_and_report_it(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    logs = {f"{topic}-0", f"{topic}-1"}
    first = _free_port()
    fleet.start(**_sealer_env(first))
    await _until("the first sealer is ready", lambda: _get(first, "/readyz")[0] == 200)
    assert _get(first, "/healthz") == (200, "alive\n")
    assert _get(first, "/readyz")[1] == "ready: 2 partitions\n"

    hashes = await produce(services, topic, 40, "health")
    await wait_sealed(services, topic, len(hashes))

    def caught_up() -> bool:
        samples = _scrape(first)
        entries = _by_log(samples, "auditlog_sealer_log_entries")
        return sum(entries.values()) == 40 and set(
            _by_log(samples, "auditlog_sealer_lag_records").values()
        ) == {0.0}

    await _until("lag 0 and 40 entries reported", caught_up)
    samples = _scrape(first)
    assert _value(samples, "auditlog_sealer_owned_partitions") == 2.0
    assert _value(samples, "auditlog_sealer_topic_partitions") == 2.0
    build = [dict(labels) for (n, labels) in samples if n == "auditlog_build_info"]
    assert [b["service"] for b in build] == ["sealer"] and build[0]["version"] != "unknown"
    ages = _by_log(samples, "auditlog_sealer_checkpoint_age_seconds")
    sealed_at = _by_log(samples, "auditlog_sealer_last_seal_timestamp_seconds")
    assert set(ages) == set(sealed_at) == logs
    assert all(0 <= age < 60 for age in ages.values())
    assert all(abs(time.time() - t) < 60 for t in sealed_at.values())

    # A second member: the partitions are shared, and each log is reported by one sealer.
    second = _free_port()
    fleet.start(**_sealer_env(second))

    def shared() -> bool:
        if _get(second, "/healthz")[0] != 200:
            return False  # still starting
        name = "auditlog_sealer_owned_partitions"
        return [_value(_scrape(p), name) for p in (first, second)] == [1.0, 1.0]

    await _until("one partition each", shared)
    await _until("both ready", lambda: _get(second, "/readyz")[0] == 200)
    a, b = _scrape(first), _scrape(second)
    topic_partitions = max(
        _value(a, "auditlog_sealer_topic_partitions") or 0,
        _value(b, "auditlog_sealer_topic_partitions") or 0,
    )
    owned = (_value(a, "auditlog_sealer_owned_partitions") or 0) + (
        _value(b, "auditlog_sealer_owned_partitions") or 0
    )
    assert topic_partitions - owned == 0  # no partition without an owner
    for name in ("auditlog_sealer_checkpoint_age_seconds", "auditlog_sealer_log_entries"):
        mine, theirs = set(_by_log(a, name)), set(_by_log(b, name))
        assert not mine & theirs and mine | theirs == logs, name


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_a_sealer_that_cannot_publish_is_alive_but_not_ready(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path
) -> None:
    log_id = f"{topic}-0"
    vkey = fleet.key_file.with_suffix(".vkey").read_text().strip()
    witness = WitnessProcess(tmp_path, f"drill.auditlog.test/{topic}/0", vkey)
    witness.start()
    try:
        policy = tmp_path / "policy"
        policy.write_text(f"log {vkey}\nwitness w1 {witness.vkey()} {witness.url}\nquorum w1\n")
        port = _free_port()
        fleet.start(
            **_sealer_env(
                port,
                AUDITLOG_WITNESS_POLICY_FILE=str(policy),
                AUDITLOG_WITNESS_TIMEOUT="0.5",
            )
        )
        first = await produce(services, topic, 20, "witnessed")
        await wait_sealed(services, topic, len(first))
        await _until("ready", lambda: _get(port, "/readyz")[0] == 200)
        ok = _value(_scrape(port), "auditlog_witness_requests_total", witness="w1", result="ok")
        assert ok is not None and ok >= 1
        timed = _value(
            _scrape(port), "auditlog_witness_request_duration_seconds_count", witness="w1"
        )
        assert timed is not None and timed >= ok

        witness.stop()
        more = await produce(services, topic, 10, "while the witness is down")
        await _until("not ready", lambda: _get(port, "/readyz")[0] == 503)
        _, reason = _get(port, "/readyz")
        assert "records wait unsealed for over 2 s" in reason and log_id in reason
        assert _get(port, "/healthz")[0] == 200  # alive: a restart would not help
        samples = _scrape(port)
        failed = _value(samples, "auditlog_witness_requests_total", witness="w1", result="failed")
        assert failed is not None and failed >= 1
        assert (_by_log(samples, "auditlog_sealer_lag_records").get(log_id) or 0) > 0
        assert _by_log(samples, "auditlog_sealer_checkpoint_age_seconds")[log_id] > 2

        witness.start()
        await wait_sealed(services, topic, len(first) + len(more))
        await _until("ready again", lambda: _get(port, "/readyz")[0] == 200)
    finally:
        witness.stop()


@contextlib.asynccontextmanager
async def _proxy(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """A TCP relay from 127.0.0.1:``port`` to ``target``; leaving it drops every connection."""
    open_writers: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        open_writers.update((client_w, server_w))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in open_writers:
            writer.close()
        await server.wait_closed()


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``auditlog <command>``, its output in ``log``; readiness is each test's to wait for."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_ingest_is_not_ready_while_postgresql_is_unreachable(
    services: Services, tmp_path: Path
) -> None:
    db = urlsplit(services.database_url)
    relay_port, api_port, metrics_port = _free_port(), _free_port(), _free_port()
    relayed = services.database_url.replace(f"{db.hostname}:{db.port}", f"127.0.0.1:{relay_port}")
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": relayed,
        "AUDITLOG_TOPIC": services.topic,
        "AUDITLOG_PORT": str(api_port),
        "AUDITLOG_INGEST_METRICS_PORT": str(metrics_port),
    }
    target = (db.hostname or "127.0.0.1", db.port or 5432)
    async with _proxy(relay_port, target):
        proc = _start("ingest", env, tmp_path / "ingest.log")
        try:
            await _until("ingest ready", lambda: _get(api_port, "/readyz")[0] == 200)
            # /metrics is on the listener, not on the API port.
            metrics = await asyncio.to_thread(_scrape, metrics_port)
            build = [dict(labels) for (n, labels) in metrics if n == "auditlog_build_info"]
            assert [b["service"] for b in build] == ["ingest"]
            assert (await asyncio.to_thread(_get, api_port, "/metrics"))[0] == 404
        except BaseException:
            await asyncio.to_thread(stop_processes, [proc])
            raise
    try:
        # The relay is gone: PostgreSQL cannot be reached, Kafka still can.
        await _until("ingest not ready", lambda: _get(api_port, "/readyz")[0] == 503, 30)
        _, body = await asyncio.to_thread(_get, api_port, "/readyz")
        assert "PostgreSQL is not reachable" in body and "Kafka" not in body
        async with _proxy(relay_port, target):
            await _until("ingest ready again", lambda: _get(api_port, "/readyz")[0] == 200, 30)
    finally:
        # From a thread: ingest closes its pool as it stops, through the relay this loop runs.
        await asyncio.to_thread(stop_processes, [proc])


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


async def test_audit_and_monitor_write_their_outcome_for_the_textfile_collector(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path
) -> None:
    logs = [f"{topic}-0", f"{topic}-1"]
    vkey = str(fleet.key_file.with_suffix(".vkey"))
    fleet.start()
    hashes = await produce(services, topic, 30, "textfile")
    await wait_sealed(services, topic, len(hashes))

    audit_prom = tmp_path / "audit.prom"
    only = [f"--log={log}" for log in logs]
    audit = await asyncio.to_thread(
        _run_cli, "audit", "--database-url", services.database_url, "--key", vkey,
        "--no-state", "--no-progress", *only, "--textfile", str(audit_prom),
    )  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr
    metrics = {
        s.name: s.value
        for family in text_string_to_metric_families(audit_prom.read_text())
        for s in family.samples
    }
    assert metrics["auditlog_audit_last_run_success"] == 1.0
    assert metrics["auditlog_audit_entries_checked"] == 30.0
    assert metrics["auditlog_audit_logs_checked"] == 2.0
    assert abs(metrics["auditlog_audit_last_run_timestamp_seconds"] - time.time()) < 120

    port = _free_port()
    env = {
        **os.environ,
        "AUDITLOG_DATABASE_URL": services.database_url,
        "AUDITLOG_TOPIC": topic,
        "AUDITLOG_PORT": str(port),
    }
    query = _start("query", env, tmp_path / "query.log")
    try:
        await _until("query ready", lambda: _get(port, "/readyz")[0] == 200)
        monitor_prom = tmp_path / "monitor.prom"
        monitor = await asyncio.to_thread(
            _run_cli, "monitor", "--url", f"http://127.0.0.1:{port}", "--key", vkey,
            "--no-state", "--once", *only, "--textfile", str(monitor_prom),
        )  # fmt: skip
        assert monitor.returncode == 0, monitor.stdout + monitor.stderr
    finally:
        await asyncio.to_thread(stop_processes, [query])
    metrics = {
        s.name: s.value
        for family in text_string_to_metric_families(monitor_prom.read_text())
        for s in family.samples
    }
    assert metrics["auditlog_monitor_last_run_success"] == 1.0
    assert metrics["auditlog_monitor_logs_checked"] == 2.0
