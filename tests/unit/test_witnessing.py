"""cosignature/v1, tlog-policy, the witness's add-checkpoint verdict, checkpoint consistency."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.consistency import Rollback, verify_checkpoints
from auditlog.core.cosignature import (
    AddCheckpoint,
    CosignatureVerifier,
    Cosigner,
    cosigned_message,
    decide_add_checkpoint,
    verified_cosigners,
)
from auditlog.core.errors import MalformedNote, MalformedProof, RootMismatch, SignatureError
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner, NoteVerifier, parse_note, sign_note
from auditlog.core.policy import PolicyError, QuorumNotMet, parse_policy
from auditlog.core.proof import consistency_proof
from auditlog.core.tiles import TileID

HASHER = get_hasher("rfc6962-sha256")
ORIGIN = "example.test/log"
LOG = NoteSigner.generate("example.test")


def tree(n: int) -> tuple[bytes, dict[TileID, bytes]]:
    """Root and tiles of a log of ``n`` leaves (n < 65536)."""
    from auditlog.core.integrate import integrate

    leaves = [HASHER.hash_leaf(str(i).encode()) for i in range(n)]
    result = integrate(HASHER, 0, {}, leaves)
    return result.root, result.tiles


def checkpoint(n: int, signer: NoteSigner = LOG) -> str:
    root, _ = tree(n)
    return sign_note(Checkpoint(ORIGIN, n, root).to_text(), [signer])


def proof(old: int, new: int) -> tuple[bytes, ...]:
    return tuple(consistency_proof(HASHER, old, new, tree(new)[1]))


# -- cosignature/v1 ---------------------------------------------------------------------------
def test_cosignature_key_id_message_and_wire_form() -> None:
    seed = bytes(range(32))
    cosigner = Cosigner("witness.test/w1", Ed25519PrivateKey.from_private_bytes(seed))
    public = cosigner.verifier.public_bytes
    assert (
        cosigner.verifier.key_id == hashlib.sha256(b"witness.test/w1\n\x04" + public).digest()[:4]
    )
    vkey = cosigner.vkey()
    assert vkey.split("+", 2)[2] == base64.b64encode(b"\x04" + public).decode()
    assert CosignatureVerifier.from_vkey(vkey).key_id == cosigner.verifier.key_id

    text = Checkpoint(ORIGIN, 5, bytes(32)).to_text()
    line = cosigner.cosign(text, 1679315147)
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == cosigner.verifier.key_id
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    assert (
        cosigned_message(text, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + text.encode()
    )
    note = sign_note(text, [LOG]) + line + "\n"
    assert verified_cosigners(note, {"w1": cosigner.verifier}) == {"w1": 1679315147}


def test_a_note_key_does_not_verify_as_a_cosigner_and_vice_versa() -> None:
    cosigner = Cosigner.generate("w")
    with pytest.raises(MalformedNote):
        CosignatureVerifier.from_vkey(LOG.vkey())
    with pytest.raises(MalformedNote):
        NoteVerifier.from_vkey(cosigner.vkey())


def test_a_forged_cosignature_fails_closed() -> None:
    cosigner = Cosigner.generate("w")
    text = Checkpoint(ORIGIN, 5, bytes(32)).to_text()
    line = cosigner.cosign(text, 10)
    other_text = Checkpoint(ORIGIN, 6, bytes(32)).to_text()
    with pytest.raises(SignatureError):
        verified_cosigners(sign_note(other_text, [LOG]) + line + "\n", {"w": cosigner.verifier})


def test_cosigner_from_keygen_skey() -> None:
    signer = NoteSigner.generate("witness.test")
    cosigner = Cosigner.from_skey(signer.skey())
    assert cosigner.verifier.public_bytes == signer.verifier.public_bytes
    assert cosigner.verifier.key_id != signer.key_id  # type 0x04, not 0x01


# -- tlog-policy ------------------------------------------------------------------------------
def witnesses(n: int) -> list[Cosigner]:
    return [Cosigner.generate(f"w{i}.test") for i in range(n)]


def test_policy_groups_and_quorum() -> None:
    ws = witnesses(5)
    text = (
        f"# example\nlog {LOG.vkey()}\n\n"
        + "".join(f"witness X{i} {w.vkey()}\n" for i, w in enumerate(ws[:3]))
        + "group X 2 X0 X1 X2\n"
        + "".join(f"witness Y{i} {w.vkey()} https://y{i}.test\n" for i, w in enumerate(ws[3:]))
        + "group Y any Y0 Y1\n\tgroup XY all X Y  \nquorum XY\n"
    )
    policy = parse_policy(text)
    assert policy.quorum == "XY"
    assert policy.witness_urls == {"Y0": "https://y0.test", "Y1": "https://y1.test"}
    assert policy.satisfied({"X0", "X2", "Y1"})
    assert not policy.satisfied({"X0", "Y1"})
    assert not policy.satisfied({"X0", "X1", "X2"})

    body = Checkpoint(ORIGIN, 3, tree(3)[0]).to_text()
    note = sign_note(body, [LOG])
    lines = [ws[i].cosign(body, 100 + i) + "\n" for i in (0, 2, 4)]
    verified = policy.verify(note + "".join(lines))
    assert set(verified.cosigners) == {"X0", "X2", "Y1"}
    with pytest.raises(QuorumNotMet):
        policy.verify(note + lines[0] + lines[2])
    with pytest.raises(SignatureError):  # not signed by the policy's log
        policy.verify(sign_note(body, [NoteSigner.generate("example.test")]) + "".join(lines))


@pytest.mark.parametrize(
    "text",
    [
        "",  # no quorum
        "quorum none\nquorum none\n",
        "quorum w\n",  # undefined
        "group g any w\nquorum g\n",  # member before definition
        "witness none {w}\nquorum none\n",
        "witness a {w}\nwitness b {w}\nquorum a\n",  # duplicate key
        "witness a {w}\ngroup g 2 a\nquorum g\n",  # k > n
        "witness a {w}\ngroup g 0 a\nquorum g\n",
        "witness a {w}\ngroup g any a a\nquorum g\n",
        "witness a {log}\nquorum a\n",  # a log key is not a cosigner key
        "frobnicate\nquorum none\n",
        "quorum none\x00\n",
    ],
)
def test_bad_policies_are_rejected(text: str) -> None:
    w = Cosigner.generate("w.test").vkey()
    with pytest.raises(PolicyError):
        parse_policy(text.format(w=w, log=LOG.vkey()))


def test_quorum_none_needs_only_the_log() -> None:
    policy = parse_policy(f"log {LOG.vkey()}\nquorum none\n")
    assert policy.verify(checkpoint(4)).checkpoint.size == 4


# -- the witness's verdict --------------------------------------------------------------------
def decide(
    req: AddCheckpoint, stored: tuple[int, bytes] | None, cosigner: Cosigner
) -> tuple[int, str]:
    answer = decide_add_checkpoint(
        req, {ORIGIN: [LOG.verifier]}, lambda _origin: stored, HASHER, cosigner, 1234
    )
    return answer.status, answer.body


def test_witness_add_checkpoint_rules() -> None:
    w = Cosigner.generate("w.test")
    first = AddCheckpoint(0, (), checkpoint(100))
    status, body = decide(first, None, w)
    assert status == 200
    assert verified_cosigners(first.note + body, {"w": w.verifier}) == {"w": 1234}

    root100 = tree(100)[0]
    ok = AddCheckpoint(100, proof(100, 300), checkpoint(300))
    assert decide(ok, (100, root100), w)[0] == 200
    assert decide(ok, (90, tree(90)[0]), w) == (409, "90\n")  # stale old size
    bad = AddCheckpoint(100, proof(99, 300), checkpoint(300))
    assert decide(bad, (100, root100), w)[0] == 422
    forked = AddCheckpoint(100, (), sign_note(Checkpoint(ORIGIN, 100, bytes(32)).to_text(), [LOG]))
    assert decide(forked, (100, root100), w) == (409, "100\n")
    stranger = AddCheckpoint(0, (), checkpoint(100, NoteSigner.generate("example.test")))
    assert decide(stranger, None, w)[0] == 403
    unknown = AddCheckpoint(
        0, (), sign_note(Checkpoint("other/log", 1, bytes(32)).to_text(), [LOG])
    )
    assert decide(unknown, None, w)[0] == 404
    assert decide(AddCheckpoint(400, (), checkpoint(300)), None, w)[0] == 400
    assert decide(AddCheckpoint(0, proof(100, 300), checkpoint(300)), None, w)[0] == 422


def test_add_checkpoint_body_round_trip_and_limits() -> None:
    req = AddCheckpoint(100, proof(100, 300), checkpoint(300))
    assert AddCheckpoint.from_text(req.to_text()) == req
    for body in ("old 01\n\nx\n", "new 1\n\nx\n", "old 1\nnot base64!\n\nx\n", "old 1\n"):
        with pytest.raises(MalformedNote):
            AddCheckpoint.from_text(body)
    too_long = "old 1\n" + (base64.b64encode(bytes(32)).decode() + "\n") * 64 + "\nx\n"
    with pytest.raises(MalformedNote):
        AddCheckpoint.from_text(too_long)


# -- consistency between two signed checkpoints -----------------------------------------------
def test_verify_checkpoints() -> None:
    v = [LOG.verifier]
    result = verify_checkpoints(checkpoint(100), checkpoint(300), proof(100, 300), v, HASHER)
    assert (result.old.size, result.new.size) == (100, 300)
    with pytest.raises(Rollback):
        verify_checkpoints(checkpoint(300), checkpoint(100), (), v, HASHER)
    fork = sign_note(Checkpoint(ORIGIN, 100, bytes(32)).to_text(), [LOG])
    with pytest.raises(RootMismatch):
        verify_checkpoints(checkpoint(100), fork, (), v, HASHER)
    with pytest.raises(RootMismatch):
        verify_checkpoints(checkpoint(100), checkpoint(300), proof(100, 299), v, HASHER)
    with pytest.raises(MalformedProof):
        verify_checkpoints(checkpoint(100), checkpoint(300), proof(100, 300)[:-1], v, HASHER)
    with pytest.raises(SignatureError):
        verify_checkpoints(
            checkpoint(100, NoteSigner.generate("x")), checkpoint(300), (), v, HASHER
        )
    assert parse_note(checkpoint(3)).text.startswith(ORIGIN)
