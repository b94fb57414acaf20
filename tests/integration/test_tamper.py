"""The tamper suite: damage a really sealed log in PostgreSQL as a DBA could, and audit it.

A pristine database is sealed once with the sealer's own transaction (``sealer.store.seal``,
several batches, so several checkpoints and full, partial and level-1 tiles); each case clones
it (``CREATE DATABASE ... TEMPLATE``), applies its damage in SQL and runs ``auditlog audit`` as a
subprocess. Every case must exit 1 and name the log, index, hash and kind; the second log, which
no case touches, must never be named; the untouched clone must exit 0.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import decode_bundle, encode_bundle
from sealer.records import Sealable
from sealer.store import connect_pool, load_head, seal
from sealer.timestamps import micros
from tests.conftest import Services
from tests.e2e.conftest import _free_port, make_token

pytestmark = pytest.mark.integration

TOPIC = "tamper.test"
LOG = f"{TOPIC}-0"  # the log every case damages
OTHER = f"{TOPIC}-1"  # never touched: must never be named
BATCHES = (100, 156, 60, 300, 1)  # sizes 100, 256, 316, 616, 617
SIZE = sum(BATCHES)
ORIGIN = "tamper.auditlog.test"


def _url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path="/" + name))


def _event(i: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "message": f"event {i}",
        "actor": "alice" if i % 2 else "bob",
        "action": "update",
        "target": f"doc-{i % 7}",
        "status": "ok",
        "tenant_id": f"t{i % 3}",
    }
    if i % 5 == 0:
        event["timestamp"] = f"2025-01-{1 + i % 28:02d}T10:00:00"
    if i % 11 == 0:
        event["new"] = "x" * 10 + str(i)
        event["old"] = "y"
    if i == 42:
        event["new"] = "big " * 20_000  # a digest entry: canonical envelope > 65,535 bytes
    return event


@dataclass(frozen=True)
class Pristine:
    admin_url: str
    template: str
    signer: NoteSigner
    vkey_file: Path
    hashes: dict[tuple[str, int], str]  # (log, index) -> event hash hex
    notes: dict[int, str]  # size -> signed checkpoint of LOG


async def _seal_logs(
    url: str, signer: NoteSigner
) -> tuple[dict[tuple[str, int], str], dict[int, str]]:
    pool = await connect_pool(url, max_size=2)
    hashes: dict[tuple[str, int], str] = {}
    notes: dict[int, str] = {}
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    try:
        for partition, scheme in ((0, "rfc6962-sha256"), (1, "pangea-sha256")):
            hasher = get_hasher(scheme)
            head = await load_head(pool, TOPIC, partition, ORIGIN, hasher)
            index = 0
            for batch in BATCHES:
                items = []
                for _ in range(batch):
                    received = t0 + timedelta(seconds=index)
                    env = Envelope(event=_event(index), received_at=format_received_at(received))
                    hashes[(head.log_id, index)] = env.event_hash.hex()
                    items.append(Sealable(index, env, micros(received), None))
                    index += 1
                async with pool.acquire() as conn:
                    result = await seal(conn, head, hasher, signer, items, index)
                head = result.head
                if partition == 0 and result.checkpoint is not None:
                    notes[head.size] = result.checkpoint
    finally:
        await pool.close()
    return hashes, notes


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pristine(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    from auditlog.pg import db

    admin_url = services.database_url
    template = f"tamper_tpl_{secrets.token_hex(4)}"
    work = tmp_path_factory.mktemp("tamper")
    signer = NoteSigner.generate(ORIGIN)
    vkey_file = work / "log.vkey"
    vkey_file.write_text(signer.vkey() + "\n")

    async def build() -> tuple[dict[tuple[str, int], str], dict[int, str]]:
        await _admin(admin_url, f'CREATE DATABASE "{template}"')
        conn = await asyncpg.connect(_url(admin_url, template))
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        return await _seal_logs(_url(admin_url, template), signer)

    hashes, notes = asyncio.run(build())
    try:
        yield Pristine(admin_url, template, signer, vkey_file, hashes, notes)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))


@pytest.fixture
def clone(pristine: Pristine) -> Iterator[str]:
    """A fresh copy of the pristine sealed database; its URL."""
    name = f"tamper_case_{secrets.token_hex(4)}"
    asyncio.run(
        _admin(pristine.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{pristine.template}"')
    )
    try:
        yield _url(pristine.admin_url, name)
    finally:
        asyncio.run(_admin(pristine.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def damage(url: str, fn: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await fn(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def sql(url: str, statement: str, *args: object) -> None:
    async def apply(conn: asyncpg.Connection) -> None:
        await conn.execute(statement, *args)

    damage(url, apply)


def audit(pristine: Pristine, *args: str, source: list[str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [
            sys.executable, "-m", "auditlog.cli", "audit", *source,
            "--key", str(pristine.vkey_file), "--json", "--no-progress", *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )  # fmt: skip
    report = json.loads(proc.stdout) if proc.stdout.startswith("{") else {}
    return proc.returncode, report, proc.stdout + proc.stderr


def audit_db(pristine: Pristine, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    return audit(pristine, *args, source=["--database-url", url])


def findings(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if kind is None or f["kind"] == kind]


def assert_named(
    report: dict[str, Any], kind: str, index: int | None, digest: str | None
) -> dict[str, Any]:
    for f in report["findings"]:
        if f["kind"] == kind and f["index"] == index and f["log"] == LOG:
            if digest is not None:
                assert f["hash"] == digest, f
            return dict(f)
    pytest.fail(f"no {kind} finding at index {index}: {json.dumps(report['findings'], indent=1)}")


def assert_other_log_clean(report: dict[str, Any]) -> None:
    assert [f for f in report["findings"] if f["log"] != LOG] == []


# -- the untouched log ------------------------------------------------------------------------
def test_untouched_logs_pass(pristine: Pristine, clone: str) -> None:
    rc, report, out = audit_db(pristine, clone)
    assert rc == 0, out
    assert report["ok"] is True
    assert report["findings"] == []
    sizes = {entry["log"]: entry for entry in report["logs"]}
    assert sizes[LOG]["size"] == SIZE and sizes[LOG]["entries_checked"] == SIZE
    assert sizes[LOG]["checkpoints_verified"] == len(BATCHES)
    assert sizes[OTHER]["size"] == SIZE


def test_untouched_log_fails_with_another_key(
    pristine: Pristine, clone: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.vkey"
    other.write_text(NoteSigner.generate(ORIGIN).vkey())
    rc, _, out = audit(pristine, "--log", LOG, source=["--database-url", clone])
    assert rc == 0, out
    proc = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "audit", "--database-url", clone,
         "--key", str(other), "--json", "--log", LOG],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    kinds = {f["kind"] for f in json.loads(proc.stdout)["findings"]}
    assert {"checkpoint-signature", "no-verified-checkpoint"} <= kinds


# -- event rows -------------------------------------------------------------------------------
def test_updated_envelope_bytes(pristine: Pristine, clone: str) -> None:
    sql(
        clone,
        "UPDATE events SET envelope = convert_to(replace(convert_from(envelope, 'UTF8'),"
        " '\"alice\"', '\"mallory\"'), 'UTF8') WHERE log_id = $1 AND idx = 5",
        LOG,
    )
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    original = pristine.hashes[(LOG, 5)]
    assert_named(report, "envelope-hash-mismatch", 5, original)
    assert_named(report, "leaf-mismatch", 5, original)
    # The searchable column still says alice: the envelope and its column disagree too.
    assert "actor" in assert_named(report, "column-mismatch", 5, original)["detail"]
    assert {f["index"] for f in report["findings"]} == {5}
    assert_other_log_clean(report)


def test_updated_envelope_and_its_hash(pristine: Pristine, clone: str) -> None:
    """A careful forger also fixes event_hash and the columns: the tree still names the row."""
    sql(
        clone,
        "UPDATE events SET envelope = convert_to(replace(convert_from(envelope, 'UTF8'),"
        " '\"event 301\"', '\"event 3O1\"'), 'UTF8'), message = 'event 3O1'"
        " WHERE log_id = $1 AND idx = 301",
        LOG,
    )
    sql(
        clone,
        "UPDATE events SET event_hash = sha256(envelope) WHERE log_id = $1 AND idx = 301",
        LOG,
    )
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    forged = findings(report, "leaf-mismatch")
    assert [(f["log"], f["index"]) for f in forged] == [(LOG, 301)]
    assert forged[0]["hash"] != pristine.hashes[(LOG, 301)]  # named by the hash now stored
    assert "envelope-hash-mismatch" not in {f["kind"] for f in report["findings"]}
    assert_other_log_clean(report)


def test_updated_searchable_column_only(pristine: Pristine, clone: str) -> None:
    sql(clone, "UPDATE events SET actor = 'mallory' WHERE log_id = $1 AND idx = 7", LOG)
    sql(clone, "UPDATE events SET event_time = NULL WHERE log_id = $1 AND idx = 10", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    actor = assert_named(report, "column-mismatch", 7, pristine.hashes[(LOG, 7)])
    assert "actor" in actor["detail"] and "mallory" in actor["detail"]
    assert (
        "event_time"
        in assert_named(report, "column-mismatch", 10, pristine.hashes[(LOG, 10)])["detail"]
    )
    assert {f["kind"] for f in report["findings"]} == {"column-mismatch"}


def test_deleted_row(pristine: Pristine, clone: str) -> None:
    sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx = 9", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "missing-entry", 9, pristine.hashes[(LOG, 9)])
    # The deleted leaf is taken from the tiles, so the checkpoints after it still verify.
    assert [f["kind"] for f in report["findings"]] == ["missing-entry"]


def test_deleted_digest_entry_is_named_by_its_event_hash(pristine: Pristine, clone: str) -> None:
    sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx = 42", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "missing-entry", 42, pristine.hashes[(LOG, 42)])


def test_inserted_rows(pristine: Pristine, clone: str) -> None:
    columns = (
        "event_hash, envelope, kafka_offset, tenant_id, actor, action, target, status, source,"
        " message, new_value, old_value, event_time, idempotency_key, config_id"
    )
    copy = (
        f"INSERT INTO events (log_id, idx, received_at, {columns})"
        f" SELECT log_id, $2, received_at + interval '1 second', {columns}"
        " FROM events WHERE log_id = $1 AND idx = 3"
    )
    sql(clone, copy, LOG, SIZE)  # appended beyond the signed size
    sql(clone, copy, LOG, 3)  # a second row for an existing index
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "extra-entry", SIZE, pristine.hashes[(LOG, 3)])
    assert_named(report, "extra-entry", 3, pristine.hashes[(LOG, 3)])
    assert {f["kind"] for f in report["findings"]} == {"extra-entry"}


def test_reordered_by_swapping_indexes(pristine: Pristine, clone: str) -> None:
    sql(
        clone,
        "UPDATE events SET idx = CASE idx WHEN 10 THEN 300 ELSE 10 END"
        " WHERE log_id = $1 AND idx IN (10, 300)",
        LOG,
    )
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    at_10 = assert_named(report, "reordered", 10, pristine.hashes[(LOG, 300)])
    assert "sealed at index 300" in at_10["detail"]
    assert_named(report, "reordered", 300, pristine.hashes[(LOG, 10)])
    assert {f["kind"] for f in report["findings"]} == {"reordered"}


def test_truncated_log(pristine: Pristine, clone: str) -> None:
    sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx >= 500", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    run = assert_named(report, "missing-entry", 500, pristine.hashes[(LOG, 500)])
    assert "500..616 (117 entries)" in run["detail"]
    assert len(report["findings"]) == 1


def test_truncated_table(pristine: Pristine, clone: str) -> None:
    sql(clone, "TRUNCATE events")
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "missing-entry", 0, pristine.hashes[(LOG, 0)])
    assert {(f["log"], f["index"]) for f in report["findings"]} == {(LOG, 0), (OTHER, 0)}


# -- tiles --------------------------------------------------------------------------------------
ZERO = "00" * 32


@pytest.mark.parametrize(
    ("level", "tile", "position", "index"),
    [
        (0, 0, 3, 3),  # a full leaf tile
        (0, 2, 4, 516),  # the partial leaf tile at the right edge
        (1, 0, 1, 256),  # a level-1 hash, covering leaves 256..511
    ],
)
def test_rewritten_tile(
    pristine: Pristine, clone: str, level: int, tile: int, position: int, index: int
) -> None:
    sql(
        clone,
        "UPDATE tiles SET data = overlay(data placing $4 from $5 for 32)"
        " WHERE log_id = $1 AND level = $2 AND idx = $3",
        LOG, level, tile, bytes(32), position * 32 + 1,
    )  # fmt: skip
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    found = assert_named(report, "tile-mismatch", index, ZERO)
    assert f"tile {level}/{tile} position {position}" in found["detail"]
    # The entries are authentic: the stored tile, not the row, is what is named.
    assert {f["kind"] for f in report["findings"]} == {"tile-mismatch"}


def test_rewritten_bundle(pristine: Pristine, clone: str) -> None:
    async def forge(conn: asyncpg.Connection) -> None:
        data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 1", LOG)
        entries = decode_bundle(bytes(data))
        entries[2] = entries[2].replace(b'"bob"', b'"eve"')
        await conn.execute(
            "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 1",
            LOG,
            encode_bundle(entries),
        )

    damage(clone, forge)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "bundle-mismatch", 258, pristine.hashes[(LOG, 258)])


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_replaced_by_another_keys_signature(pristine: Pristine, clone: str) -> None:
    text = pristine.notes[256].split("\n\n")[0] + "\n"
    forged = sign_note(text, [NoteSigner.generate(ORIGIN)])
    sql(clone, "UPDATE checkpoints SET note = $2 WHERE log_id = $1 AND size = 256", LOG, forged)
    sql(clone, "UPDATE logs SET checkpoint = $2 WHERE log_id = $1", LOG, sign_note(
        pristine.notes[SIZE].split("\n\n")[0] + "\n", [NoteSigner.generate(ORIGIN)]
    ))  # fmt: skip
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    root256 = Checkpoint.from_text(text).root.hex()
    assert "checkpoints row" in assert_named(report, "checkpoint-signature", 256, root256)["detail"]
    head = assert_named(report, "checkpoint-signature", SIZE, None)
    assert "published head" in head["detail"]
    assert_other_log_clean(report)


def test_fork_signed_with_the_log_key(pristine: Pristine, clone: str) -> None:
    """A compromised sealer signs a second history: the two checkpoints cannot both hold."""
    fork = Checkpoint(ORIGIN + "/" + TOPIC + "/0", 256, bytes(range(32)))
    note = sign_note(fork.to_text(), [pristine.signer])
    sql(
        clone,
        "UPDATE checkpoints SET note = $2, root = $3 WHERE log_id = $1 AND size = 256",
        LOG, note, fork.root,
    )  # fmt: skip
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    assert_named(report, "inconsistent-checkpoints", 256, fork.root.hex())


def test_entries_rewritten_with_their_tiles(pristine: Pristine, clone: str) -> None:
    """Rows, bundle and leaf tile all forged consistently: only the signatures remain."""
    hasher = get_hasher("rfc6962-sha256")

    async def forge(conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT envelope FROM events WHERE log_id = $1 AND idx = 600", LOG
        )
        forged = bytes(row["envelope"]).replace(b'"event 600"', b'"event 6OO"')
        await conn.execute(
            "UPDATE events SET envelope = $2, event_hash = sha256($2), message = 'event 6OO'"
            " WHERE log_id = $1 AND idx = 600",
            LOG, forged,
        )  # fmt: skip
        leaf = hasher.hash_leaf(forged)
        await conn.execute(
            "UPDATE tiles SET data = overlay(data placing $2 from $3 for 32)"
            " WHERE log_id = $1 AND level = 0 AND idx = 2",
            LOG, leaf, (600 - 512) * 32 + 1,
        )  # fmt: skip
        data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 2", LOG)
        entries = decode_bundle(bytes(data))
        entries[600 - 512] = forged
        await conn.execute(
            "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 2",
            LOG,
            encode_bundle(entries),
        )

    damage(clone, forge)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    for size in (616, 617):
        found = assert_named(report, "checkpoint-root-mismatch", size, None)
        assert "after index 315" in found["detail"]  # 316 is the last size that still verifies
    assert_other_log_clean(report)


def _trimmed_tile(data: bytes, width: int) -> bytes:
    return data[: width * 32]


def test_log_head_rolled_back(pristine: Pristine, clone: str) -> None:
    root = Checkpoint.from_text(pristine.notes[316].split("\n\n")[0] + "\n").root
    sql(
        clone,
        "UPDATE logs SET size = 316, root = $2, checkpoint = $3 WHERE log_id = $1",
        LOG, root, pristine.notes[316],
    )  # fmt: skip
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    found = assert_named(report, "rollback", 316, root.hex())
    assert "size 617" in found["detail"]
    assert_other_log_clean(report)


def test_log_rolled_back_with_its_history_is_caught_by_the_state_file(
    pristine: Pristine, clone: str, tmp_path: Path
) -> None:
    state = tmp_path / "audit-state.json"
    rc, _, out = audit_db(pristine, clone, "--state", str(state))
    assert rc == 0, out
    assert ORIGIN + "/" + TOPIC + "/0" in json.loads(state.read_text())["logs"]

    async def roll_back(conn: asyncpg.Connection) -> None:
        # Everything a DBA would do to make size 316 look like the whole truth.
        root = Checkpoint.from_text(pristine.notes[316].split("\n\n")[0] + "\n").root
        await conn.execute("DELETE FROM events WHERE log_id = $1 AND idx >= 316", LOG)
        await conn.execute("DELETE FROM checkpoints WHERE log_id = $1 AND size > 316", LOG)
        await conn.execute("DELETE FROM tiles WHERE log_id = $1 AND level = 0 AND idx = 2", LOG)
        for level, idx, width in ((0, 1, 60), (1, 0, 1)):
            data = await conn.fetchval(
                "SELECT data FROM tiles WHERE log_id = $1 AND level = $2 AND idx = $3",
                LOG, level, idx,
            )  # fmt: skip
            await conn.execute(
                "UPDATE tiles SET data = $4 WHERE log_id = $1 AND level = $2 AND idx = $3",
                LOG, level, idx, _trimmed_tile(bytes(data), width),
            )  # fmt: skip
        await conn.execute("DELETE FROM bundles WHERE log_id = $1 AND idx = 2", LOG)
        data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 1", LOG)
        await conn.execute(
            "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 1",
            LOG, encode_bundle(decode_bundle(bytes(data))[:60]),
        )  # fmt: skip
        await conn.execute(
            "UPDATE logs SET size = 316, root = $2, checkpoint = $3 WHERE log_id = $1",
            LOG, root, pristine.notes[316],
        )  # fmt: skip

    damage(clone, roll_back)
    # Without memory the rolled-back database is self-consistent...
    rc, report, out = audit_db(pristine, clone)
    assert rc == 0, out
    # ...with the state of the earlier audit it is not.
    rc, report, out = audit_db(pristine, clone, "--state", str(state))
    assert rc == 1, out
    found = assert_named(report, "rollback", 316, None)
    assert "from state" in found["detail"]
    assert_named(report, "missing-entry", 316, None)
    # A failed audit does not move the remembered checkpoint back.
    assert (
        json.loads(state.read_text())["logs"][ORIGIN + "/" + TOPIC + "/0"] == pristine.notes[SIZE]
    )


def test_unknown_log_and_unreachable_database_are_usage_errors(
    pristine: Pristine, clone: str
) -> None:
    rc, _, out = audit_db(pristine, clone, "--log", "no-such-log")
    assert rc == 2 and "no such log" in out
    rc, _, out = audit_db(pristine, "postgresql://nobody@127.0.0.1:1/none")
    assert rc == 2 and "cannot connect" in out


# -- the same audits through the public read API ------------------------------------------------
@pytest.fixture
def query_api(clone: str, services: Services, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`auditlog query` serving the clone; (base URL, token with search scope, clone URL)."""
    import os

    port = _free_port()
    env = {**os.environ, "AUDITLOG_DATABASE_URL": clone, "AUDITLOG_PORT": str(port),
           "AUDITLOG_TOPIC": TOPIC}  # fmt: skip
    token = make_token(Services(services.kafka_bootstrap, clone, TOPIC), {"search"})
    with (tmp_path / "query.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "query"], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("query did not start:\n" + (tmp_path / "query.log").read_text())
            time.sleep(0.2)
        yield base, token, clone
    finally:
        proc.terminate()
        proc.wait(20)


def test_api_audit_of_untouched_logs(pristine: Pristine, query_api: tuple[str, str, str]) -> None:
    base, token, _ = query_api
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 0, out
    assert {entry["log"]: entry["entries_checked"] for entry in report["logs"]} == {
        LOG: SIZE,
        OTHER: SIZE,
    }
    rc, report, out = audit(pristine, source=["--url", base])  # tiles and checkpoint only
    assert rc == 0, out


def test_api_audit_names_a_rewritten_tile_and_bundle(
    pristine: Pristine, query_api: tuple[str, str, str]
) -> None:
    base, token, clone = query_api
    sql(
        clone,
        "UPDATE tiles SET data = overlay(data placing $2 from 33 for 32)"
        " WHERE log_id = $1 AND level = 1 AND idx = 0",
        LOG, bytes(32),
    )  # fmt: skip

    async def forge(conn: asyncpg.Connection) -> None:
        data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 0", LOG)
        entries = decode_bundle(bytes(data))
        entries[17] = entries[17].replace(b'"alice"', b'"mallory"')
        await conn.execute(
            "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 0",
            LOG,
            encode_bundle(entries),
        )

    damage(clone, forge)
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 1, out
    assert_named(report, "tile-mismatch", 256, ZERO)
    leaf = assert_named(report, "leaf-mismatch", 17, None)
    assert leaf["hash"] != pristine.hashes[(LOG, 17)]
    assert_other_log_clean(report)
    # Without a token the bundles are out of reach, but the tile hierarchy is still checked.
    rc, report, out = audit(pristine, source=["--url", base])
    assert rc == 1, out
    assert_named(report, "tile-mismatch", 256, ZERO)


def test_api_audit_catches_a_rollback_with_its_state(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _, clone = query_api
    state = tmp_path / "state.json"
    rc, _, out = audit(pristine, "--state", str(state), source=["--url", base])
    assert rc == 0, out
    root = Checkpoint.from_text(pristine.notes[316].split("\n\n")[0] + "\n").root
    sql(
        clone,
        "UPDATE logs SET size = 316, root = $2, checkpoint = $3 WHERE log_id = $1",
        LOG, root, pristine.notes[316],
    )  # fmt: skip
    rc, report, out = audit(pristine, "--state", str(state), source=["--url", base])
    assert rc == 1, out
    assert_named(report, "rollback", 316, None)


# -- following a log: monitor and verify consistency --------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_verify_consistency_between_signed_checkpoints(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base = query_api[0]
    old, new = tmp_path / "old.note", tmp_path / "new.note"
    old.write_text(pristine.notes[256])
    new.write_text(pristine.notes[SIZE])
    key = str(pristine.vkey_file)
    fetched = cli("verify", "consistency", str(old), str(new), "--key", key, "--url", base)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"size {SIZE}" in fetched.stdout and "extends size 256" in fetched.stdout
    # The endpoint's body is a tlog-witness request body; it works offline as --proof.
    body = httpx.get(f"{base}/v1/proofs/consistency", params={"log": LOG, "from": 256}).text
    (tmp_path / "proof").write_text(body)
    offline = cli(
        "verify",
        "consistency",
        str(old),
        str(new),
        "--key",
        key,
        "--proof",
        str(tmp_path / "proof"),
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    backwards = cli("verify", "consistency", str(new), str(old), "--key", key, "--url", base)
    assert backwards.returncode == 1 and "Rollback" in backwards.stdout
    fork = tmp_path / "fork.note"
    fork.write_text(
        sign_note(Checkpoint(f"{ORIGIN}/{TOPIC}/0", SIZE, bytes(32)).to_text(), [pristine.signer])
    )
    forked = cli(
        "verify",
        "consistency",
        str(old),
        str(fork),
        "--key",
        key,
        "--proof",
        str(tmp_path / "proof"),
    )
    assert forked.returncode == 1 and "RootMismatch" in forked.stdout
    assert cli("verify", "consistency", str(old), str(new), "--key", key).returncode == 2


class _Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_monitor_alerts_on_fork_foreign_signature_and_rollback(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _, clone = query_api
    state = tmp_path / "monitor.json"
    monitor = [
        "monitor",
        "--url",
        base,
        "--key",
        str(pristine.vkey_file),
        "--state",
        str(state),
        "--once",
    ]
    first = cli(*monitor, "--log", LOG)
    assert first.returncode == 0, first.stdout + first.stderr
    trusted = json.loads(state.read_text())["logs"][f"{ORIGIN}/{TOPIC}/0"]
    assert trusted == pristine.notes[SIZE]
    webhook = _Webhook()
    try:
        log_origin = f"{ORIGIN}/{TOPIC}/0"
        stranger = NoteSigner.generate(ORIGIN)
        cases = [
            ("fork", sign_note(
                Checkpoint(log_origin, SIZE, bytes(32)).to_text(), [pristine.signer]
            )),
            ("checkpoint-signature", sign_note(trusted.split("\n\n")[0] + "\n", [stranger])),
            ("rollback", pristine.notes[316]),
            ("inconsistent", sign_note(
                Checkpoint(log_origin, SIZE + 1, bytes(32)).to_text(), [pristine.signer]
            )),
        ]  # fmt: skip
        for kind, note in cases:
            sql(clone, "UPDATE logs SET checkpoint = $2 WHERE log_id = $1", LOG, note)
            if kind == "inconsistent":
                # The server must also claim a checkpoint of that size for the proof to exist.
                sql(
                    clone,
                    "INSERT INTO checkpoints (log_id, size, root, note) VALUES ($1, $2, $3, $4)",
                    LOG, SIZE + 1, bytes(32), note,
                )  # fmt: skip
                sql(clone, "UPDATE logs SET size = $2 WHERE log_id = $1", LOG, SIZE + 1)
                sql(
                    clone,
                    "UPDATE tiles SET data = data || $2"
                    " WHERE log_id = $1 AND level = 0 AND idx = 2",
                    LOG, bytes(range(32)),
                )  # fmt: skip
            seen = cli(*monitor, "--log", LOG, "--webhook", webhook.url)
            assert seen.returncode == 1, (kind, seen.stdout, seen.stderr)
            alert = json.loads(seen.stderr.strip().splitlines()[-1])["alert"]
            assert (alert["kind"], alert["log"]) == (kind, LOG), seen.stderr
            assert webhook.received[-1]["alert"]["kind"] == kind
            # What failed is never trusted: the state still holds the last good checkpoint.
            assert json.loads(state.read_text())["logs"][f"{ORIGIN}/{TOPIC}/0"] == trusted
    finally:
        webhook.close()
