"""Pangea proof strings, checked with the Pangea SDK's own verifiers and a real service vector."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from auditlog.core import pangea_proof as pp
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.errors import MalformedProof, RootMismatch
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.proof import Node
from auditlog.core.tiles import TileID
from tests.unit.rfc6962_reference import ReferenceTree

sdk = pytest.importorskip("pangea.services.audit.util", reason="pangea-sdk is a dev dependency")

VECTORS = Path(__file__).parent.parent / "vectors"
HASHER = get_hasher("pangea-sha256")
MAX = 64


def envelopes(count: int) -> list[bytes]:
    return [
        Envelope({"message": f"event {i}"}, f"2024-01-01T00:00:{i % 60:02d}.{i:06d}Z").canonical
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def log() -> tuple[list[bytes], dict[TileID, bytes], ReferenceTree]:
    leaves = [leaf_hash(HASHER, env) for env in envelopes(MAX)]
    result = integrate(HASHER, 0, {}, leaves)
    return leaves, result.tiles, ReferenceTree(HASHER, leaves)


def test_leaves_are_event_hashes() -> None:
    for env in envelopes(3):
        assert leaf_hash(HASHER, env) == hashlib.sha256(env).digest()


def test_every_membership_proof_verifies_with_the_sdk(
    log: tuple[list[bytes], dict[TileID, bytes], ReferenceTree],
) -> None:
    leaves, tiles, ref = log
    cache: dict[Node, bytes] = {}
    for size in range(1, MAX + 1):
        root = ref.root(size)
        for index in range(size):
            proof = pp.membership_proof(index, size, tiles, cache)
            assert sdk.verify_membership_proof(
                leaves[index], root, sdk.decode_membership_proof(proof)
            )
            pp.verify_membership_proof(proof, leaves[index], root, index, size)
            # Same hashes as the RFC 6962 path: only the encoding differs.
            assert [h for _, h in pp.parse_membership_proof(proof)] == ref.inclusion(index, size)
            if size > 1:
                wrong = (index + 1) % size
                assert not sdk.verify_membership_proof(
                    leaves[wrong], root, sdk.decode_membership_proof(proof)
                )
    assert pp.membership_proof(0, 1, tiles) == ""


def test_every_consistency_proof_verifies_with_the_sdk(
    log: tuple[list[bytes], dict[TileID, bytes], ReferenceTree],
) -> None:
    _, tiles, ref = log
    cache: dict[Node, bytes] = {}
    for size2 in range(1, MAX + 1):
        new_root = ref.root(size2)
        assert pp.consistency_proof(0, size2, tiles) is None
        assert pp.consistency_proof(size2, size2, tiles) is None
        for size1 in range(1, size2):
            items = pp.consistency_proof(size1, size2, tiles, cache)
            assert items, "never an empty list"
            assert all("," in item for item in items)
            old_root = ref.root(size1)
            decoded = sdk.decode_consistency_proof(items)
            assert sdk.verify_consistency_proof(new_root, old_root, decoded)
            pp.verify_consistency_proof(items, old_root, new_root, (size1, size2))
            if size1 > 1:
                assert not sdk.verify_consistency_proof(new_root, ref.root(size1 - 1), decoded)


def test_plans_name_the_tiles_needed(
    log: tuple[list[bytes], dict[TileID, bytes], ReferenceTree],
) -> None:
    _, tiles, _ = log
    for size2 in (1, 17, 64):
        for size1 in range(size2 + 1):
            planned = {t: tiles[t] for t in pp.consistency_tiles(size1, size2)}
            assert pp.consistency_proof(size1, size2, planned) == pp.consistency_proof(
                size1, size2, tiles
            )
        for index in range(size2):
            planned = {t: tiles[t] for t in pp.membership_tiles(index, size2)}
            assert pp.membership_proof(index, size2, planned) == pp.membership_proof(
                index, size2, tiles
            )


def test_shape_checks_bind_the_position(
    log: tuple[list[bytes], dict[TileID, bytes], ReferenceTree],
) -> None:
    leaves, tiles, ref = log
    proof = pp.membership_proof(5, 20, tiles)
    with pytest.raises(MalformedProof):
        pp.verify_membership_proof(proof, leaves[5], ref.root(20), 6, 20)
    with pytest.raises(RootMismatch):
        pp.verify_membership_proof(proof, leaves[4], ref.root(20))
    items = pp.consistency_proof(7, 20, tiles)
    assert items is not None
    with pytest.raises(MalformedProof):
        pp.verify_consistency_proof(items, ref.root(7), ref.root(20), (6, 20))
    with pytest.raises(RootMismatch):
        pp.verify_consistency_proof(items, ref.root(6), ref.root(20))
    with pytest.raises(RootMismatch):
        pp.verify_consistency_proof(items[:-1], ref.root(7), ref.root(20))


@pytest.mark.parametrize(
    "text",
    ["l", "l:", "x:" + "00" * 32, "L:" + "00" * 32, "l:" + "0" * 63, "l:" + "AA" * 32, ","],
)
def test_malformed_membership_proofs(text: str) -> None:
    with pytest.raises(MalformedProof):
        pp.parse_membership_proof(text)


@pytest.mark.parametrize("items", [[], ["x:" + "00" * 32], ["y:" + "00" * 32 + ",l:" + "11" * 32]])
def test_malformed_consistency_proofs(items: list[str]) -> None:
    with pytest.raises(MalformedProof):
        pp.parse_consistency_proof(items)


def test_real_service_vector() -> None:
    # pangea-python tests/testdata/log_artifact.json (see tests/vectors/README.md): a production
    # record whose membership proof is a 2-item "hot" path plus the 6-item path of cold leaf 111
    # of 112, and whose consistency proof goes from size 111 to 112.
    artifact = json.loads((VECTORS / "pangea_log_artifact.json").read_text())
    env = Envelope.from_obj(artifact["envelope"])
    assert env.event_hash.hex() == artifact["hash"]
    root = bytes.fromhex(artifact["root"]["root_hash"])
    pp.verify_membership_proof(artifact["membership_proof"], env.event_hash, root)
    assert sdk.verify_membership_proof(
        env.event_hash, root, sdk.decode_membership_proof(artifact["membership_proof"])
    )
    items = pp.parse_membership_proof(artifact["membership_proof"])
    hot, cold = items[:2], items[2:]
    buffer_root = env.event_hash
    for side, sibling in hot:
        buffer_root = (
            HASHER.hash_children(sibling, buffer_root)
            if side == "l"
            else HASHER.hash_children(buffer_root, sibling)
        )
    cold_text = ",".join(f"{side}:{h.hex()}" for side, h in cold)
    pp.verify_membership_proof(cold_text, buffer_root, root, artifact["leaf_index"], 112)
    old_root = bytes.fromhex("44796fcb138da1cf756c17b24a74ab82e1b3b9c0d8e6eadbbdb5f067e3c9bc27")
    pp.verify_consistency_proof(artifact["root"]["consistency_proof"], old_root, root, (111, 112))
