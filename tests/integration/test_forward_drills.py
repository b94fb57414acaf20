"""Forwarder drills on real Kafka, PostgreSQL and rsyslog: a destination down for a while, the
forwarder killed -9 mid-batch, a destination paused, resumed and replayed. Each ends with every
sealed event delivered, first arrivals in index order per log, nothing missing."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from auditlog.pg.forward_holds import undelivered_from
from tests.conftest import Services
from tests.integration.forward_harness import (
    Forwarders,
    Receivers,
    Rsyslog,
    assert_in_order,
    caught_up,
    cli,
    first_seen,
    need_rsyslog,
    sealed_events,
    wait_for,
)
from tests.integration.sealer_harness import SealerFleet, produce, wait_sealed

pytestmark = pytest.mark.integration

SECRET = "drill-secret-" + secrets.token_hex(8)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    server = Receivers(SECRET.encode(), "unused")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def forwarders(services: Services, topic: str, tmp_path: Path) -> AsyncIterator[Forwarders]:
    fwd = Forwarders(
        services, topic, tmp_path, tmp_path / "destinations.toml",
        extra_env={"FWD_SECRET": SECRET},
    )  # fmt: skip
    yield fwd
    await fwd.aclose()


def _webhook(name: str, receivers: Receivers, batch: int = 100) -> str:
    return f"""
[[destination]]
name = "{name}"
kind = "webhook"
url = "{receivers.url}/hook"
secret_env = "FWD_SECRET"
batch_size = {batch}
"""


async def test_rsyslog_down_for_a_while_then_back(
    services: Services, topic: str, fleet: SealerFleet, forwarders: Forwarders, tmp_path: Path
) -> None:
    need_rsyslog()
    rsyslog = Rsyslog(tmp_path / "rsyslog")
    rsyslog.start()
    try:
        fleet.start()
        await produce(services, topic, 1500, "down")
        await wait_sealed(services, topic, 1500)
        forwarders.destinations.write_text(f"""
[[destination]]
name = "down-{secrets.token_hex(3)}"
kind = "syslog"
host = "127.0.0.1"
port = {rsyslog.tls_port}
tls = true
ca_file = "{rsyslog.directory}/ca.pem"
batch_size = 50
""")
        forwarders.start()
        await wait_for(lambda: len(rsyslog.messages()) >= 300, "first deliveries")
        rsyslog.stop()
        # Sealing goes on while the destination is away.
        await produce(services, topic, 500, "while-down")
        await wait_sealed(services, topic, 2000)
        await wait_for(lambda: len(forwarders.events("delivery_failed")) >= 3, "retries",
                       forwarders=forwarders)  # fmt: skip
        rsyslog.start()  # the same ports
        expected = await sealed_events(services, topic)
        await wait_for(
            lambda: len(first_seen(_got(rsyslog))) >= len(expected), "all of it", 90, forwarders
        )
        assert_in_order(_got(rsyslog), expected)
        for message in rsyslog.messages():
            assert orjson.loads(message["msg"])  # whole envelopes, never a torn message
    finally:
        rsyslog.stop()


def _got(rsyslog: Rsyslog) -> list[tuple[str, int, str]]:
    return [(m["log"], m["index"], m["hash"]) for m in rsyslog.messages()]


async def test_forwarder_killed_minus_nine_mid_batch_resumes_from_its_cursor(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    receivers: Receivers,
    forwarders: Forwarders,
    tmp_path: Path,
) -> None:
    fleet.start()
    await produce(services, topic, 1500, "kill")
    await wait_sealed(services, topic, 1500)
    name = f"kill-{secrets.token_hex(3)}"
    files = tmp_path / "files"
    forwarders.destinations.write_text(
        _webhook(name, receivers)
        + f"""
[[destination]]
name = "{name}-files"
kind = "file"
directory = "{files}"
batch_size = 100
"""
    )
    receivers.delay = 0.2  # every request is in flight for a while: the kill lands mid-batch
    victim = forwarders.start()
    await wait_for(lambda: len(receivers.webhook) >= 300, "first batches", forwarders=forwarders)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    await produce(services, topic, 500, "after")
    await wait_sealed(services, topic, 2000)
    receivers.delay = 0.0
    forwarders.start()  # takes the cursors over once the dead one's leases end
    expected = await sealed_events(services, topic)
    await wait_for(lambda: len(first_seen(receivers.webhook)) >= len(expected), "all of it", 90,
                   forwarders)  # fmt: skip
    assert_in_order(receivers.webhook, expected)
    # At most the batch under way when killed (one per log) arrives twice.
    assert len(receivers.webhook) - len(expected) <= 2 * 100

    def written() -> list[tuple[str, int, str]]:
        lines = [
            orjson.loads(line)
            for path in sorted(files.glob("current-*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]
        return [(x["log"], x["index"], x["hash"]) for x in lines]

    # The file destination has cursors of its own: it may finish after the webhook.
    await wait_for(lambda: len(first_seen(written())) >= len(expected), "the files", 90,
                   forwarders)  # fmt: skip
    assert_in_order(written(), expected)
    lags = await caught_up(services, f"{name}%")
    assert len(lags) == 2 * len({e.log_id for e in expected})  # both destinations, every log


async def test_pause_resume_and_replay(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    receivers: Receivers,
    forwarders: Forwarders,
) -> None:
    fleet.start()
    await produce(services, topic, 300, "pause")
    await wait_sealed(services, topic, 300)
    name = f"steer-{secrets.token_hex(3)}"
    forwarders.destinations.write_text(_webhook(name, receivers, batch=40))
    forwarders.start()
    first = await sealed_events(services, topic)
    await wait_for(
        lambda: len(receivers.webhook) >= len(first), "first events", forwarders=forwarders
    )

    paused = cli(services, "pause", name)
    assert paused.returncode == 0, paused.stderr
    await produce(services, topic, 200, "paused")
    await wait_sealed(services, topic, 500)
    before = len(receivers.webhook)
    await asyncio.sleep(1.0)  # ten poll intervals
    assert len(receivers.webhook) == before, "a paused destination received events"
    # What retention must keep: each log from the paused destination's cursor on.
    conn = await asyncpg.connect(services.database_url)
    try:
        holds = await undelivered_from(conn, [name])
        sizes = dict(await conn.fetch("SELECT log_id, size FROM logs WHERE topic = $1", topic))
    finally:
        await conn.close()
    delivered = Counter(lg for lg, _, _ in receivers.webhook)
    # (Logs of other tests' topics, which this destination never reached, it holds whole.)
    assert {log_id: holds[log_id] for log_id in sizes} == {
        log_id: delivered[log_id] for log_id in sizes
    }
    assert all(holds[log_id] < sizes[log_id] for log_id in sizes)
    assert all(v == 0 for log_id, v in holds.items() if log_id not in sizes)
    resumed = cli(services, "resume", name)
    assert resumed.returncode == 0, resumed.stderr
    expected = await sealed_events(services, topic)
    await wait_for(lambda: len(receivers.webhook) >= len(expected), "after resume",
                   forwarders=forwarders)  # fmt: skip
    assert_in_order(receivers.webhook, expected)

    # Replay one log from index 10: its events from 10 on arrive again, in order.
    log_id = expected[0].log_id
    again = [e for e in expected if e.log_id == log_id and e.index >= 10]
    mark = len(receivers.webhook)
    replay = cli(services, "replay", name, "--from-index", "10", "--log", log_id)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.split() == [name, log_id, "from", "10"]
    await wait_for(lambda: len(receivers.webhook) - mark >= len(again), "replay",
                   forwarders=forwarders)  # fmt: skip
    assert receivers.webhook[mark:] == [(e.log_id, e.index, e.hash) for e in again]

    # Replay by time: from the received time of an event on, in every log.
    pivot = expected[len(expected) // 2]
    since = orjson.loads(pivot.envelope)["received_at"]
    mark = len(receivers.webhook)
    by_time = cli(services, "replay", name, "--from-time", since)
    assert by_time.returncode == 0, by_time.stderr
    wanted = [e for e in expected if orjson.loads(e.envelope)["received_at"] >= since]
    await wait_for(lambda: len(receivers.webhook) - mark >= len(wanted), "replay by time",
                   forwarders=forwarders)  # fmt: skip
    assert_in_order(receivers.webhook[mark:], wanted)

    assert cli(services, "pause", "no-such-destination").returncode == 1

    # Forgotten while a forwarder still has it: it starts again, from the beginning.
    mark = len(receivers.webhook)
    assert cli(services, "forget", name).returncode == 0
    await wait_for(lambda: len(receivers.webhook) - mark >= len(expected), "after forget",
                   forwarders=forwarders)  # fmt: skip
    assert_in_order(receivers.webhook[mark:], expected)


def _delivered_logs(path: Path) -> set[str]:
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)
            if entry.get("event") == "delivered":
                found.add(entry["log"])
    return found


@pytest.mark.parametrize("topic", [4], indirect=True)
async def test_two_forwarders_share_the_logs_and_one_takes_over(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    receivers: Receivers,
    forwarders: Forwarders,
    tmp_path: Path,
) -> None:
    fleet.start()
    await produce(services, topic, 800, "share")
    await wait_sealed(services, topic, 800)
    expected = await sealed_events(services, topic)
    logs = {e.log_id for e in expected}
    assert len(logs) >= 3
    forwarders.destinations.write_text(_webhook(f"share-{secrets.token_hex(3)}", receivers, 20))
    receivers.delay = 0.1  # 40 batches: a few seconds of work to share
    first, second = forwarders.start(), forwarders.start()
    # Each process starts alone with everything, and hands over what is the other's once it
    # sees it (a process starting takes a second or more on a busy machine).
    logs_of = [tmp_path / f"forward-{i}.log" for i in (0, 1)]
    await wait_for(lambda: all(_delivered_logs(p) for p in logs_of), "both at work",
                   forwarders=forwarders)  # fmt: skip
    assert len(first_seen(receivers.webhook)) < len(expected), "all done before sharing"
    first.send_signal(signal.SIGTERM)  # a clean stop releases its cursors at once
    await asyncio.to_thread(first.wait, 30)  # the receiver runs on this loop: keep it going
    receivers.delay = 0.0
    await wait_for(lambda: len(first_seen(receivers.webhook)) >= len(expected), "all of it", 90,
                   forwarders)  # fmt: skip
    assert_in_order(receivers.webhook, expected)
    assert _delivered_logs(tmp_path / "forward-1.log") == logs  # it took the others over
    assert second.poll() is None


async def test_entries_retention_dropped_are_passed_over(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    receivers: Receivers,
    forwarders: Forwarders,
) -> None:
    fleet.start()
    await produce(services, topic, 300, "pruned")
    await wait_sealed(services, topic, 300)
    before = await sealed_events(services, topic)
    first, second = sorted({e.log_id for e in before})
    # What retention leaves: a log without its oldest entries, a log without any.
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute("DELETE FROM events WHERE log_id = $1 AND idx < 50", first)
        await conn.execute("DELETE FROM events WHERE log_id = $1", second)
    finally:
        await conn.close()
    expected = await sealed_events(services, topic)
    assert {e.log_id for e in expected} == {first}
    name = f"pruned-{secrets.token_hex(3)}"
    # A destination that starts at the head receives none of what was sealed before it.
    late = _webhook(f"{name}-late", receivers).replace(
        'kind = "webhook"', 'kind = "webhook"\nstart = "end"'
    )
    forwarders.destinations.write_text(_webhook(name, receivers, batch=40) + late)
    forwarders.start()
    await wait_for(
        lambda: len(receivers.webhook) >= len(expected), "the rest", forwarders=forwarders
    )
    assert_in_order(receivers.webhook, expected)
    lags = await caught_up(services, f"{name}%")
    assert sorted(lags) == sorted(
        (dest, log_id) for dest in (name, f"{name}-late") for log_id in (first, second)
    )
    assert len(receivers.webhook) == len(expected)  # nothing for the late one
    assert forwarders.events("entries_gone")
