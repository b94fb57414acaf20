"""Conformance with Go's golang.org/x/mod/sumdb/{note,tlog}, an independent implementation.

tests/conformance/go/ is a small Go program (see its main.go). It is built once per session into
a temporary directory; the module's go.sum is committed, so after the first download of
golang.org/x/mod the build works offline from the module cache. Skipped when ``go`` is missing,
and failed instead under ``CI=true`` (tests/go_tools.py).

Both directions are checked for the default ``rfc6962-sha256`` scheme (the only one Go speaks):
Go verifies our signed checkpoint, tiles, entry bundles and proofs, and recomputes all of them
from the entries on its own; and we verify Go's signed note, tree hashes, tiles and proofs.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import MAX_ENTRY_SIZE, leaf_hash, log_entry
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, NoteVerifier, open_note, sign_note
from auditlog.core.proof import (
    Node,
    consistency_proof,
    inclusion_proof,
    root_from_tiles,
    verify_consistency,
    verify_inclusion,
)
from auditlog.core.tiles import TileID, encode_bundle, entries_path, parse_tile_path, tile_path
from tests.go_tools import go_build

pytestmark = pytest.mark.conformance

GO_MODULE = Path(__file__).resolve().parent.parent / "conformance" / "go"
HASHER = get_hasher("rfc6962-sha256")
ORIGIN = "audit.example.com/audit.events/0"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_build(GO_MODULE, tmp_path_factory.mktemp("go-conformance") / "conformance")


def run_go(binary: Path, command: str, payload: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def go_ok(binary: Path, command: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = run_go(binary, command, payload)
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


@dataclass
class OurLog:
    entries: list[bytes]
    tiles: dict[TileID, bytes]
    bundles: dict[str, bytes]
    signer: NoteSigner
    checkpoint: str

    def root(self, size: int) -> bytes:
        return root_from_tiles(HASHER, size, self.tiles)


def build_our_log(envelopes: list[bytes], batch: int) -> OurLog:
    entries = [log_entry(env) for env in envelopes]
    tiles: dict[TileID, bytes] = {}
    size = 0
    while size < len(envelopes):
        chunk = envelopes[size : size + batch]
        edge = {t: tiles[t] for t in tiles_to_fetch(size)}
        result = integrate(HASHER, size, edge, [leaf_hash(HASHER, e) for e in chunk])
        tiles.update(result.tiles)
        size = result.size
    bundles = {
        entries_path(i // 256, len(entries[i : i + 256])): encode_bundle(entries[i : i + 256])
        for i in range(0, len(entries), 256)
    }
    signer = NoteSigner.generate(ORIGIN)
    checkpoint = sign_note(
        Checkpoint(ORIGIN, size, root_from_tiles(HASHER, size, tiles)).to_text(), [signer]
    )
    return OurLog(entries, tiles, bundles, signer, checkpoint)


def envelopes(count: int, big: tuple[int, ...] = ()) -> list[bytes]:
    out = []
    for i in range(count):
        event: dict[str, object] = {"message": f"event {i}", "actor": "ä😀", "n": i}
        if i in big:
            event["new"] = "x" * (MAX_ENTRY_SIZE + 10)  # becomes a digest entry
        out.append(Envelope(event, f"2024-01-01T00:00:00.{i % 10**6:06d}Z").canonical)
    return out


def check_payload(
    log: OurLog, inclusion: list[tuple[int, int]], consistency: list[tuple[int, int]]
) -> dict[str, Any]:
    cache: dict[Node, bytes] = {}
    return {
        "vkey": log.signer.vkey(),
        "checkpoint": log.checkpoint,
        "origin": ORIGIN,
        "entries": [b64(e) for e in log.entries],
        "tiles": {tile_path(t.level, t.index, len(d) // 32): b64(d) for t, d in log.tiles.items()},
        "bundles": {path: b64(data) for path, data in log.bundles.items()},
        "inclusion": [
            {
                "index": i,
                "size": n,
                "leaf": b64(HASHER.hash_leaf(log.entries[i])),
                "root": b64(log.root(n)),
                "proof": [b64(h) for h in inclusion_proof(HASHER, i, n, log.tiles, cache)],
            }
            for i, n in inclusion
        ],
        "consistency": [
            {
                "size1": m,
                "size2": n,
                "root1": b64(log.root(m)),
                "root2": b64(log.root(n)),
                "proof": [b64(h) for h in consistency_proof(HASHER, m, n, log.tiles, cache)],
            }
            for m, n in consistency
        ],
    }


@pytest.fixture(scope="module")
def small_log() -> OurLog:
    return build_our_log(envelopes(600, big=(3, 300)), batch=77)


def all_pairs(limit: int) -> Iterator[tuple[int, int]]:
    for n in range(1, limit + 1):
        for i in range(n):
            yield i, n


def test_go_accepts_our_log(go_binary: Path, small_log: OurLog) -> None:
    inclusion = [*all_pairs(64), (0, 600), (599, 600), (255, 256), (256, 257), (300, 513)]
    consistency = [(m, n) for n in range(1, 65) for m in range(1, n + 1)]
    consistency += [(1, 600), (256, 600), (599, 600), (300, 512), (600, 600)]
    out = go_ok(go_binary, "check", check_payload(small_log, inclusion, consistency))
    assert out["ok"] is True
    assert out["size"] == 600
    assert out["bundles"] == 3


def test_go_accepts_a_three_level_log(go_binary: Path) -> None:
    log = build_our_log(envelopes(65_600), batch=5000)
    out = go_ok(
        go_binary,
        "check",
        check_payload(log, [(0, 65_600), (65_599, 65_600), (65_536, 65_537)], [(65_536, 65_600)]),
    )
    assert out["ok"] is True


def test_go_rejects_tampering(go_binary: Path, small_log: OurLog) -> None:
    base = check_payload(small_log, [(5, 600)], [(100, 600)])
    forged = NoteSigner.generate(ORIGIN)
    bad_sig = dict(
        base, checkpoint=sign_note(small_log.checkpoint.split("\n\n")[0] + "\n", [forged])
    )
    tile0 = tile_path(0, 0)
    flipped = bytearray(unb64(base["tiles"][tile0]))
    flipped[40] ^= 1
    bad_tile = dict(base, tiles={**base["tiles"], tile0: b64(bytes(flipped))})
    bad_proof = json.loads(json.dumps(base))
    bad_proof["inclusion"][0]["proof"][0] = b64(bytes(32))
    bad_entry = dict(base, entries=[b64(b"{}"), *base["entries"][1:]])
    for name, payload in [
        ("signature", bad_sig),
        ("tile", bad_tile),
        ("proof", bad_proof),
        ("entry", bad_entry),
    ]:
        result = run_go(go_binary, "check", payload)
        assert result.returncode == 1, name
        assert result.stderr.startswith("conformance:"), name


def test_we_accept_gos_log(go_binary: Path) -> None:
    raw = envelopes(300, big=(7,))
    entries = [log_entry(e) for e in raw]
    inclusion = [*all_pairs(40), (0, 300), (299, 300), (256, 300)]
    consistency = [(m, n) for n in range(1, 41) for m in range(1, n + 1)] + [(256, 300), (1, 300)]
    out = go_ok(
        go_binary,
        "produce",
        {
            "name": "go.example/log",
            "origin": ORIGIN,
            "entries": [b64(e) for e in entries],
            "inclusion": inclusion,
            "consistency": consistency,
        },
    )
    # Go's signed checkpoint opens with our code and Go's vkey.
    note = open_note(out["checkpoint"], [NoteVerifier.from_vkey(out["vkey"])])
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 300)

    # Go's tiles are exactly ours, and every tree hash matches ours.
    ours = build_our_log(raw, batch=300)
    theirs: dict[TileID, bytes] = {}
    for path, data in out["tiles"].items():
        level, index, width = parse_tile_path(path)
        assert level is not None
        theirs[TileID(level, index)] = unb64(data)
        assert len(theirs[TileID(level, index)]) == width * 32
    assert theirs == ours.tiles
    for size, root in out["roots"].items():
        assert root_from_tiles(HASHER, int(size), theirs) == unb64(root), size
    assert checkpoint.root == unb64(out["roots"]["300"])

    # Go's proofs verify with our verifiers and equal the proofs we build.
    for case in out["inclusion"]:
        i, n = case["index"], case["size"]
        proof = [unb64(h) for h in case["proof"]]
        assert unb64(case["leaf"]) == leaf_hash(HASHER, raw[i])
        verify_inclusion(HASHER, i, n, unb64(case["leaf"]), proof, unb64(case["root"]))
        assert proof == inclusion_proof(HASHER, i, n, theirs)
    for case in out["consistency"]:
        m, n = case["size1"], case["size2"]
        proof = [unb64(h) for h in case["proof"]]
        verify_consistency(HASHER, m, n, unb64(case["root1"]), unb64(case["root2"]), proof)
        assert proof == consistency_proof(HASHER, m, n, theirs)
