"""The console's in-browser verifier (query/console/*.js) against vectors the Python core makes.

Everything is generated here, with auditlog.core and the RFC 6962 reference tree: receipts of
every hash scheme with good and mutated proofs, keys, origins and witness policies, and
consistency proofs (canonical JSON, BLAKE3 and client signatures: test_console_encodings.py).
Each vector is checked by the Python verifier first, so the expectation is the core's, and then
by the JavaScript modules running in headless Chromium: a mutated receipt must fail at the step
that names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.cosignature import Cosigner
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import canonical_json
from auditlog.core.errors import AuditLogError
from auditlog.core.hashing import HASH_SCHEMES, get_hasher
from auditlog.core.log_keys import checkpoint_signers
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.proof import verify_consistency
from auditlog.core.receipt import Receipt, verify_receipt
from tests.e2e.browser import module_page, run
from tests.unit.rfc6962_reference import ReferenceTree

pytestmark = pytest.mark.e2e

DEPLOYMENT = "vectors.example"
ORIGIN = f"{DEPLOYMENT}/audit.events/0"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with module_page() as driver:
        yield driver


# Receipts ---------------------------------------------------------------------------------------


def envelope(i: int) -> bytes:
    # Index 2 is larger than an entry bundle holds: the 64 KiB digest-entry rule applies.
    message = "x" * 70_000 if i == 2 else f"event {i} \u00e9 \U0001f600"
    return canonical_json(
        {
            "event": {"message": message, "actor": f"user{i}", "n": i * 1.5, "big": 10**20 + i},
            "received_at": f"2026-12-05T00:00:{i % 60:02d}.000000Z",
        }
    )


class Log:
    """A signed log of ``size`` envelopes under one scheme, its checkpoint signed the way the
    sealer signs (under the origin and, legacy, the deployment-wide name)."""

    def __init__(self, scheme: str, size: int, signer: NoteSigner) -> None:
        self.scheme = scheme
        self.hasher = get_hasher(scheme)
        self.envelopes = [envelope(i) for i in range(size)]
        self.tree = ReferenceTree(self.hasher, [leaf_hash(self.hasher, e) for e in self.envelopes])
        self.size = size
        self.checkpoint = Checkpoint(ORIGIN, size, self.tree.root(size))
        signers = checkpoint_signers(signer, ORIGIN, legacy_name=True)
        self.note = sign_note(self.checkpoint.to_text(), signers)

    def receipt(self, index: int, note: str | None = None, proof: list[bytes] | None = None) -> str:
        hashes = self.tree.inclusion(index, self.size) if proof is None else proof
        return Receipt(index, tuple(hashes), note or self.note).to_text()


def case(
    name: str,
    log: Log,
    index: int,
    expect: str,
    *,
    receipt: str | None = None,
    envelope_bytes: bytes | None = None,
    keys: list[str],
    **trust: object,
) -> dict[str, object]:
    data = log.envelopes[index] if envelope_bytes is None else envelope_bytes
    return {
        "name": name,
        "scheme": trust.pop("scheme", log.scheme),
        "envelope": data.decode("utf-8"),
        "hash": hashlib.sha256(data).hexdigest(),
        "receipt": receipt or log.receipt(index),
        "keys": keys,
        "expect": expect,
        **trust,
    }


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def python_verdict(c: dict[str, Any], signer: NoteSigner) -> bool:
    """The core's answer for a case without a policy: does the receipt verify?"""
    from auditlog.core.note import NoteVerifier

    try:
        verify_receipt(
            Receipt.from_text(c["receipt"]),
            c["envelope"].encode(),
            [NoteVerifier.from_vkey(k) for k in c["keys"]],
            get_hasher(c["scheme"]),
            c.get("origin"),
        )
    except AuditLogError:
        return False
    return canonical_json(json.loads(c["envelope"])) == c["envelope"].encode()


def receipt_cases(signer: NoteSigner, other: NoteSigner) -> list[dict[str, object]]:
    deployment = [signer.vkey()]
    log_key = [signer.named(ORIGIN).vkey()]
    cases: list[dict[str, object]] = []
    for scheme in HASH_SCHEMES:
        for size in (1, 2, 3, 5, 8, 13, 300):
            log = Log(scheme, size, signer)
            for index in sorted({0, size // 2, size - 1, min(2, size - 1)}):
                tag = f"{scheme} {index}/{size}"
                cases.append(case(f"{tag} good", log, index, "ok", keys=deployment))
                cases.append(case(f"{tag} log key", log, index, "ok", keys=log_key))
                proof = log.tree.inclusion(index, size)
                if proof:
                    bad = [flip(proof[0]), *proof[1:]]
                    cases.append(
                        case(
                            f"{tag} flipped",
                            log,
                            index,
                            "inclusion",
                            receipt=log.receipt(index, proof=bad),
                            keys=deployment,
                        )
                    )
                    cases.append(
                        case(
                            f"{tag} short",
                            log,
                            index,
                            "inclusion",
                            receipt=log.receipt(index, proof=proof[:-1]),
                            keys=deployment,
                        )
                    )
                cases.append(
                    case(
                        f"{tag} long",
                        log,
                        index,
                        "inclusion",
                        receipt=log.receipt(
                            index, proof=[*proof, proof[0] if proof else b"\0" * 32]
                        ),
                        keys=deployment,
                    )
                )
                if index + 1 < size:
                    moved = Receipt(index + 1, tuple(proof), log.note).to_text()
                    cases.append(
                        case(
                            f"{tag} index+1",
                            log,
                            index,
                            "inclusion",
                            receipt=moved,
                            keys=deployment,
                        )
                    )
    log = Log("rfc6962-sha256", 13, signer)
    edited = json.loads(log.envelopes[4])
    edited["event"]["actor"] = "mallory"
    cases += [
        case(
            "edited envelope",
            log,
            4,
            "inclusion",
            envelope_bytes=canonical_json(edited),
            keys=deployment,
        ),
        case(
            "not canonical",
            log,
            4,
            "envelope",
            envelope_bytes=log.envelopes[4].replace(b":", b": ", 1),
            keys=deployment,
        ),
        case("another key", log, 4, "signature", keys=[other.vkey()]),
        case("origin pinned", log, 4, "ok", keys=deployment, origin=ORIGIN),
        case(
            "another origin",
            log,
            4,
            "origin",
            keys=deployment,
            origin=f"{DEPLOYMENT}/audit.events/1",
        ),
        case(
            "log key of another log",
            log,
            4,
            "signature",
            keys=[signer.named(f"{DEPLOYMENT}/audit.events/1").vkey()],
        ),
        case("wrong scheme", log, 4, "inclusion", keys=deployment, scheme="rfc6962-blake3"),
    ]
    grown = log.note.replace("\n13\n", "\n14\n", 1)
    cases.append(
        case(
            "resized checkpoint",
            log,
            4,
            "signature",
            receipt=log.receipt(4, note=grown),
            keys=deployment,
        )
    )
    return cases


def test_receipts_verify_and_mutations_fail_where_the_core_says(page: Any) -> None:
    signer = NoteSigner.generate(DEPLOYMENT)
    other = NoteSigner.generate(DEPLOYMENT)
    cases = receipt_cases(signer, other)
    for c in cases:
        assert python_verdict(c, signer) == (c["expect"] == "ok"), c["name"]
    results = run(page, RUN_CASES, cases)
    wrong = [
        (c["name"], c["expect"], r)
        for c, r in zip(cases, results, strict=True)
        if r["failed"] != c["expect"]
    ]
    assert not wrong, wrong[:5]
    assert len(cases) > 200


RUN_CASES = """
const v = await mod('verify.js'); const n = await mod('note.js');
const out = [];
for (const c of args[0]) {
  const keys = [];
  for (const k of c.keys) keys.push(await n.parseVkey(k));
  const policy = c.policy ? await n.parsePolicy(c.policy) : undefined;
  const r = await v.verifyEvent({
    envelopeText: c.envelope, eventHash: c.hash, receiptText: c.receipt, scheme: c.scheme,
    trust: {keys, served: false, origin: c.origin, policy, now: c.now, maxAge: c.maxAge},
  });
  const failed = r.steps.find((s) => s.status === 'failed');
  out.push({failed: r.ok ? 'ok' : (failed ? failed.id : 'none'), error: r.error || null});
}
return out;
"""


def test_witness_policies(page: Any) -> None:
    signer = NoteSigner.generate(DEPLOYMENT)
    w1, w2 = Cosigner.generate("witness.one"), Cosigner.generate("witness.two")
    log = Log("rfc6962-sha256", 5, signer)
    text = log.checkpoint.to_text()
    one = log.note + w1.cosign(text, NOW - 10) + "\n"
    both = one + w2.cosign(text, NOW - 5000) + "\n"
    forged = log.note + w1.cosign(text + "x\n", NOW) + "\n"
    any_of = f"witness a {w1.vkey()}\nwitness b {w2.vkey()}\ngroup g any a b\nquorum g\n"
    all_of = any_of.replace("group g any", "group g all")
    deployment = [signer.vkey()]
    cases = [
        case("no cosignature", log, 1, "witnesses", keys=deployment, policy=any_of, now=NOW),
        case(
            "one of any",
            log,
            1,
            "ok",
            receipt=log.receipt(1, note=one),
            keys=deployment,
            policy=any_of,
            now=NOW,
        ),
        case(
            "one of all",
            log,
            1,
            "witnesses",
            receipt=log.receipt(1, note=one),
            keys=deployment,
            policy=all_of,
            now=NOW,
        ),
        case(
            "both of all",
            log,
            1,
            "ok",
            receipt=log.receipt(1, note=both),
            keys=deployment,
            policy=all_of,
            now=NOW,
        ),
        case(
            "stale",
            log,
            1,
            "witnesses",
            receipt=log.receipt(1, note=both),
            keys=deployment,
            policy=all_of,
            now=NOW,
            maxAge=600,
        ),
        case(
            "forged cosignature",
            log,
            1,
            "witnesses",
            receipt=log.receipt(1, note=forged),
            keys=deployment,
            policy=any_of,
            now=NOW,
        ),
        case(
            "policy log line",
            log,
            1,
            "ok",
            receipt=log.receipt(1, note=one),
            keys=[],
            policy=f"log {signer.vkey()}\n{any_of}",
            now=NOW,
        ),
        case("no quorum needed", log, 1, "ok", keys=deployment, policy="quorum none\n", now=NOW),
    ]
    results = run(page, RUN_CASES, cases)
    assert [r["failed"] for r in results] == [c["expect"] for c in cases], results


# Consistency ------------------------------------------------------------------------------------


def test_consistency_proofs(page: Any) -> None:
    cases = []
    for scheme in HASH_SCHEMES:
        hasher = get_hasher(scheme)
        tree = ReferenceTree(hasher, [leaf_hash(hasher, envelope(i)) for i in range(40)])
        for size1, size2 in [(1, 2), (2, 3), (3, 7), (4, 8), (5, 40), (8, 8), (0, 5), (7, 33)]:
            proof = tree.consistency(size1, size2)
            root1, root2 = tree.root(size1), tree.root(size2)
            verify_consistency(hasher, size1, size2, root1, root2, proof)
            good = (size1, size2, root1.hex(), root2.hex(), [p.hex() for p in proof])
            cases.append((scheme, *good, True))
            if proof:
                cases.append((scheme, *good[:4], [flip(proof[0]).hex(), *good[4][1:]], False))
                cases.append((scheme, *good[:4], good[4][:-1], False))
            if 0 < size1 < size2:  # the empty tree is consistent with any tree
                cases.append((scheme, size1, size2, root1.hex(), flip(root2).hex(), good[4], False))
    got = run(
        page,
        "const m = await mod('merkle.js');"
        "const b = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));"
        "const out = [];"
        "for (const [s, n1, n2, r1, r2, p] of args[0]) {"
        "  try { await m.verifyConsistency(s, BigInt(n1), BigInt(n2), b(r1), b(r2), p.map(b));"
        "    out.push(true); } catch (e) { if (!(e instanceof m.ProofError)) throw e;"
        "    out.push(false); } }"
        "return out;",
        cases,
    )
    assert [(c[:3], g) for c, g in zip(cases, got, strict=True) if g != c[-1]] == []
