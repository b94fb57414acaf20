"""Archives verify offline from an in-memory log; every kind of damage to one fails."""

from __future__ import annotations

import base64

import orjson
import pytest

from auditlog.core.archive import (
    ArchiveError,
    archive_header,
    archive_nodes,
    archive_tiles,
    entry_line,
    trailer_line,
    verify_archive,
)
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.log_statements import ErasureRecord, sign_statement
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import TileID

ORIGIN = "example.test/audit.events/0"
SIZE = 700


def _log(scheme: str) -> tuple[list[bytes], dict[TileID, bytes], str, NoteSigner]:
    hasher = get_hasher(scheme)
    envelopes = [
        Envelope({"message": f"event {i}"}, f"2025-01-01T00:00:00.{i:06d}Z").canonical
        for i in range(SIZE)
    ]
    tiles: dict[TileID, bytes] = {}
    size, root = 0, hasher.empty_root()
    for lo in range(0, SIZE, 97):
        batch = [leaf_hash(hasher, e) for e in envelopes[lo : lo + 97]]
        result = integrate(hasher, size, {t: tiles[t] for t in tiles_to_fetch(size)}, batch)
        tiles.update(result.tiles)
        size, root = result.size, result.root
    signer = NoteSigner.generate("example.test")
    note = sign_note(Checkpoint(ORIGIN, SIZE, root).to_text(), [signer.named(ORIGIN)])
    return envelopes, tiles, note, signer


def _archive(
    scheme: str, first: int, end: int, erased: int | None = None
) -> tuple[list[bytes], NoteSigner]:
    envelopes, tiles, note, signer = _log(scheme)
    hasher = get_hasher(scheme)
    wanted = {t: tiles[t] for t in archive_tiles(first, end, SIZE)}
    left, right = archive_nodes(hasher, first, end, SIZE, wanted)
    lines = [
        archive_header(origin=ORIGIN, log="audit.events-0", hash_scheme=scheme, first=first,
                       end=end, checkpoint=note, left=left, right=right, pruned=None)
    ]  # fmt: skip
    for i in range(first, end):
        if i == erased:
            record = ErasureRecord(ORIGIN, i, b"\x01" * 32, leaf_hash(hasher, envelopes[i]),
                                   "2026-01-01T00:00:00Z", "test")  # fmt: skip
            if hasher.event_hash_leaves:
                record = ErasureRecord(ORIGIN, i, record.leaf, record.leaf, record.time, "test")
            lines.append(entry_line(i, erasure=sign_statement(record, signer)))
        else:
            lines.append(entry_line(i, envelope=envelopes[i]))
    lines.append(trailer_line(end - first))
    return lines, signer


@pytest.mark.parametrize("scheme", ["rfc6962-sha256", "pangea-sha256", "rfc6962-blake3"])
@pytest.mark.parametrize(("first", "end"), [(0, SIZE), (0, 1), (255, 513), (300, 300), (699, 700)])
def test_archives_verify(scheme: str, first: int, end: int) -> None:
    lines, signer = _archive(scheme, first, end)
    done = verify_archive(lines, [signer.verifier])
    assert (done.first, done.end, done.size, done.erased) == (first, end, SIZE, 0)


def test_an_erased_entry_verifies_by_its_record() -> None:
    for scheme in ("rfc6962-sha256", "pangea-sha256"):
        lines, signer = _archive(scheme, 256, 512, erased=300)
        assert verify_archive(lines, [signer.verifier]).erased == 1


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_damage_fails() -> None:
    lines, signer = _archive("rfc6962-sha256", 100, 400, erased=200)
    keys = [signer.verifier]
    cases = []
    head = orjson.loads(lines[0])
    for side in ("left", "right"):
        for at in range(len(head[side])):
            hashes = list(head[side])
            hashes[at] = _flip(hashes[at])
            cases.append([orjson.dumps({**head, side: hashes}) + b"\n", *lines[1:]])
    for key, value in (("log", "audit.events-1"), ("hash_scheme", "pangea-sha256"), ("x", 1)):
        cases.append([orjson.dumps({**head, key: value}) + b"\n", *lines[1:]])
    entry = orjson.loads(lines[5])
    entry["envelope"] = _flip(entry["envelope"])
    cases.append([*lines[:5], orjson.dumps(entry) + b"\n", *lines[6:]])
    record = orjson.loads(lines[101])
    record["erasure"] = record["erasure"].replace("reason test", "reason tset")
    cases.append([*lines[:101], orjson.dumps(record) + b"\n", *lines[102:]])
    cases.append(lines[:-1])  # truncated
    cases.append([*lines[:10], *lines[11:]])  # an entry left out
    cases.append([*lines, trailer_line(1)])  # extended
    cases.append([lines[0].replace(b'"first":100', b'"first":101'), *lines[1:]])
    for case in cases:
        with pytest.raises(ArchiveError):
            verify_archive(case, keys)
    with pytest.raises(ArchiveError):
        verify_archive(lines, [NoteSigner.generate("example.test").verifier])


def test_every_byte_of_an_archive_counts() -> None:
    # Flip each bit of a small archive in turn: every one either breaks it or fails to verify.
    lines, signer = _archive("rfc6962-sha256", 250, 262, erased=255)
    data = b"".join(lines)
    keys = [signer.verifier]
    assert verify_archive(data.splitlines(keepends=True), keys).erased == 1
    passed = []
    for at in range(0, len(data)):
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        try:
            verify_archive(bytes(flipped).splitlines(keepends=True), keys)
        except (ArchiveError, ValueError):
            continue
        passed.append((at, data[max(0, at - 20) : at + 20]))
    assert passed == []
