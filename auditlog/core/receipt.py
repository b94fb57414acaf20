"""Receipts: offline-verifiable proofs of inclusion in the c2sp.org/tlog-proof@v1 text format.

::

    c2sp.org/tlog-proof@v1
    extra <base64>                 (optional, unauthenticated)
    index <leaf index>
    <base64 inclusion proof hash>  (zero or more, the leaf's sibling first)
    <blank line>
    <the signed checkpoint, verbatim>

A receipt carries no entry: the verifier holds the event's envelope, canonicalizes it, and
:func:`verify_receipt` recomputes the leaf hash from it (with the log's hash scheme and the
large-envelope rule of :mod:`auditlog.core.entry`), checks the checkpoint's signature against
trusted keys, then checks inclusion. The proof lines are 32-byte hashes of whichever scheme the
log uses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash
from auditlog.core.errors import OriginMismatch, ReceiptError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.note import NoteVerifier
from auditlog.core.proof import verify_inclusion

__all__ = ["RECEIPT_HEADER", "Receipt", "VerifiedReceipt", "verify_receipt"]

RECEIPT_HEADER: Final = "c2sp.org/tlog-proof@v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ReceiptError(f"{what} is not base64: {text!r}") from exc
    if _b64(data) != text:
        raise ReceiptError(f"{what} is not canonical base64: {text!r}")
    return data


@dataclass(frozen=True, slots=True)
class Receipt:
    """A tlog-proof: leaf index, inclusion proof, the signed checkpoint, optional extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ReceiptError(f"negative index {self.index}")
        if any(len(h) != HASH_SIZE for h in self.proof):
            raise ReceiptError(f"proof hashes must be {HASH_SIZE} bytes")
        if not self.checkpoint.endswith("\n"):
            raise ReceiptError("the checkpoint must be a whole signed note")

    def to_text(self) -> str:
        """The receipt as tlog-proof text."""
        lines = [RECEIPT_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64(h) for h in self.proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def from_text(cls, text: str) -> Receipt:
        """Parse tlog-proof text; ReceiptError if it is malformed.

        The checkpoint is kept verbatim; its signatures are checked by :func:`verify_receipt`.
        """
        head, sep, checkpoint = text.partition("\n\n")
        if not sep or not checkpoint:
            raise ReceiptError("receipt has no checkpoint after a blank line")
        lines = head.split("\n")
        if lines[0] != RECEIPT_HEADER:
            raise ReceiptError(f"receipt must start with {RECEIPT_HEADER!r}")
        pos = 1
        extra: bytes | None = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = _unb64(lines[pos][len("extra ") :], "extra data")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise ReceiptError("receipt has no 'index' line")
        digits = lines[pos][len("index ") :]
        if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
            raise ReceiptError(f"receipt index {digits!r} is not a decimal without leading zeros")
        proof = tuple(_unb64(line, "proof hash") for line in lines[pos + 1 :])
        try:
            return cls(int(digits), proof, checkpoint, extra)
        except ReceiptError:
            raise
        except ValueError as exc:  # int() digit limits
            raise ReceiptError(str(exc)) from exc


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a verified receipt proves: this leaf is at ``index`` in the signed ``checkpoint``."""

    checkpoint: Checkpoint
    index: int
    leaf_hash: bytes


def verify_receipt(
    receipt: Receipt,
    canonical_envelope: bytes,
    verifiers: Sequence[NoteVerifier],
    hasher: LogHasher,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify that the envelope is in the log whose checkpoint a trusted key signed.

    Raises SignatureError / MalformedNote for the checkpoint, OriginMismatch when ``origin`` is
    given and differs, MalformedProof / RootMismatch for the inclusion proof, InvalidEvent if
    ``canonical_envelope`` is not an envelope at all.
    """
    note = open_checkpoint_note(receipt.checkpoint, verifiers)
    checkpoint = Checkpoint.from_text(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
    leaf = leaf_hash(hasher, canonical_envelope)
    verify_inclusion(hasher, receipt.index, checkpoint.size, leaf, receipt.proof, checkpoint.root)
    return VerifiedReceipt(checkpoint, receipt.index, leaf)
