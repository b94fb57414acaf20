"""Generate the golden test vectors in tests/vectors/ from the current core.

    .venv/bin/python tools/gen_vectors.py          # (re)write tests/vectors/*.json
    .venv/bin/python tools/gen_vectors.py --check  # exit 1 if the files differ from the code

tests/unit/test_vectors.py recomputes the same vectors and compares them with the committed
files, so any change in canonical bytes, entries, leaf hashes, tree hashes, proofs, tile layout,
key encodings, notes or receipts fails the unit tests until the vectors are regenerated on
purpose (and the change is explained in review).

Everything here is deterministic: fixed events, fixed leaves, and an Ed25519 key derived from a
fixed seed (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditlog.core import pangea_proof
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import MAX_ENTRY_SIZE, leaf_hash, log_entry
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import HASH_SCHEMES, LogHasher, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.proof import Node, consistency_proof, inclusion_proof, root_from_tiles
from auditlog.core.receipt import Receipt
from auditlog.core.tiles import TileID, encode_bundle, entries_path, tile_path

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
RECEIVED_AT = "2024-02-29T23:59:59.999999Z"
KEY_NAME = "example.com/auditlog-test-vectors"
KEY_SEED = hashlib.sha256(b"auditlog golden vector key").digest()
ORIGIN = "example.com/audit.events/0"

# name -> (event, optional signature, optional public key)
EVENTS: dict[str, dict[str, Any]] = {
    "minimal": {"event": {"message": "hello"}},
    "standard-fields": {
        "event": {
            "message": "User logged in",
            "actor": "alice@example.com",
            "action": "login",
            "status": "success",
            "source": "web",
            "target": "console",
            "tenant_id": "t-42",
            "timestamp": "2024-02-29T23:59:58.000001Z",
            "new": '{"role":"admin"}',
            "old": '{"role":"user"}',
        }
    },
    "unicode": {"event": {"message": 'ä ö ü ß 中文 😀 \u2028 \x7f / \\ " \n\t\x01'}},
    "numbers": {
        "event": {
            "message": "numbers",
            "ints": [0, -1, 2**63 - 1, 2**64, -(2**63) - 1, 10**30],
            "floats": [0.0, -0.0, 1.0, 0.1, 1e-05, 1e-07, 1e16, 123456.789, 5e-324],
            "bools": [True, False, None],
        }
    },
    "nested": {"event": {"message": "nested", "z": {"b": [{"d": 1, "c": 2}], "a": {}}, "a": []}},
    "signed": {
        "event": {"message": "signed"},
        "signature": "c2lnbmF0dXJl",
        "public_key": '{"algorithm":"ED25519","key":"-----BEGIN PUBLIC KEY-----\\nMCow\\n"}',
    },
}
# Sizes of canonical envelopes around the 64 KiB entry limit, built as {"message": "x" * n}.
SIZED = [MAX_ENTRY_SIZE - 1, MAX_ENTRY_SIZE, MAX_ENTRY_SIZE + 1]


def _envelope_of_size(size: int) -> Envelope:
    base = len(Envelope({"message": ""}, RECEIVED_AT).canonical)
    return Envelope({"message": "x" * (size - base)}, RECEIVED_AT)


def _hex(items: list[bytes]) -> list[str]:
    return [h.hex() for h in items]


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


def envelope_vectors() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    envs = [
        (name, Envelope(spec["event"], RECEIVED_AT, spec.get("signature"), spec.get("public_key")))
        for name, spec in EVENTS.items()
    ]
    envs += [(f"size-{size}", _envelope_of_size(size)) for size in SIZED]
    for name, env in envs:
        small = len(env.canonical) <= 4096
        entry = log_entry(env.canonical)
        cases.append(
            {
                "name": name,
                "size": len(env.canonical),
                # Big envelopes are rebuilt by the test from their size; the file stores digests.
                "canonical": env.canonical.decode("utf-8") if small else None,
                "canonical_sha256": hashlib.sha256(env.canonical).hexdigest(),
                "event_hash": env.event_hash.hex(),
                "log_entry": entry.decode("utf-8") if len(entry) <= 4096 else None,
                "log_entry_sha256": hashlib.sha256(entry).hexdigest(),
                "leaf_hash": {
                    s: leaf_hash(get_hasher(s), env.canonical).hex() for s in HASH_SCHEMES
                },
            }
        )
    return {"received_at": RECEIVED_AT, "cases": cases}


def _leaves(hasher: LogHasher, count: int) -> list[bytes]:
    return [hasher.hash_leaf(i.to_bytes(4, "big")) for i in range(count)]


def tree_vectors() -> dict[str, Any]:
    out: dict[str, Any] = {"leaf_rule": "hash_leaf(uint32 big-endian i)", "schemes": {}}
    for scheme in HASH_SCHEMES:
        hasher = get_hasher(scheme)
        leaves = _leaves(hasher, 1000)
        store: dict[TileID, bytes] = {}
        size = 0
        roots: dict[int, bytes] = {0: hasher.empty_root()}
        for batch in (1, 2, 5, 120, 128, 300, 444):
            edge = {t: store[t] for t in tiles_to_fetch(size)}
            result = integrate(hasher, size, edge, leaves[size : size + batch])
            store.update(result.tiles)
            size = result.size
            roots[size] = result.root
        cache: dict[Node, bytes] = {}
        inclusion = [
            b"".join(inclusion_proof(hasher, i, n, store, cache))
            for n in range(1, 131)
            for i in range(n)
        ]
        consistency = [
            b"".join(consistency_proof(hasher, m, n, store, cache))
            for n in range(1, 131)
            for m in range(n + 1)
        ]
        out["schemes"][scheme] = {
            "roots": {str(n): root_from_tiles(hasher, n, store).hex() for n in range(0, 65)}
            | {str(n): r.hex() for n, r in roots.items()},
            "tiles": {
                tile_path(t.level, t.index, len(d) // 32): hashlib.sha256(d).hexdigest()
                for t, d in sorted(store.items())
            },
            "inclusion": {
                f"{i}/{n}": _hex(inclusion_proof(hasher, i, n, store))
                for i, n in [(0, 1), (0, 8), (5, 8), (6, 7), (999, 1000), (256, 1000)]
            },
            "consistency": {
                f"{m}/{n}": _hex(consistency_proof(hasher, m, n, store))
                for m, n in [(1, 8), (3, 7), (4, 8), (6, 8), (256, 1000), (999, 1000)]
            },
            "all_inclusion_proofs_to_130_sha256": _digest(inclusion),
            "all_consistency_proofs_to_130_sha256": _digest(consistency),
        }
    out["paths"] = [
        tile_path(0, 0),
        tile_path(0, 1234067),
        tile_path(1, 1234, 17),
        tile_path(63, 10**12, 1),
        entries_path(0, 255),
        entries_path(1000),
    ]
    out["bundle"] = base64.b64encode(encode_bundle([b"", b"a", b"{}" * 200])).decode("ascii")
    return out


def note_vectors() -> dict[str, Any]:
    signer = NoteSigner(KEY_NAME, Ed25519PrivateKey.from_private_bytes(KEY_SEED))
    envs = [Envelope({"message": f"receipt event {i}"}, RECEIVED_AT).canonical for i in range(11)]
    out: dict[str, Any] = {"skey": signer.skey(), "vkey": signer.vkey(), "receipts": {}}
    for scheme in HASH_SCHEMES:
        hasher = get_hasher(scheme)
        result = integrate(hasher, 0, {}, [leaf_hash(hasher, e) for e in envs])
        checkpoint = Checkpoint(ORIGIN, result.size, result.root)
        note = sign_note(checkpoint.to_text(), [signer])
        receipt = Receipt(7, tuple(inclusion_proof(hasher, 7, result.size, result.tiles)), note)
        out["receipts"][scheme] = {
            "envelope": envs[7].decode("utf-8"),
            "checkpoint": note,
            "receipt": receipt.to_text(),
        }
        if scheme == "pangea-sha256":
            out["pangea"] = {
                "membership_7_of_11": pangea_proof.membership_proof(7, 11, result.tiles),
                "consistency_6_to_11": pangea_proof.consistency_proof(6, 11, result.tiles),
            }
    return out


def build_vectors() -> dict[str, dict[str, Any]]:
    """File name -> content, exactly as written to tests/vectors/."""
    return {
        "envelopes.json": envelope_vectors(),
        "trees.json": tree_vectors(),
        "notes.json": note_vectors(),
    }


def render(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, content in build_vectors().items():
        path = VECTORS / name
        text = render(content)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"stale vectors: {', '.join(stale)}; rerun tools/gen_vectors.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
