"""Archives before deletion: written from PostgreSQL, verified offline with the public key only.

An archive of a range verifies with ``auditlog audit --bundle``; a flipped byte anywhere in it
(an envelope, a subtree hash, the checkpoint) or a truncated file fails; an erased entry is
archived as its signed record; and a policy that requires an archive prunes only what an
archive holds.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration.retention_harness import (
    LOG,
    PANGEA,
    PER_MONTH,
    SIZE,
    Sealed,
    audit,
    cli,
    cloned,
    run_sql,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sealed(retention_sealed: Sealed) -> Sealed:
    return retention_sealed


@pytest.fixture
def clone(sealed: Sealed) -> Iterator[str]:
    yield from cloned(sealed)


def _archive(sealed: Sealed, url: str, out: Path, *args: str) -> str:
    proc = cli(sealed, "archive", "--out", str(out), "--database-url", url, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _verify(sealed: Sealed, path: Path) -> tuple[int, str]:
    proc = cli(sealed, "audit", "--bundle", str(path), "--key", str(sealed.vkey_file))
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("log", [LOG, PANGEA])
def test_archive_verifies_offline(sealed: Sealed, clone: str, tmp_path: Path, log: str) -> None:
    path = tmp_path / "range.archive"
    out = _archive(sealed, clone, path, "--log", log, "--from", "100", "--to", "700")
    assert f"archived {log} entries [100, 700) against checkpoint size {SIZE}" in out
    rc, text = _verify(sealed, path)
    assert rc == 0, text
    assert "entries [100, 700) verified" in text
    # The database can go: the archive alone verifies.
    recorded = run_sql(clone, "SELECT first_idx, end_idx FROM archives WHERE log_id = $1", log)
    assert [(r["first_idx"], r["end_idx"]) for r in recorded] == [(100, 700)]


def _rewrite(path: Path, target: Path, line_no: int, change: object) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    body = orjson.loads(lines[line_no])
    change(body)  # type: ignore[operator]
    lines[line_no] = orjson.dumps(body) + b"\n"
    target.write_bytes(b"".join(lines))


def _flip_b64(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_flipped_byte_fails(sealed: Sealed, clone: str, tmp_path: Path) -> None:
    path = tmp_path / "range.archive"
    _archive(sealed, clone, path, "--log", LOG, "--from", "300", "--to", "600")
    assert _verify(sealed, path)[0] == 0

    def envelope(body: dict) -> None:  # type: ignore[type-arg]
        body["envelope"] = _flip_b64(body["envelope"], 20)

    def tile(body: dict) -> None:  # type: ignore[type-arg]
        body["left"][0] = _flip_b64(body["left"][0], 3)

    def checkpoint(body: dict) -> None:  # type: ignore[type-arg]
        body["checkpoint"] = body["checkpoint"].replace("\n1200\n", "\n1201\n")

    for name, line_no, change in (
        ("envelope", 5, envelope),
        ("tile", 0, tile),
        ("checkpoint", 0, checkpoint),
    ):
        bad = tmp_path / f"{name}.archive"
        _rewrite(path, bad, line_no, change)
        rc, text = _verify(sealed, bad)
        assert rc == 1 and "FAILED archive" in text, (name, text)

    # And a raw byte flipped anywhere in the file, not only where JSON stays valid.
    raw = bytearray(path.read_bytes())
    for at in (len(raw) // 3, len(raw) // 2, len(raw) - 40):
        flipped = raw.copy()
        flipped[at] ^= 0x04
        bad = tmp_path / "raw.archive"
        bad.write_bytes(bytes(flipped))
        assert _verify(sealed, bad)[0] == 1, at
    truncated = tmp_path / "truncated.archive"
    truncated.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-2]))
    assert _verify(sealed, truncated)[0] == 1


def test_erased_entries_are_archived_as_their_records(
    sealed: Sealed, clone: str, tmp_path: Path
) -> None:
    proc = cli(sealed, "erase", "--hash", sealed.hashes[(LOG, 400)], "--reason", "test",
               "--database-url", clone)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    path = tmp_path / "erased.archive"
    _archive(sealed, clone, path, "--log", LOG, "--from", "256", "--to", "512")
    rc, text = _verify(sealed, path)
    assert rc == 0 and "1 erased" in text, text
    assert b"auditlog-erasure/v1" in path.read_bytes()


def test_policy_requiring_an_archive_prunes_only_what_is_archived(
    sealed: Sealed, clone: str, tmp_path: Path
) -> None:
    cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--require-archive",
        "--database-url", clone)  # fmt: skip
    apply = cli(sealed, "retention", "apply", "--as-of", "2025-06-15", "--database-url", clone)
    assert apply.returncode == 1 and "auditlog archive first" in apply.stdout, apply.stdout
    assert run_sql(clone, "SELECT count(*) AS n FROM events")[0]["n"] == 2 * SIZE
    for log in (LOG, PANGEA):
        _archive(sealed, clone, tmp_path / f"{log}.archive", "--log", log, "--to",
                 str(3 * PER_MONTH))  # fmt: skip
    apply = cli(sealed, "retention", "apply", "--as-of", "2025-06-15", "--database-url", clone)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    rc, _, out = audit(sealed, clone, "--no-state")
    assert rc == 0, out
    # The archive still verifies after its entries left the database.
    assert _verify(sealed, tmp_path / f"{LOG}.archive")[0] == 0
    refused = cli(sealed, "archive", "--log", LOG, "--from", "0", "--to", "10",
                  "--out", str(tmp_path / "gone.archive"), "--database-url", clone)  # fmt: skip
    assert refused.returncode == 1 and "not stored" in refused.stdout
