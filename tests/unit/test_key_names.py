"""The key-name rule (auditlog/core/log_keys.py): each log signs under its origin; a key-name
rotation from the deployment-wide name keeps every old and new checkpoint verifying, with the
deployment's vkey and with each log's own, and widens no one's trust."""

from __future__ import annotations

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.consistency import verify_checkpoints
from auditlog.core.cosignature import AddCheckpoint, Cosigner, decide_add_checkpoint
from auditlog.core.entry import leaf_hash
from auditlog.core.errors import OriginMismatch, SignatureError
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.log_keys import (
    checkpoint_signers,
    checkpoint_verifiers,
    log_vkey,
    open_checkpoint_note,
)
from auditlog.core.note import NoteSigner, NoteVerifier, parse_note, sign_note
from auditlog.core.policy import parse_policy
from auditlog.core.proof import consistency_proof, inclusion_proof
from auditlog.core.receipt import Receipt, verify_receipt
from sealer.store import sign_checkpoint

HASHER = get_hasher("rfc6962-sha256")
BASE = "keys.example"
ORIGIN = f"{BASE}/audit.events/0"
OTHER = f"{BASE}/audit.events/1"
KEY = NoteSigner.generate(BASE)  # the deployment's key, under the deployment-wide name
DEPLOYMENT = KEY.verifier
LOG_KEY = NoteVerifier.from_vkey(log_vkey(DEPLOYMENT, ORIGIN))
ENTRIES = [f'{{"n":{i}}}'.encode() for i in range(7)]


def _checkpoint(size: int, origin: str = ORIGIN) -> tuple[Checkpoint, dict[object, bytes]]:
    result = integrate(HASHER, 0, {}, [leaf_hash(HASHER, e) for e in ENTRIES[:size]])
    return Checkpoint(origin, size, result.root), dict(result.tiles)


def _before(size: int, origin: str = ORIGIN) -> str:
    """A checkpoint as sealers signed them before the rule: the deployment-wide name only."""
    return sign_note(_checkpoint(size, origin)[0].to_text(), [KEY])


def _overlap(size: int, origin: str = ORIGIN) -> str:
    return sign_checkpoint(KEY, _checkpoint(size, origin)[0], legacy_name=True)


def _after(size: int, origin: str = ORIGIN) -> str:
    return sign_checkpoint(KEY, _checkpoint(size, origin)[0], legacy_name=False)


def test_a_log_vkey_is_the_deployment_key_under_the_origin() -> None:
    assert LOG_KEY.name == ORIGIN
    assert LOG_KEY.public_bytes == DEPLOYMENT.public_bytes
    assert LOG_KEY.key_id != DEPLOYMENT.key_id  # the key ID covers the name
    assert LOG_KEY.vkey() == KEY.named(ORIGIN).vkey()
    assert log_vkey(DEPLOYMENT, OTHER) != LOG_KEY.vkey()


def test_checkpoints_are_signed_under_the_origin_and_during_the_overlap_the_old_name() -> None:
    after = parse_note(_after(3))
    assert [(s.name, s.key_id) for s in after.signatures] == [(ORIGIN, LOG_KEY.key_id)]
    overlap = parse_note(_overlap(3))
    assert [s.name for s in overlap.signatures] == [ORIGIN, BASE]
    # The same Ed25519 signature: a note's signature covers its text, not the key name.
    assert overlap.signatures[0].sig == overlap.signatures[1].sig
    # A key already named after the one origin it signs is not listed twice.
    single = NoteSigner.generate(ORIGIN)
    signers = checkpoint_signers(single, ORIGIN, legacy_name=True)
    assert [(s.name, s.key_id) for s in signers] == [(ORIGIN, single.key_id)]


@pytest.mark.parametrize("note", [_before(4), _overlap(4), _after(4)])
@pytest.mark.parametrize("key", [DEPLOYMENT, LOG_KEY], ids=["deployment", "log"])
def test_every_checkpoint_of_the_rotation_verifies_with_either_vkey(
    note: str, key: NoteVerifier
) -> None:
    opened = open_checkpoint_note(note, [key])
    assert Checkpoint.from_text(opened.text).size == 4


@pytest.mark.parametrize("note", [_before(4, OTHER), _overlap(4, OTHER), _after(4, OTHER)])
def test_a_log_vkey_verifies_no_other_log(note: str) -> None:
    with pytest.raises(SignatureError):
        open_checkpoint_note(note, [LOG_KEY])
    # The deployment's key covers both logs.
    assert open_checkpoint_note(note, [DEPLOYMENT]).signatures


def test_trust_does_not_widen() -> None:
    # The same key material under a name that does not cover the origin derives nothing.
    elsewhere = DEPLOYMENT.named("elsewhere.example")
    for note in (_before(2), _after(2)):
        with pytest.raises(SignatureError):
            open_checkpoint_note(note, [elsewhere])
    prefix_lookalike = DEPLOYMENT.named("keys.exampl")  # no "/" boundary
    with pytest.raises(SignatureError):
        open_checkpoint_note(_after(2), [prefix_lookalike])
    # A signature under a name that does not cover the origin is not the log's, whoever signs.
    text = _checkpoint(2)[0].to_text()
    stray = sign_note(text, [KEY.named("unrelated")])
    with pytest.raises(SignatureError):
        open_checkpoint_note(stray, [DEPLOYMENT, LOG_KEY])
    # Another key under the right names verifies nothing.
    impostor = NoteSigner.generate(BASE)
    forged = sign_checkpoint(impostor, _checkpoint(2)[0], legacy_name=True)
    with pytest.raises(SignatureError):
        open_checkpoint_note(forged, [DEPLOYMENT, LOG_KEY])


def test_a_bad_signature_under_a_derived_name_rejects_the_note() -> None:
    good = _overlap(3)
    text, sigs = good.split("\n\n", 1)
    origin_line, legacy_line = sigs.strip("\n").split("\n")
    # Keep the legacy name's valid signature, replace the origin name's with another note's.
    other = parse_note(_overlap(4)).signatures[0].line()
    with pytest.raises(SignatureError, match="does not verify"):
        open_checkpoint_note(f"{text}\n\n{other}\n{legacy_line}\n", [DEPLOYMENT])
    assert origin_line.startswith(f"\u2014 {ORIGIN} ")


def test_verifiers_are_derived_only_for_covering_names() -> None:
    names = {ORIGIN, BASE, "unrelated", f"{BASE}/audit.events"}
    derived = checkpoint_verifiers(ORIGIN, [DEPLOYMENT], names)
    assert {v.name for v in derived} == {BASE, ORIGIN, f"{BASE}/audit.events"}
    assert checkpoint_verifiers(OTHER, [LOG_KEY], names) == [LOG_KEY]


def test_consistency_across_the_rotation() -> None:
    old_cp, _ = _checkpoint(3)
    _, tiles = _checkpoint(7)
    proof = consistency_proof(HASHER, 3, 7, tiles)  # type: ignore[arg-type]
    for key in (DEPLOYMENT, LOG_KEY):
        for old, new in (
            (_before(3), _overlap(7)),
            (_overlap(3), _after(7)),
            (_before(3), _after(7)),
        ):
            result = verify_checkpoints(old, new, proof, [key], HASHER, origin=ORIGIN)
            assert (result.old.root, result.new.size) == (old_cp.root, 7)


def test_receipts_from_before_the_rotation_verify_with_the_log_vkey() -> None:
    _, tiles = _checkpoint(7)
    for note in (_before(7), _after(7)):
        receipt = Receipt(5, tuple(inclusion_proof(HASHER, 5, 7, tiles)), note)  # type: ignore[arg-type]
        verified = verify_receipt(receipt, ENTRIES[5], [LOG_KEY], HASHER)
        assert verified.checkpoint.origin == ORIGIN


def test_a_policy_with_a_log_vkey_pins_that_log() -> None:
    policy = parse_policy(f"log {LOG_KEY.vkey()}\nquorum none\n")
    for note in (_before(2), _overlap(2), _after(2)):
        assert policy.verify(note).checkpoint.origin == ORIGIN
    for note in (_before(2, OTHER), _after(2, OTHER)):
        with pytest.raises(SignatureError):
            policy.verify(note)
    deployment_policy = parse_policy(f"log {DEPLOYMENT.vkey()}\nquorum none\n")
    assert deployment_policy.verify(_after(2, OTHER)).checkpoint.origin == OTHER
    # The deployment's key does not sign for other prefixes, whatever names the note uses.
    foreign = sign_checkpoint(KEY, _checkpoint(2, "foreign.example/x/0")[0], legacy_name=True)
    with pytest.raises(OriginMismatch):
        deployment_policy.verify(foreign)


def test_a_witness_configured_with_the_log_vkey_follows_the_rotation() -> None:
    witness = Cosigner.generate("witness.example")
    state: dict[str, tuple[int, bytes]] = {}
    _, tiles = _checkpoint(7)
    steps = [(0, _before(3)), (3, _overlap(5)), (5, _after(7))]
    for old, note in steps:
        size = Checkpoint.from_text(parse_note(note).text).size
        proof = tuple(consistency_proof(HASHER, old, size, tiles)) if old else ()  # type: ignore[arg-type]
        answer = decide_add_checkpoint(
            AddCheckpoint(old, proof, note), {ORIGIN: [LOG_KEY]}, state.get, HASHER, witness, 1
        )
        assert answer.status == 200, answer.body
        assert answer.store is not None
        state[ORIGIN] = answer.store[:2]


def test_the_sealer_signs_the_old_name_until_told_not_to() -> None:
    from auditlog.runtime.settings import SettingsError
    from sealer.settings import Settings as SealerSettings

    assert SealerSettings.from_env({}).legacy_key_name is True
    assert SealerSettings.from_env({"AUDITLOG_LEGACY_KEY_NAME": "off"}).legacy_key_name is False
    with pytest.raises(SettingsError, match="AUDITLOG_LEGACY_KEY_NAME"):
        SealerSettings.from_env({"AUDITLOG_LEGACY_KEY_NAME": "yes"})


def test_the_query_service_takes_the_deployment_vkey() -> None:
    from auditlog.runtime.settings import SettingsError
    from query.settings import Settings as QuerySettings

    assert QuerySettings.from_env({}).vkey is None
    assert QuerySettings.from_env({"AUDITLOG_VKEY": DEPLOYMENT.vkey()}).vkey == DEPLOYMENT.vkey()
    with pytest.raises(SettingsError, match="AUDITLOG_VKEY"):
        QuerySettings.from_env({"AUDITLOG_VKEY": "not-a-vkey"})
