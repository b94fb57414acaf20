"""The forwarder against real PostgreSQL, Kafka-sealed logs, a real rsyslog from Debian's
packages, and small real HTTP receivers: every destination gets exactly the sealed events, in
index order per log, with the documented fields; failures are retried, refusals dead-lettered,
filters applied; pause, resume and replay work from the command line."""

from __future__ import annotations

import gzip
import hashlib
import secrets
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from auditlog.core.envelope import canonical_json
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteVerifier
from auditlog.core.receipt import Receipt, verify_receipt
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

SECRET = "webhook-secret-" + secrets.token_hex(8)
HEC_TOKEN = "hec-" + secrets.token_hex(8)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    need_rsyslog()
    receiver = Rsyslog(tmp_path / "rsyslog")
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    server = Receivers(SECRET.encode(), HEC_TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def forwarders(services: Services, topic: str, tmp_path: Path) -> AsyncIterator[Forwarders]:
    fwd = Forwarders(
        services, topic, tmp_path, tmp_path / "destinations.toml",
        extra_env={"FWD_SECRET": SECRET, "FWD_HEC_TOKEN": HEC_TOKEN},
    )  # fmt: skip
    yield fwd
    await fwd.aclose()


async def sealed(services: Services, topic: str, fleet: SealerFleet, n: int, tag: str) -> None:
    fleet.start()
    await produce(services, topic, n, tag)
    await wait_sealed(services, topic, n)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def test_every_destination_gets_the_sealed_events_in_order(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    rsyslog: Rsyslog,
    receivers: Receivers,
    forwarders: Forwarders,
    tmp_path: Path,
) -> None:
    await sealed(services, topic, fleet, 600, "fwd")
    expected = await sealed_events(services, topic)
    refused = expected[5].hash  # the webhook refuses this one event for good
    receivers.refuse.add(refused)
    receivers.fail_next = 3  # and the first three HTTP requests meet a busy server
    files = tmp_path / "files"
    tag = secrets.token_hex(3)
    forwarders.destinations.write_text(f"""
[[destination]]
name = "tls-{tag}"
kind = "syslog"
host = "127.0.0.1"
port = {rsyslog.tls_port}
tls = true
ca_file = "{rsyslog.directory}/ca.pem"
hostname = "fwd.test"
batch_size = 97

[[destination]]
name = "mtls-{tag}"
kind = "syslog"
host = "127.0.0.1"
port = {rsyslog.mtls_port}
tls = true
ca_file = "{rsyslog.directory}/ca.pem"
cert_file = "{rsyslog.directory}/client.pem"
key_file = "{rsyslog.directory}/client.key"
server_name = "localhost"
hostname = "mtls.test"

[[destination]]
name = "tcp-{tag}"
kind = "syslog"
host = "127.0.0.1"
port = {rsyslog.tcp_port}
tenants = ["t1", "t2", "t3"]
query = 'actor:user-1 OR actor:user-2'

[[destination]]
name = "hook-{tag}"
kind = "webhook"
url = "{receivers.url}/hook"
secret_env = "FWD_SECRET"
batch_size = 50
receipts = true

[[destination]]
name = "files-{tag}"
kind = "file"
directory = "{files}"
max_bytes = 20000

[[destination]]
name = "hec-{tag}"
kind = "splunk_hec"
url = "{receivers.url}"
token_env = "FWD_HEC_TOKEN"
ack = true
index = "audit"

[[destination]]
name = "otlp-{tag}"
kind = "otlp"
url = "{receivers.url}/v1/logs"
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    forwarders.start(AUDITLOG_FORWARD_METRICS_PORT=str(metrics_port))
    everything = [e for e in expected if e.hash != refused]
    filtered = [
        e for e in expected
        if e.tenant in ("t1", "t2", "t3") and orjson.loads(e.envelope)["event"]["actor"]
        in ("user-1", "user-2")
    ]  # fmt: skip
    assert filtered
    syslog_total = 2 * len(expected) + len(filtered)
    await wait_for(lambda: len(rsyslog.messages()) >= syslog_total, "syslog", forwarders=forwarders)
    await wait_for(lambda: len(first_seen(receivers.webhook)) >= len(everything), "webhook",
                   forwarders=forwarders)  # fmt: skip
    await wait_for(lambda: len(first_seen(receivers.hec)) >= len(expected), "hec",
                   forwarders=forwarders)  # fmt: skip
    await wait_for(lambda: len(first_seen(receivers.otlp)) >= len(expected), "otlp",
                   forwarders=forwarders)  # fmt: skip

    # syslog: exactly the sealed events, in order, the envelope as MSG byte for byte.
    by_hash = {e.hash: e for e in expected}
    messages = rsyslog.messages()

    # Both destinations write to the same file; the TCP one gets only what its filter admits.
    def got(hostname: str) -> list[tuple[str, int, str]]:
        return [(m["log"], m["index"], m["hash"]) for m in messages if m["hostname"] == hostname]

    assert_in_order(got("fwd.test"), expected)
    assert_in_order(got("mtls.test"), expected)  # with a client certificate
    assert_in_order(got("-"), filtered)
    for m in messages:
        sealed_one = by_hash[m["hash"]]
        assert m["msg"] == sealed_one.envelope
        assert hashlib.sha256(m["msg"]).hexdigest() == m["hash"]
        assert (m["log"], m["index"]) == (sealed_one.log_id, sealed_one.index)
        assert m["app"] == "auditlog"
        assert m["msgid"] == "event"
        assert m["pri"] == 13 * 8 + 6
        assert m["timestamp"] == orjson.loads(sealed_one.envelope)["received_at"]

    # webhook: every signature verified; the refused event dead-lettered, nothing else lost.
    assert receivers.bad_signatures == 0
    assert_in_order(receivers.webhook, everything)
    verifier = NoteVerifier.from_vkey(fleet.key_file.with_suffix(".vkey").read_text().strip())
    hasher = get_hasher("rfc6962-sha256")
    for body in receivers.webhook_bodies:
        for event in body["events"]:
            canonical = canonical_json(event["envelope"])
            assert canonical == by_hash[event["hash"]].envelope
            # Each event's receipt verifies offline against the log's key.
            verified = verify_receipt(
                Receipt.from_text(event["receipt"]), canonical, [verifier], hasher
            )
            assert verified.index == event["index"]
    conn = await asyncpg.connect(services.database_url)
    try:
        dead = await conn.fetch(
            "SELECT log_id, idx, event_hash, reason FROM forward_dead_letters"
            " WHERE destination = $1",
            f"hook-{tag}",
        )
    finally:
        await conn.close()
    assert [bytes(d["event_hash"]).hex() for d in dead] == [refused]
    assert "422" in dead[0]["reason"]

    # HEC (acknowledged) and OTLP.
    assert_in_order(receivers.hec, expected)
    assert all(e["index"] == "audit" and e["sourcetype"] == "auditlog:event"
               for e in receivers.hec_events)  # fmt: skip
    assert_in_order(receivers.otlp, expected)
    assert {b.encode() for b in receivers.otlp_bodies} == {e.envelope for e in expected}

    # files: rotated gzip files plus the current one hold every event, in order per log.
    await wait_for(lambda: _file_lines(files) >= len(expected), "files", forwarders=forwarders)
    rotated = sorted(files.glob("events-*.jsonl.gz"))
    assert len(rotated) >= 2
    lines = [
        orjson.loads(line)
        for path in [*rotated, *sorted(files.glob("current-*.jsonl"))]
        for line in (gzip.decompress(path.read_bytes()) if path.suffix == ".gz"
                     else path.read_bytes()).splitlines()
    ]  # fmt: skip
    assert_in_order([(x["log"], x["index"], x["hash"]) for x in lines], expected)

    # metrics and the command line agree: nothing left to deliver, the retries counted.
    text = _metrics(metrics_port)
    assert f'auditlog_forward_rejected_events_total{{destination="hook-{tag}"}} 1.0' in text
    # The three 503s went to whichever HTTP destinations asked first; each was retried.
    retries = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("auditlog_forward_retries_total{") and tag in line
    ]
    assert sum(retries) == 3
    await caught_up(services, f"%-{tag}")  # the last cursors move just after the answers
    status = cli(services, "status")
    assert status.returncode == 0, status.stderr
    rows = [line.split("\t") for line in status.stdout.splitlines()[1:]]
    mine = [r for r in rows if r[0].endswith(tag)]
    assert len(mine) == 7 * 2  # every destination, both logs
    assert all(r[6] == "0" for r in mine), status.stdout
    assert forwarders.events("delivered")


def _file_lines(directory: Path) -> int:
    total = 0
    for path in directory.glob("events-*.jsonl.gz"):
        total += gzip.decompress(path.read_bytes()).count(b"\n")
    for path in directory.glob("current-*.jsonl"):
        total += path.read_bytes().count(b"\n")
    return total
