"""C2SP tlog-cosignature ``cosignature/v1`` (Ed25519) and the tlog-witness add-checkpoint rules.

A cosignature is a signed-note signature line whose key ID uses signature type 0x04::

    key ID  = SHA-256(<name> || "\\n" || 0x04 || 32-byte public key)[:4]
    message = "cosignature/v1\\ntime <unix seconds>\\n" || <checkpoint note text>
    wire    = key ID || u64 big-endian timestamp || 64-byte Ed25519 signature

A cosigner (witness) key is an ordinary Ed25519 seed; its vkey is written with type 0x04. The
witness's decision (:func:`decide_add_checkpoint`) is pure: the edge reads the witness's stored
state for the origin, calls it, and writes the new state in the same atomic step.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.errors import MalformedNote, NoteError, ProofError, SignatureError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.note import NoteSignature, NoteVerifier, key_id, parse_note
from auditlog.core.proof import verify_consistency

__all__ = [
    "ALG_COSIGNATURE_V1",
    "FUTURE_SKEW",
    "MAX_PROOF_LINES",
    "AddCheckpoint",
    "CosignatureVerifier",
    "Cosigner",
    "Freshness",
    "WitnessAnswer",
    "cosigned_message",
    "decide_add_checkpoint",
    "split_fresh",
    "verified_cosigners",
]

ALG_COSIGNATURE_V1: Final = 0x04
MAX_PROOF_LINES: Final = 63
_MAX_TIMESTAMP: Final = (1 << 63) - 1
_SIG_PREFIX: Final = "\u2014 "
# How far a cosignature's timestamp may run ahead of the verifier's clock (clock skew); beyond
# it the spec lets verifiers reject it, and a freshness bound does.
FUTURE_SKEW: Final = 300


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header, time line, then the checkpoint note text."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature timestamp {timestamp} out of range")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class CosignatureVerifier:
    """A witness's public key (vkey type 0x04) under its name."""

    __slots__ = ("_public", "key_id", "name")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        # NoteVerifier validates names the signed-note way; reuse it rather than re-deriving.
        NoteVerifier(name, public_key)
        self.name = name
        self._public = public_key
        self.key_id = key_id(name, bytes([ALG_COSIGNATURE_V1]) + self.public_bytes)

    @property
    def public_bytes(self) -> bytes:
        return self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        name, _, rest = vkey.strip().partition("+")
        hex_id, _, key64 = rest.partition("+")
        try:
            key = base64.b64decode(key64.encode("ascii"), validate=True)
            expected = bytes.fromhex(hex_id) if len(hex_id) == 8 else b""
        except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
            raise MalformedNote(f"malformed witness key {vkey!r}") from exc
        if len(expected) != 4 or len(key) != 33 or key[0] != ALG_COSIGNATURE_V1:
            raise MalformedNote(f"witness key {name!r} is not a cosignature/v1 (0x04) vkey")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(key[1:]))
        if verifier.key_id != expected:
            raise MalformedNote(f"witness key {name!r}: key ID does not match the key")
        return verifier

    def vkey(self) -> str:
        encoded = _b64(bytes([ALG_COSIGNATURE_V1]) + self.public_bytes)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: str, sig: NoteSignature) -> int | None:
        """The cosignature's timestamp if ``sig`` is this key's valid cosignature of ``text``."""
        if sig.name != self.name or sig.key_id != self.key_id or len(sig.sig) != 8 + 64:
            return None
        timestamp = int.from_bytes(sig.sig[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            return None
        try:
            self._public.verify(sig.sig[8:], cosigned_message(text, timestamp))
        except InvalidSignature:
            return None
        return timestamp


class Cosigner:
    """A witness's signing key: an Ed25519 seed, cosigning under ``name``."""

    __slots__ = ("_private", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.verifier = CosignatureVerifier(name, private_key.public_key())

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Cosigner:
        """From a Go-style Ed25519 note skey (``auditlog keygen``): same seed, type 0x04 key ID.

        A witness key should sign nothing but cosignatures; the file format is shared only so
        that one key tool serves both.
        """
        # base64 may itself contain "+": split off exactly four fields.
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise MalformedNote("malformed signer key")
        try:
            key = base64.b64decode(parts[4].encode("ascii"), validate=True)
        except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
            raise MalformedNote("malformed signer key") from exc
        if len(key) != 33 or key[0] != 0x01:
            raise MalformedNote("signer key is not an Ed25519 key")
        return cls(parts[2], Ed25519PrivateKey.from_private_bytes(key[1:]))

    def vkey(self) -> str:
        return self.verifier.vkey()

    def cosign(self, text: str, timestamp: int) -> str:
        """The cosignature line for note text ``text`` (no trailing newline)."""
        sig = self._private.sign(cosigned_message(text, timestamp))
        raw = self.verifier.key_id + timestamp.to_bytes(8, "big") + sig
        return f"{_SIG_PREFIX}{self.name} {_b64(raw)}"


def verified_cosigners(note: str, witnesses: Mapping[str, CosignatureVerifier]) -> dict[str, int]:
    """Label -> timestamp for every valid cosignature by a known witness key.

    ``witnesses`` maps a caller's label (a policy's witness name) to the key. Fails closed like
    signed notes: a line that claims a known witness key (name and key ID) but does not verify
    is a SignatureError, not an absent cosignature.
    """
    parsed = parse_note(note)
    known = {(w.name, w.key_id): (label, w) for label, w in witnesses.items()}
    out: dict[str, int] = {}
    for sig in parsed.signatures:
        match = known.get((sig.name, sig.key_id))
        if match is None or match[0] in out:
            continue
        label, witness = match
        timestamp = witness.verify(parsed.text, sig)
        if timestamp is None:
            raise SignatureError(f"cosignature by witness {sig.name} does not verify")
        out[label] = timestamp
    return out


@dataclass(frozen=True, slots=True)
class Freshness:
    """How recent a cosignature must be to count: a verifier's bound on witness timestamps.

    A cosignature/v1 says "as of this time, this was the largest tree I saw". One older than
    ``max_age`` seconds before ``now`` says nothing about the log's recent behaviour, and one more
    than ``future_skew`` seconds after ``now`` comes from a witness whose clock cannot be trusted.
    ``now`` is given by the caller (POSIX seconds): the core reads no clock.
    """

    now: int
    max_age: int
    future_skew: int = FUTURE_SKEW

    def __post_init__(self) -> None:
        if self.max_age < 0 or self.future_skew < 0:
            raise ValueError("freshness bounds must not be negative")

    def problem(self, timestamp: int) -> str | None:
        """Why a cosignature made at ``timestamp`` does not count, or None when it does."""
        age = self.now - timestamp
        if age > self.max_age:
            return f"{age} s old, the bound is {self.max_age} s"
        if -age > self.future_skew:
            return f"{-age} s in the future, beyond the {self.future_skew} s clock skew allowed"
        return None


def split_fresh(
    cosigners: Mapping[str, int], freshness: Freshness
) -> tuple[dict[str, int], dict[str, str]]:
    """(label -> timestamp of the fresh cosignatures, label -> why each other one is stale)."""
    fresh: dict[str, int] = {}
    stale: dict[str, str] = {}
    for label, timestamp in cosigners.items():
        problem = freshness.problem(timestamp)
        if problem is None:
            fresh[label] = timestamp
        else:
            stale[label] = problem
    return fresh, stale


# -- tlog-witness add-checkpoint ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An add-checkpoint request body: old size, consistency proof, signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def to_text(self) -> str:
        lines = [f"old {self.old_size}", *(_b64(h) for h in self.proof)]
        return "\n".join(lines) + "\n\n" + self.note

    @classmethod
    def from_text(cls, body: str) -> AddCheckpoint:
        """Parse a request body; MalformedNote (answer 400) when it is not one."""
        head, sep, note = body.partition("\n\n")
        if not sep or not note:
            raise MalformedNote("request needs a blank line before the checkpoint")
        lines = head.split("\n")
        first = lines[0]
        digits = first.removeprefix("old ")
        if (
            not first.startswith("old ")
            or not digits.isascii()
            or not digits.isdigit()
            or (len(digits) > 1 and digits[0] == "0")
        ):
            raise MalformedNote(f"bad old size line {first!r}")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise MalformedNote(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof = []
        for line in lines[1:]:
            try:
                h = base64.b64decode(line.encode("ascii"), validate=True)
            except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
                raise MalformedNote(f"proof line {line!r} is not base64") from exc
            if len(h) != HASH_SIZE:
                raise MalformedNote(f"proof line {line!r} is not a {HASH_SIZE}-byte hash")
            proof.append(h)
        return cls(int(digits), tuple(proof), note)


@dataclass(frozen=True, slots=True)
class WitnessAnswer:
    """What the witness answers; ``store`` is the (size, root, note) to persist on 200."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    store: tuple[int, bytes, str] | None = None


def decide_add_checkpoint(
    request: AddCheckpoint,
    logs: Mapping[str, Sequence[NoteVerifier]],
    stored: Callable[[str], tuple[int, bytes] | None],
    hasher: LogHasher,
    cosigner: Cosigner,
    now: int,
) -> WitnessAnswer:
    """The witness's verdict on one request, per C2SP tlog-witness.

    ``stored(origin)`` returns the last cosigned (size, root) for the origin, or None; the edge
    must call this function and persist ``store`` under one lock, or two concurrent requests can
    roll the witness back (the race the spec describes).
    """
    try:
        text = parse_note(request.note).text
        checkpoint = Checkpoint.from_text(text)
    except NoteError as exc:
        return WitnessAnswer(400, f"malformed checkpoint: {exc}\n")
    verifiers = logs.get(checkpoint.origin)
    if verifiers is None:
        return WitnessAnswer(404, f"unknown log origin {checkpoint.origin!r}\n")
    try:
        open_checkpoint_note(request.note, verifiers)
    except NoteError as exc:
        return WitnessAnswer(403, f"checkpoint signature: {exc}\n")
    if request.old_size > checkpoint.size:
        return WitnessAnswer(400, "old size is larger than the checkpoint size\n")
    previous = stored(checkpoint.origin)
    have_size, have_root = previous if previous is not None else (0, hasher.empty_root())
    if request.old_size != have_size:
        return WitnessAnswer(409, f"{have_size}\n", "text/x.tlog.size")
    if have_size == checkpoint.size:
        if have_root != checkpoint.root:
            return WitnessAnswer(409, f"{have_size}\n", "text/x.tlog.size")
    elif have_size == 0:
        if request.proof:
            return WitnessAnswer(422, "the consistency proof from size 0 must be empty\n")
    else:
        try:
            verify_consistency(
                hasher, have_size, checkpoint.size, have_root, checkpoint.root, request.proof
            )
        except ProofError as exc:
            return WitnessAnswer(422, f"consistency proof: {exc}\n")
    line = cosigner.cosign(text, now)
    return WitnessAnswer(200, line + "\n", store=(checkpoint.size, checkpoint.root, request.note))
