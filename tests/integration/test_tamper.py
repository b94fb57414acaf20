"""The tamper suite: damage a really sealed log in PostgreSQL as a DBA could, and audit it.

A pristine database is sealed once with the sealer's own transaction (``sealer.store.seal``,
several batches, so several checkpoints and full, partial and level-1 tiles); each case clones
it (``CREATE DATABASE ... TEMPLATE``), applies its damage in SQL and runs ``auditlog audit`` as a
subprocess. Every case must exit 1 and name the log, index, hash and kind; the second log, which
no case touches, must never be named; the untouched clone must exit 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import decode_bundle, encode_bundle
from tests.integration.tamper_harness import (
    BATCHES,
    LOG,
    ORIGIN,
    OTHER,
    SIZE,
    TOPIC,
    ZERO,
    Pristine,
    assert_named,
    assert_other_log_clean,
    audit,
    audit_db,
    cli_env,
    damage,
    findings,
    roll_back_with_history,
    sql,
)

pytestmark = pytest.mark.integration


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
        capture_output=True, text=True, check=False, env=cli_env(pristine),
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
    assert json.loads(state.read_text())["logs"][ORIGIN + "/" + TOPIC + "/0"] == {
        "log": LOG,
        "hash_scheme": "rfc6962-sha256",
        "checkpoint": pristine.notes[SIZE],
    }

    damage(clone, lambda conn: roll_back_with_history(pristine, conn))
    # Without memory the rolled-back database is self-consistent...
    rc, report, out = audit_db(pristine, clone, "--no-state")
    assert rc == 0, out
    # ...with the state of the earlier audit it is not.
    rc, report, out = audit_db(pristine, clone, "--state", str(state))
    assert rc == 1, out
    found = assert_named(report, "rollback", 316, None)
    assert "from state" in found["detail"]
    assert_named(report, "missing-entry", 316, None)
    # A failed audit does not move the remembered checkpoint back.
    remembered = json.loads(state.read_text())["logs"][ORIGIN + "/" + TOPIC + "/0"]
    assert remembered["checkpoint"] == pristine.notes[SIZE]


def test_unknown_log_and_unreachable_database_are_usage_errors(
    pristine: Pristine, clone: str
) -> None:
    rc, _, out = audit_db(pristine, clone, "--log", "no-such-log")
    assert rc == 2 and "no such log" in out
    rc, _, out = audit_db(pristine, "postgresql://nobody@127.0.0.1:1/none")
    assert rc == 2 and "cannot connect" in out
