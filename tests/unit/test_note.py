"""Signed notes, checkpoints and receipts: known answers, round trips, and tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.errors import (
    InvalidEvent,
    MalformedNote,
    MalformedProof,
    NoteError,
    OriginMismatch,
    ProofError,
    ReceiptError,
    RootMismatch,
    SignatureError,
)
from auditlog.core.hashing import HASH_SCHEMES, get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.note import (
    MAX_SIGNATURES,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_note,
    sign_note,
)
from auditlog.core.proof import inclusion_proof
from auditlog.core.receipt import Receipt, verify_receipt
from auditlog.core.tiles import TileID

# Known-answer vectors from golang.org/x/mod/sumdb/note's documentation examples.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
    "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG + "\n"


def test_go_known_answers() -> None:
    signer = NoteSigner.from_skey(GO_SKEY)
    assert signer.vkey() == GO_VKEY
    assert signer.skey() == GO_SKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.sign(GO_TEXT) == GO_SIG
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    note = open_note(GO_NOTE, [verifier])
    assert note.text == GO_TEXT
    assert [(s.name, s.key_id.hex()) for s in note.signatures] == [("PeterNeumann", "c74f20a3")]


def test_generated_keys_round_trip() -> None:
    signer = NoteSigner.generate("audit.example.com/log")
    again = NoteSigner.from_skey(signer.skey())
    assert again.vkey() == signer.vkey()
    verifier = NoteVerifier.from_vkey(signer.vkey())
    assert verifier.key_id == signer.key_id
    assert signer.skey().startswith("PRIVATE+KEY+audit.example.com/log+")
    note = sign_note("hello\n", [signer])
    assert open_note(note, [verifier]).text == "hello\n"
    assert "PRIVATE" not in repr(signer)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong ID
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not Ed25519
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "PeterNeumann+c74f20a3+!!!",
    ],
)
def test_bad_vkeys(vkey: str) -> None:
    with pytest.raises(MalformedNote):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.replace("PRIVATE+KEY", "PRIVATE+KEYS"),
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY[:-4],
        "PRIVATE+KEY+PeterNeumann",
    ],
)
def test_bad_skeys(skey: str) -> None:
    with pytest.raises(MalformedNote):
        NoteSigner.from_skey(skey)


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + GO_SIG,  # no final newline
        "\x01" + GO_NOTE,
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Bad Name") + "\n",
        GO_NOTE + "Unexpected line.\n",
        GO_TEXT + "\n— PeterNeumann \n",
        GO_TEXT + "\n— PeterNeumann AAAA\n",  # too short to hold a key ID and a signature
        GO_TEXT + "\n- PeterNeumann " + GO_SIG.split(" ")[2] + "\n",  # ASCII hyphen
        GO_TEXT + "\n" + GO_SIG + "=\n",
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(MalformedNote):
        open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])


def test_tampered_text_or_signature_is_rejected() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    with pytest.raises(SignatureError):
        open_note(GO_NOTE.replace("problem,", "problems,"), [verifier])
    raw = bytearray(base64.b64decode(GO_SIG.split(" ")[2]))
    raw[10] ^= 1
    bad = GO_TEXT + "\n— PeterNeumann " + base64.b64encode(raw).decode() + "\n"
    with pytest.raises(SignatureError):
        open_note(bad, [verifier])


def test_unknown_keys_are_ignored_but_one_trusted_signature_is_required() -> None:
    log, witness, stranger = (NoteSigner.generate(n) for n in ("log", "witness", "stranger"))
    note = sign_note("body\n", [stranger, log, witness])
    opened = open_note(note, [log.verifier])
    assert [s.name for s in opened.signatures] == ["log"]
    assert len(parse_note(note).signatures) == 3
    with pytest.raises(SignatureError):
        open_note(note, [NoteSigner.generate("other").verifier])
    with pytest.raises(SignatureError):
        open_note(note, [])
    # Same name, different key: still unknown, so ignored rather than failing.
    impostor = NoteSigner.generate("log")
    assert open_note(sign_note("body\n", [impostor, log]), [log.verifier]).text == "body\n"


def test_sixteen_signatures_are_accepted_and_the_cap_is_enforced() -> None:
    signers = [NoteSigner.generate(f"witness{i}") for i in range(16)]
    note = sign_note("body\n", signers)
    assert len(open_note(note, [signers[15].verifier]).signatures) == 1
    assert len(open_note(note, [s.verifier for s in signers]).signatures) == 16
    line = signers[0].sign("body\n")
    too_many = "body\n\n" + (line + "\n") * (MAX_SIGNATURES + 1)
    with pytest.raises(MalformedNote):
        parse_note(too_many)


def test_repeated_signatures_by_one_key_count_once() -> None:
    signer = NoteSigner.generate("log")
    line = signer.sign("body\n")
    note = open_note("body\n\n" + line + "\n" + line + "\n", [signer.verifier])
    assert len(note.signatures) == 1


def test_notes_may_contain_blank_lines() -> None:
    signer = NoteSigner.generate("log")
    note = sign_note("a\n\nb\n", [signer])
    assert open_note(note, [signer.verifier]).text == "a\n\nb\n"


def test_signature_line_round_trip() -> None:
    sig = NoteSignature("name", b"\x01\x02\x03\x04", b"s" * 64)
    assert parse_note("x\n\n" + sig.line() + "\n").signatures == [sig]


@pytest.mark.parametrize("text", ["no newline", "bad\x00char\n", "lone \ud800\n"])
def test_unsignable_texts(text: str) -> None:
    with pytest.raises(MalformedNote):
        sign_note(text, [NoteSigner.generate("log")])


# -- checkpoints ----------------------------------------------------------------------------

ROOT = hashlib.sha256(b"root").digest()


def test_checkpoint_round_trip() -> None:
    cp = Checkpoint("audit.example.com/audit.events/0", 1234, ROOT)
    text = cp.to_text()
    assert text == f"audit.example.com/audit.events/0\n1234\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint.from_text(text) == cp
    ext = Checkpoint("o", 0, ROOT, ("ext line",))
    assert Checkpoint.from_text(ext.to_text()) == ext


B64 = base64.b64encode(ROOT).decode()
URLSAFE = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"o\n1\n{B64}",
        f"\n1\n{B64}\n",
        f"o\n01\n{B64}\n",
        f"o\n-1\n{B64}\n",
        f"o\n+1\n{B64}\n",
        f"o\n1 \n{B64}\n",
        f"o\n\u0661\n{B64}\n",  # Arabic-Indic digit one
        f"o\n{2**63}\n{B64}\n",
        f"o\n1\n{B64[:-1]}\n",
        f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n1\n{URLSAFE}\n",
        f"o\n1\n{B64}\n\n",
        "o\n1\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(MalformedNote):
        Checkpoint.from_text(text)


def test_non_canonical_base64_roots_are_rejected() -> None:
    # The last base64 digit of 32 bytes carries 2 padding bits: setting them is non-canonical.
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = B64[-2]
    tweaked = B64[:-2] + digits[digits.index(last) | 1] + "="
    if tweaked != B64:
        with pytest.raises(MalformedNote):
            Checkpoint.from_text(f"o\n1\n{tweaked}\n")


# -- receipts -------------------------------------------------------------------------------


def make_log(
    scheme: str, count: int = 10
) -> tuple[list[bytes], dict[TileID, bytes], NoteSigner, str]:
    hasher = get_hasher(scheme)
    envs = [
        Envelope({"message": f"m{i}"}, f"2024-01-01T00:00:00.{i:06d}Z").canonical
        for i in range(count)
    ]
    result = integrate(hasher, 0, {}, [leaf_hash(hasher, e) for e in envs])
    signer = NoteSigner.generate("audit.example.com/audit.events/0")
    checkpoint = Checkpoint("audit.example.com/audit.events/0", result.size, result.root)
    return envs, result.tiles, signer, sign_note(checkpoint.to_text(), [signer])


@pytest.mark.parametrize("scheme", HASH_SCHEMES)
def test_receipts_verify(scheme: str) -> None:
    hasher = get_hasher(scheme)
    envs, tiles, signer, note = make_log(scheme)
    for index, env in enumerate(envs):
        receipt = Receipt(index, tuple(inclusion_proof(hasher, index, len(envs), tiles)), note)
        parsed = Receipt.from_text(receipt.to_text())
        assert parsed == receipt
        verified = verify_receipt(
            parsed, env, [signer.verifier], hasher, origin="audit.example.com/audit.events/0"
        )
        assert verified.index == index
        assert verified.checkpoint.size == len(envs)
        assert verified.leaf_hash == leaf_hash(hasher, env)


def test_receipt_text_format() -> None:
    receipt = Receipt(3, (b"a" * 32, b"b" * 32), "cp\n\n— k sig\n", extra=b"hi")
    text = receipt.to_text()
    assert text == (
        "c2sp.org/tlog-proof@v1\nextra aGk=\nindex 3\n"
        f"{base64.b64encode(b'a' * 32).decode()}\n{base64.b64encode(b'b' * 32).decode()}\n"
        "\ncp\n\n— k sig\n"
    )
    assert Receipt.from_text(text) == receipt
    bare = Receipt(0, (), "cp\n\n— k sig\n")
    assert bare.to_text() == "c2sp.org/tlog-proof@v1\nindex 0\n\ncp\n\n— k sig\n"
    assert Receipt.from_text(bare.to_text()) == bare


@pytest.mark.parametrize(
    "text",
    [
        "",
        "c2sp.org/tlog-proof@v2\nindex 0\n\ncp\n",
        "c2sp.org/tlog-proof@v1\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex -1\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex x\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex 0\nnot base64!\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex 0\nYWJj\n\ncp\n",  # 3-byte hash
        "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex 0\nextra aGk=\n\ncp\n",  # extra after index
        "c2sp.org/tlog-proof@v1\nindex 0\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n\ncp",
    ],
)
def test_malformed_receipts(text: str) -> None:
    with pytest.raises(ReceiptError):
        Receipt.from_text(text)


def test_tampered_receipts_fail() -> None:
    scheme = "rfc6962-sha256"
    hasher = get_hasher(scheme)
    envs, tiles, signer, note = make_log(scheme)
    proof = tuple(inclusion_proof(hasher, 4, len(envs), tiles))
    good = Receipt(4, proof, note)
    verifiers = [signer.verifier]
    verify_receipt(good, envs[4], verifiers, hasher)

    def fails(
        receipt: Receipt, env: bytes = envs[4], kind: type[Exception] = ProofError, **kw: str
    ) -> None:
        with pytest.raises(kind):
            verify_receipt(Receipt.from_text(receipt.to_text()), env, verifiers, hasher, **kw)

    fails(Receipt(5, proof, note))
    fails(Receipt(4, proof[:-1], note), kind=MalformedProof)
    fails(Receipt(4, (*proof, proof[0]), note), kind=MalformedProof)
    fails(Receipt(4, (proof[1], proof[0], *proof[2:]), note), kind=RootMismatch)
    fails(Receipt(4, (bytes(32), *proof[1:]), note), kind=RootMismatch)
    fails(Receipt(40, proof, note), kind=MalformedProof)
    fails(good, env=envs[3], kind=RootMismatch)
    fails(good, env=envs[4].replace(b"m4", b"m5"), kind=RootMismatch)
    fails(good, kind=OriginMismatch, origin="audit.example.com/audit.events/1")
    # The checkpoint: resized, re-rooted, re-signed by someone else, or unsigned.
    body, sig = note.split("\n\n")
    lines = body.split("\n")
    resized = "\n".join([lines[0], "11", *lines[2:]]) + "\n\n" + sig
    fails(Receipt(4, proof, resized), kind=SignatureError)
    forged = sign_note(
        body.replace(lines[2], base64.b64encode(bytes(32)).decode()) + "\n",
        [NoteSigner.generate(signer.name)],
    )
    fails(Receipt(4, proof, forged), kind=SignatureError)
    fails(Receipt(4, proof, body + "\n\n"), kind=MalformedNote)
    # A correctly signed note that is not a checkpoint.
    fails(Receipt(4, proof, sign_note("not a checkpoint\n", [signer])), kind=MalformedNote)
    with pytest.raises(InvalidEvent):
        verify_receipt(good, b"not an envelope", verifiers, hasher)
    assert issubclass(SignatureError, NoteError)


def test_receipts_from_the_wrong_scheme_fail() -> None:
    envs, tiles, signer, note = make_log("rfc6962-sha256")
    hasher = get_hasher("rfc6962-sha256")
    receipt = Receipt(2, tuple(inclusion_proof(hasher, 2, len(envs), tiles)), note)
    for other in ("rfc6962-blake3", "pangea-sha256"):
        with pytest.raises(RootMismatch):
            verify_receipt(receipt, envs[2], [signer.verifier], get_hasher(other))
