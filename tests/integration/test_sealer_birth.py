"""Logs are born with a signed checkpoint of size 0 (sealer/store.py, load_head), as Tessera's are.

A fresh deployment whose sealers created their logs and sealed nothing yet audits clean, from
the database and through the read API, and a monitor follows it from size 0; an emptied log is
still caught. Each test works in a database of its own, so an audit of every log in it sees only
the test's logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner, NoteVerifier, open_note
from auditlog.core.policy import parse_policy
from auditlog.kafka.clients import dlq_topic, ensure_topics
from sealer.store import Partitions, Witnessing, connect_pool, load_head, seal
from tests.conftest import Services, delete_topics, scratch_database
from tests.integration.sealer_harness import SealerFleet, WitnessProcess, produce, wait_sealed
from tests.integration.test_sealer_drills import _item

pytestmark = pytest.mark.integration

ORIGIN = "birth.auditlog.test"


@pytest.fixture
def fresh(services: Services) -> Iterator[Services]:
    """A migrated database of its own, and a topic of two partitions."""
    suffix = secrets.token_hex(4)
    topic = f"{services.topic}.birth{suffix}"
    with scratch_database(services.database_url, f"auditlog_birth_{suffix}") as url:
        asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=2))
        try:
            yield Services(services.kafka_bootstrap, url, topic)
        finally:
            asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "log.skey"
    write_signing_key(path, ORIGIN)
    return path


@pytest.fixture
def signer(key: Path) -> NoteSigner:
    return NoteSigner.from_skey(key.read_text().strip())


def _cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    return proc.returncode, proc.stdout, proc.stderr


def _audit(tmp_path: Path, key: Path, *source: str, state: str = "audit.json") -> dict[str, Any]:
    rc, out, err = _cli(
        tmp_path, "audit", *source, "--key", str(key.with_suffix(".vkey")), "--json",
        "--no-progress", "--state", str(tmp_path / state),
    )  # fmt: skip
    assert out.startswith("{"), out + err
    report: dict[str, Any] = json.loads(out)
    report["rc"] = rc
    return report


async def _logs(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(
            await conn.fetch(
                "SELECT l.log_id, l.hash_scheme, l.size, l.checkpoint, c.note FROM logs l"
                " LEFT JOIN checkpoints c ON c.log_id = l.log_id AND c.size = 0 ORDER BY l.log_id"
            )
        )
    finally:
        await conn.close()


async def _wait_logs(url: str, n: int, within: float = 60) -> list[asyncpg.Record]:
    deadline = time.monotonic() + within
    while len(rows := await _logs(url)) < n:
        assert time.monotonic() < deadline, f"only {len(rows)} of {n} logs created"
        await asyncio.sleep(0.2)
    return rows


def _start_query(fresh: Services, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AUDITLOG_DATABASE_URL": fresh.database_url,
        "AUDITLOG_TOPIC": fresh.topic,
        "AUDITLOG_PORT": str(port),
    }
    with (tmp_path / "query.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "query"], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"auditlog query did not start:\n{(tmp_path / 'query.log').read_text()[-3000:]}")


async def test_a_fresh_deployment_audits_clean_before_its_first_event(
    fresh: Services, key: Path, signer: NoteSigner, tmp_path: Path
) -> None:
    fleet = SealerFleet(fresh, fresh.topic, key, tmp_path)
    verifier = NoteVerifier.from_vkey(signer.vkey())
    query = None
    try:
        fleet.start()
        # The other schemes' logs, born the way the sealer makes them.
        pool = await connect_pool(fresh.database_url, max_size=2)
        try:
            for scheme in ("rfc6962-blake3", "pangea-sha256"):
                await load_head(pool, f"{fresh.topic}.{scheme}", 0, ORIGIN, get_hasher(scheme),
                                signer=signer)  # fmt: skip
        finally:
            await pool.close()
        rows = await _wait_logs(fresh.database_url, 4)
        for row in rows:
            assert row["size"] == 0
            assert row["checkpoint"] == row["note"]  # published head and history agree
            born = Checkpoint.from_text(open_note(row["note"], [verifier]).text)
            assert (born.size, born.root) == (0, get_hasher(row["hash_scheme"]).empty_root())

        before = _audit(tmp_path, key, "--database-url", fresh.database_url)
        assert before["rc"] == 0, before
        assert before["findings"] == []
        assert (
            sorted((e["size"], e["checkpoints_verified"]) for e in before["logs"]) == [(0, 1)] * 4
        )

        query, base = _start_query(fresh, tmp_path)
        api = _audit(tmp_path, key, "--url", base, state="audit-api.json")
        assert api["rc"] == 0, api
        monitor = ["monitor", "--url", base, "--key", str(key.with_suffix(".vkey")), "--once",
                   "--state", str(tmp_path / "monitor.json")]  # fmt: skip
        rc, out, err = _cli(tmp_path, *monitor)
        assert rc == 0, out + err

        # The first events extend the birth checkpoint: the audit, from its remembered state,
        # and the monitor both follow from size 0.
        hashes = await produce(fresh, fresh.topic, 300, "born")
        await wait_sealed(fresh, fresh.topic, len(hashes))
        after = _audit(tmp_path, key, "--database-url", fresh.database_url)
        assert after["rc"] == 0, after
        assert sum(e["size"] for e in after["logs"]) == len(hashes)
        rc, out, err = _cli(tmp_path, *monitor)
        assert rc == 0, out + err
    finally:
        fleet.close()
        if query is not None:
            query.terminate()
            query.wait(20)


async def test_an_emptied_log_is_still_caught(
    fresh: Services, key: Path, signer: NoteSigner, tmp_path: Path
) -> None:
    hasher = get_hasher("rfc6962-sha256")
    pool = await connect_pool(fresh.database_url, max_size=2)
    try:
        head = await load_head(pool, fresh.topic, 0, ORIGIN, hasher, signer=signer)
        items = [_item(i) for i in range(10)]
        await Partitions().ensure(pool, head.log_id, [i.received_us for i in items])
        async with pool.acquire() as conn:
            await seal(conn, head, hasher, signer, items, 10)
        log_id = head.log_id
    finally:
        await pool.close()
    sealed = _audit(tmp_path, key, "--database-url", fresh.database_url)
    assert sealed["rc"] == 0, sealed

    async def empty(*, history: bool) -> None:
        conn = await asyncpg.connect(fresh.database_url)
        try:
            async with conn.transaction():
                for table in ("events", "tiles", "bundles"):
                    await conn.execute(f"DELETE FROM {table} WHERE log_id = $1", log_id)
                if history:
                    await conn.execute(
                        "DELETE FROM checkpoints WHERE log_id = $1 AND size > 0", log_id
                    )
                await conn.execute(
                    "UPDATE logs SET size = 0, next_offset = 0, root = c.root, checkpoint = c.note"
                    " FROM checkpoints c WHERE c.log_id = logs.log_id AND c.size = 0"
                    " AND logs.log_id = $1",
                    log_id,
                )
        finally:
            await conn.close()

    # Rows, tiles and head reset to the birth checkpoint: the checkpoints signed since name it.
    await empty(history=False)
    report = _audit(tmp_path, key, "--database-url", fresh.database_url, state="other.json")
    assert report["rc"] == 1, report
    assert "rollback" in {f["kind"] for f in report["findings"] if f["log"] == log_id}
    # The history deleted too: what an earlier audit remembered still names it.
    await empty(history=True)
    report = _audit(tmp_path, key, "--database-url", fresh.database_url)
    assert report["rc"] == 1, report
    assert "rollback" in {f["kind"] for f in report["findings"] if f["log"] == log_id}


async def test_a_witnessed_log_is_born_cosigned_or_without_a_checkpoint(
    fresh: Services, key: Path, signer: NoteSigner, tmp_path: Path
) -> None:
    hasher = get_hasher("rfc6962-sha256")
    origin = f"{ORIGIN}/{fresh.topic}/0"
    witness = WitnessProcess(tmp_path, origin, signer.vkey())
    witness.start()
    try:
        text = f"log {signer.vkey()}\nwitness w1 {witness.vkey()} {witness.url}\nquorum w1\n"
        policy = parse_policy(text)
        pool = await connect_pool(fresh.database_url, max_size=2)
        try:
            born = await load_head(pool, fresh.topic, 0, ORIGIN, hasher, signer=signer,
                                   witnessing=Witnessing(policy, 2.0))  # fmt: skip
            witness.stop()  # no quorum for the next birth
            orphan = await load_head(pool, fresh.topic, 1, ORIGIN, hasher, signer=signer,
                                     witnessing=Witnessing(policy, 0.5))  # fmt: skip
        finally:
            await pool.close()
    finally:
        witness.stop()
    rows = {r["log_id"]: r for r in await _logs(fresh.database_url)}
    note = rows[born.log_id]["checkpoint"]
    assert note == rows[born.log_id]["note"]
    assert set(policy.verify(note, origin=origin).cosigners) == {"w1"}
    assert policy.verify(note, origin=origin).checkpoint.size == 0
    # Never published unwitnessed: the log waits for its first seal to publish a checkpoint.
    assert (rows[orphan.log_id]["checkpoint"], rows[orphan.log_id]["note"]) == (None, None)
