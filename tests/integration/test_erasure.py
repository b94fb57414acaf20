"""Erasure of one event on a really sealed database: the content goes, every proof stays.

``auditlog erase`` removes the row, replaces the bundle entry by its leaf, rebuilds the search
block and stores a signed erasure record; the audit lists the erasure and passes. A row deleted
without a record, a record signed by another key, or one naming another leaf is still damage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from auditlog.core.entry import leaf_hash
from auditlog.core.hashing import get_hasher
from auditlog.core.log_statements import (
    ErasureRecord,
    erased_entry_leaf,
    sign_statement,
)
from auditlog.core.note import NoteSigner, parse_note
from auditlog.core.proof import inclusion_proof, verify_inclusion
from auditlog.core.tiles import TileID, decode_bundle
from auditlog.pg import search_generations
from tests.conftest import connected
from tests.integration.retention_harness import (
    LOG,
    PANGEA,
    SIZE,
    Sealed,
    audit,
    cli,
    cloned,
    kinds,
    run_sql,
)

pytestmark = pytest.mark.integration

INDEX = 517  # chunk 2, position 5


@pytest.fixture
def sealed(retention_sealed: Sealed) -> Sealed:
    return retention_sealed


@pytest.fixture
def clone(sealed: Sealed) -> Iterator[str]:
    yield from cloned(sealed)


def _erase(sealed: Sealed, url: str, log: str, index: int, reason: str = "GDPR art. 17") -> str:
    proc = cli(sealed, "erase", "--hash", sealed.hashes[(log, index)], "--reason", reason,
               "--database-url", url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _block_keys(url: str, log: str, index: int) -> list[int]:
    rows = run_sql(
        url,
        "SELECT keys FROM search_blocks WHERE log_id = $1 AND first_idx <= $2 AND last_idx >= $2",
        log,
        index,
    )
    return list(rows[0]["keys"]) if rows else []


@pytest.mark.parametrize("log", [LOG, PANGEA])
def test_erasure_keeps_the_audit_clean(sealed: Sealed, clone: str, log: str) -> None:
    keys_before = _block_keys(clone, log, INDEX)
    out = _erase(sealed, clone, log, INDEX)
    assert out.startswith(f"erased: {log} index {INDEX}"), out
    assert run_sql(clone, "SELECT 1 FROM events WHERE log_id = $1 AND idx = $2", log, INDEX) == []
    bundle = run_sql(clone, "SELECT data FROM bundles WHERE log_id = $1 AND idx = 2", log)
    entry = decode_bundle(bytes(bundle[0]["data"]))[INDEX % 256]
    hasher = get_hasher("rfc6962-sha256" if log == LOG else "pangea-sha256")
    leaf = leaf_hash(hasher, sealed.envelopes[(log, INDEX)])
    assert erased_entry_leaf(entry) == leaf
    # The event's own words ("word517") are no longer in its search block.
    assert 0 < len(_block_keys(clone, log, INDEX)) < len(keys_before)

    rc, report, text = audit(sealed, clone, "--no-state")
    assert rc == 0, text
    erased = {e["log"]: e["erased"] for e in report["logs"]}
    assert erased[log] == [
        {
            "index": INDEX,
            "hash": sealed.hashes[(log, INDEX)],
            "reason": "GDPR art. 17",
            "time": erased[log][0]["time"],
        }
    ]
    plain = cli(sealed, "audit", "--database-url", clone, "--key", str(sealed.vkey_file),
                "--no-state", "--no-progress")  # fmt: skip
    assert f"ERASED {log}: index {INDEX} hash {sealed.hashes[(log, INDEX)]}" in plain.stdout

    # The erased entry's leaf still proves inclusion; so does every other entry's.
    rows = run_sql(clone, "SELECT level, idx, data FROM tiles WHERE log_id = $1", log)
    tiles = {TileID(r["level"], r["idx"]): bytes(r["data"]) for r in rows}
    root = run_sql(clone, "SELECT root FROM logs WHERE log_id = $1", log)[0]["root"]
    for index in (INDEX, INDEX + 1, 0, SIZE - 1):
        leaf = leaf_hash(hasher, sealed.envelopes[(log, index)])
        verify_inclusion(hasher, index, SIZE, leaf, inclusion_proof(hasher, index, SIZE, tiles),
                         bytes(root))  # fmt: skip

    # Erasing again is a no-op that says so.
    again = cli(sealed, "erase", "--hash", sealed.hashes[(log, INDEX)], "--reason", "again",
                "--database-url", clone)  # fmt: skip
    assert again.returncode == 0 and again.stdout.startswith("already erased"), again.stdout


def test_erasure_moves_a_block_of_an_older_generation_to_the_newest(
    sealed: Sealed, clone: str
) -> None:
    """The block is rebuilt where blocks are written now; its old copy is gone, so a search finds
    the block's other events once and the erased event's words nowhere."""

    async def open_generation() -> None:
        async with connected(clone) as conn:
            await search_generations.open_next(conn)

    def covering() -> list[tuple[int, int, int]]:
        rows = run_sql(
            clone,
            "SELECT generation, first_idx, last_idx FROM search_blocks"
            " WHERE log_id = $1 AND first_idx <= $2 AND last_idx >= $2",
            LOG,
            INDEX,
        )
        return [(r["generation"], r["first_idx"], r["last_idx"]) for r in rows]

    asyncio.run(open_generation())
    [(generation, first, last)] = covering()
    assert generation == 0
    keys_before = _block_keys(clone, LOG, INDEX)
    _erase(sealed, clone, LOG, INDEX)
    assert covering() == [(1, first, last)]
    assert 0 < len(_block_keys(clone, LOG, INDEX)) < len(keys_before)
    rc, _, text = audit(sealed, clone, "--no-state")
    assert rc == 0, text


def test_delete_without_a_record_is_tampering(sealed: Sealed, clone: str) -> None:
    _erase(sealed, clone, LOG, INDEX)
    run_sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx = $2", LOG, INDEX + 1)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1
    assert [(f["kind"], f["index"]) for f in report["findings"]] == [("missing-entry", INDEX + 1)]


def test_record_by_another_key_is_tampering(sealed: Sealed, clone: str) -> None:
    _erase(sealed, clone, LOG, INDEX)
    note = run_sql(clone, "SELECT note FROM erasures")[0]["note"]
    record = ErasureRecord.from_text(parse_note(note).text)
    forged = sign_statement(record, NoteSigner.generate("retention.auditlog.test"))
    run_sql(clone, "UPDATE erasures SET note = $1", forged)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1
    assert {"erasure-invalid", "missing-entry"} <= kinds(report)


def test_record_naming_another_leaf_is_tampering(sealed: Sealed, clone: str) -> None:
    signer = NoteSigner.from_skey(sealed.key_file.read_text().strip())
    _erase(sealed, clone, LOG, INDEX)
    note = run_sql(clone, "SELECT note FROM erasures")[0]["note"]
    record = ErasureRecord.from_text(parse_note(note).text)
    # A properly signed record, for an entry that was never sealed at this index.
    wrong = ErasureRecord(
        record.origin, INDEX + 2, record.event_hash, record.leaf, record.time, "cover-up"
    )
    run_sql(clone, "INSERT INTO erasures (log_id, idx, event_hash, note) VALUES ($1, $2, $3, $4)",
            LOG, INDEX + 2, record.event_hash, sign_statement(wrong, signer))  # fmt: skip
    run_sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx = $2", LOG, INDEX + 2)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1
    assert "erasure-mismatch" in kinds(report)


def test_an_event_that_is_not_the_sealed_one_is_not_erased(sealed: Sealed, clone: str) -> None:
    run_sql(clone, "UPDATE events SET envelope = envelope || ' '::bytea"
            " WHERE log_id = $1 AND idx = $2", LOG, INDEX)  # fmt: skip
    proc = cli(sealed, "erase", "--hash", sealed.hashes[(LOG, INDEX)], "--reason", "x",
               "--database-url", clone)  # fmt: skip
    assert proc.returncode == 1 and "not the sealed entry" in proc.stdout, proc.stdout
    assert run_sql(clone, "SELECT count(*) AS n FROM erasures")[0]["n"] == 0
