"""Golden vectors: the committed files must equal what the code computes today.

If one of these fails, the code changed a result that logs, receipts or verifiers depend on.
Either that is a bug, or the change is deliberate and ``tools/gen_vectors.py`` is rerun and the
diff of tests/vectors/ is reviewed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.note import NoteSigner, NoteVerifier
from auditlog.core.receipt import Receipt, verify_receipt

ROOT = Path(__file__).resolve().parent.parent.parent
VECTORS = ROOT / "tests" / "vectors"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "tools" / "gen_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> tuple[ModuleType, dict[str, dict[str, Any]]]:
    gen = load_generator()
    return gen, gen.build_vectors()


@pytest.mark.parametrize("name", ["envelopes.json", "trees.json", "notes.json"])
def test_committed_vectors_match_the_code(
    generated: tuple[ModuleType, dict[str, dict[str, Any]]], name: str
) -> None:
    gen, vectors = generated
    committed = (VECTORS / name).read_text(encoding="utf-8")
    assert json.loads(committed) == vectors[name], f"{name} is stale: see tools/gen_vectors.py"
    assert committed == gen.render(vectors[name])


def test_envelope_vectors_are_self_consistent() -> None:
    cases = json.loads((VECTORS / "envelopes.json").read_text(encoding="utf-8"))["cases"]
    for case in cases:
        if case["canonical"] is not None:
            raw = case["canonical"].encode()
            assert hashlib.sha256(raw).hexdigest() == case["canonical_sha256"] == case["event_hash"]
            assert case["leaf_hash"]["pangea-sha256"] == case["event_hash"]
        if case["log_entry"] is not None:
            entry = case["log_entry"].encode()
            rfc = hashlib.sha256(b"\x00" + entry).hexdigest()
            assert case["leaf_hash"]["rfc6962-sha256"] == rfc
    by_name = {c["name"]: c for c in cases}
    assert by_name["size-65535"]["log_entry_sha256"] == by_name["size-65535"]["canonical_sha256"]
    assert by_name["size-65536"]["log_entry"].startswith("auditlog-digest/v1 sha256 ")


def test_receipt_vectors_verify() -> None:
    notes = json.loads((VECTORS / "notes.json").read_text(encoding="utf-8"))
    verifier = NoteVerifier.from_vkey(notes["vkey"])
    assert NoteSigner.from_skey(notes["skey"]).vkey() == notes["vkey"]
    for scheme, vector in notes["receipts"].items():
        receipt = Receipt.from_text(vector["receipt"])
        verified = verify_receipt(
            receipt, vector["envelope"].encode(), [verifier], get_hasher(scheme)
        )
        assert verified.index == 7
        assert verified.checkpoint.size == 11


def test_rfc6962_published_roots() -> None:
    # The RFC 6962 / Certificate Transparency reference leaves and their tree heads, as used by
    # transparency-dev/merkle and Trillian: independent of anything in this repository.
    hasher = get_hasher("rfc6962-sha256")
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        bytes(range(0x60, 0x70)),
    ]
    roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    for n, want in enumerate(roots, start=1):
        got = integrate(hasher, 0, {}, [hasher.hash_leaf(x) for x in leaves[:n]]).root
        assert got.hex() == want, n
