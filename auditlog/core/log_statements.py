"""Signed statements a log makes about its own entries: what retention pruned, what was erased.

Both are C2SP signed notes, signed by the log's checkpoint key under the log's origin (the same
key name rule as checkpoints: :mod:`auditlog.core.log_keys`), so a verifier that trusts the
log's checkpoints trusts them with the same key and nothing else. Their second line names the
statement, and is never a decimal, so neither can be read as a checkpoint::

    <origin>
    auditlog-pruned/v1
    below <B>                       entries [0, B) may be absent: pruned by retention
    checkpoint <size> <root b64>    the signed tree the statement was made against (B <= size)
    time <YYYY-MM-DDTHH:MM:SSZ>

    <origin>
    auditlog-erasure/v1
    index <i>
    hash <event hash, 64 lowercase hex>
    leaf <leaf hash b64>            what the tree holds at index i, so the entry's receipt still
    time <YYYY-MM-DDTHH:MM:SSZ>     proves "an entry with hash H existed here"
    reason <one line of text>

A pruned bound only ever rises: of two statements of one log, the one made against the larger
checkpoint (or, against the same one, later) must not have the smaller bound
(:func:`bound_went_back`). Parsing is strict, as
for checkpoints, so that one statement has one spelling.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from auditlog.core.checkpoint import Checkpoint, parse_decimal, parse_hash
from auditlog.core.errors import MalformedNote, OriginMismatch
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.log_keys import checkpoint_signers, checkpoint_verifiers, open_checkpoint_note
from auditlog.core.note import NoteSigner, NoteVerifier, open_note, parse_note, sign_note
from auditlog.core.proof import verify_inclusion
from auditlog.core.receipt import Receipt

__all__ = [
    "ERASURE_HEADER",
    "PRUNED_HEADER",
    "ErasureRecord",
    "PrunedBound",
    "bound_went_back",
    "erased_entry",
    "erased_entry_leaf",
    "open_erasure",
    "open_pruned",
    "sign_statement",
    "verify_erased_receipt",
]

PRUNED_HEADER: Final = "auditlog-pruned/v1"
ERASURE_HEADER: Final = "auditlog-erasure/v1"
# What an erased entry's place in its entry bundle holds: the leaf, not the content.
ERASED_ENTRY_PREFIX: Final = b"auditlog-erased/v1 "
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_MAX_INDEX: Final = (1 << 63) - 1
MAX_REASON: Final = 1000


def _time(text: str) -> str:
    try:
        parsed = datetime.strptime(text, _TIME_FORMAT)
    except ValueError as exc:
        raise MalformedNote(f"time {text!r} is not YYYY-MM-DDTHH:MM:SSZ") from exc
    if parsed.strftime(_TIME_FORMAT) != text:
        raise MalformedNote(f"time {text!r} is not in its one spelling")
    return text


def _fields(text: str, header: str, keys: Sequence[str]) -> tuple[str, list[str]]:
    """The origin and the value of each ``key value`` line, in this exact order."""
    if not text.endswith("\n"):
        raise MalformedNote("statement text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 2 + len(keys) or lines[1] != header:
        raise MalformedNote(f"not an {header} statement")
    origin = lines[0]
    if not origin:
        raise MalformedNote("statement origin must not be empty")
    values = []
    for key, line in zip(keys, lines[2:], strict=True):
        name, sep, value = line.partition(" ")
        if name != key or not sep or not value:
            raise MalformedNote(f"{header}: expected a {key!r} line, got {line!r}")
        values.append(value)
    return origin, values


def _single_line(value: str, what: str) -> None:
    if not value or "\n" in value:
        raise MalformedNote(f"{what} must be a non-empty single line")


@dataclass(frozen=True, slots=True)
class PrunedBound:
    """Entries of ``origin`` below ``below`` may be gone; made against checkpoint (size, root)."""

    origin: str
    below: int
    size: int
    root: bytes
    time: str

    def __post_init__(self) -> None:
        _single_line(self.origin, "origin")
        if not 0 <= self.below <= self.size <= _MAX_INDEX:
            raise MalformedNote(f"pruned bound {self.below} must lie in [0, size {self.size}]")
        if len(self.root) != HASH_SIZE:
            raise MalformedNote(f"root must be {HASH_SIZE} bytes")
        _time(self.time)

    def to_text(self) -> str:
        root = base64.b64encode(self.root).decode("ascii")
        lines = (
            self.origin,
            PRUNED_HEADER,
            f"below {self.below}",
            f"checkpoint {self.size} {root}",
            f"time {self.time}",
        )
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> PrunedBound:
        origin, (below, checkpoint, time) = _fields(
            text, PRUNED_HEADER, ("below", "checkpoint", "time")
        )
        size, sep, root = checkpoint.partition(" ")
        if not sep:
            raise MalformedNote("checkpoint line needs a size and a root")
        return cls(
            origin,
            parse_decimal(below, "below"),
            parse_decimal(size, "size"),
            parse_hash(root, "root"),
            _time(time),
        )


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """The content of entry ``index`` of ``origin`` (event hash, leaf) was erased, and why."""

    origin: str
    index: int
    event_hash: bytes
    leaf: bytes
    time: str
    reason: str

    def __post_init__(self) -> None:
        _single_line(self.origin, "origin")
        _single_line(self.reason, "reason")
        if len(self.reason) > MAX_REASON:
            raise MalformedNote(f"reason is longer than {MAX_REASON} characters")
        if not 0 <= self.index <= _MAX_INDEX:
            raise MalformedNote(f"index {self.index} out of range")
        if len(self.event_hash) != HASH_SIZE or len(self.leaf) != HASH_SIZE:
            raise MalformedNote(f"event hash and leaf must be {HASH_SIZE} bytes")
        _time(self.time)

    def to_text(self) -> str:
        lines = (
            self.origin,
            ERASURE_HEADER,
            f"index {self.index}",
            f"hash {self.event_hash.hex()}",
            f"leaf {base64.b64encode(self.leaf).decode('ascii')}",
            f"time {self.time}",
            f"reason {self.reason}",
        )
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> ErasureRecord:
        origin, (index, digest, leaf, time, reason) = _fields(
            text, ERASURE_HEADER, ("index", "hash", "leaf", "time", "reason")
        )
        if len(digest) != 2 * HASH_SIZE or digest != digest.lower():
            raise MalformedNote(f"hash {digest!r} is not {HASH_SIZE} bytes of lowercase hex")
        try:
            event_hash = bytes.fromhex(digest)
        except ValueError as exc:
            raise MalformedNote(f"hash {digest!r} is not hex") from exc
        return cls(
            origin,
            parse_decimal(index, "index"),
            event_hash,
            parse_hash(leaf, "leaf"),
            _time(time),
            reason,
        )


def sign_statement(statement: PrunedBound | ErasureRecord, signer: NoteSigner) -> str:
    """The signed note of ``statement``, signed under the log's origin (the key-name rule)."""
    signers = checkpoint_signers(signer, statement.origin, legacy_name=False)
    return sign_note(statement.to_text(), signers)


def _open(note: str, trusted: Sequence[NoteVerifier]) -> str:
    parsed = parse_note(note)
    # The origin picks the keys to try, as for a checkpoint; nothing is trusted before verifying.
    origin = parsed.text.split("\n", 1)[0]
    names = {sig.name for sig in parsed.signatures}
    return open_note(note, checkpoint_verifiers(origin, trusted, names)).text


def open_pruned(note: str, trusted: Sequence[NoteVerifier]) -> PrunedBound:
    """Verify and parse a pruned-bound note; SignatureError or MalformedNote if it is not one."""
    return PrunedBound.from_text(_open(note, trusted))


def open_erasure(note: str, trusted: Sequence[NoteVerifier]) -> ErasureRecord:
    """Verify and parse an erasure-record note; SignatureError or MalformedNote if not one."""
    return ErasureRecord.from_text(_open(note, trusted))


def bound_went_back(earlier: PrunedBound, later: PrunedBound) -> bool:
    """Whether of two statements the later one (by checkpoint size, then time) has the lower
    bound."""
    first, second = sorted((earlier, later), key=lambda b: (b.size, b.time, b.below))
    return second.below < first.below


def erased_entry(leaf: bytes) -> bytes:
    """The bytes an erased entry is replaced by in its entry bundle."""
    return ERASED_ENTRY_PREFIX + leaf.hex().encode("ascii")


def erased_entry_leaf(entry: bytes) -> bytes | None:
    """The leaf an erased-entry placeholder names, or None when ``entry`` is not one."""
    if not entry.startswith(ERASED_ENTRY_PREFIX) or len(entry) != len(ERASED_ENTRY_PREFIX) + 64:
        return None
    digits = entry[len(ERASED_ENTRY_PREFIX) :]
    if digits != digits.lower():
        return None
    try:
        return bytes.fromhex(digits.decode("ascii"))
    except ValueError:
        return None


def verify_erased_receipt(
    receipt: Receipt,
    record_note: str,
    verifiers: Sequence[NoteVerifier],
    hasher: LogHasher,
    origin: str | None = None,
) -> tuple[Checkpoint, ErasureRecord]:
    """Verify an erased entry's receipt with its erasure record instead of its envelope: the
    log's key signed both, the record names the receipt's index and log, and the record's leaf
    is included at that index. What it proves: an entry with the record's event hash was sealed
    there, and the log says why its content is gone."""
    checkpoint = Checkpoint.from_text(open_checkpoint_note(receipt.checkpoint, verifiers).text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
    record = open_erasure(record_note, verifiers)
    if record.origin != checkpoint.origin or record.index != receipt.index:
        raise OriginMismatch(
            f"the erasure record is for entry {record.index} of {record.origin!r}, the receipt"
            f" for entry {receipt.index} of {checkpoint.origin!r}"
        )
    if hasher.event_hash_leaves and record.leaf != record.event_hash:
        raise MalformedNote("in this hash scheme the leaf is the event hash; the record differs")
    verify_inclusion(
        hasher, receipt.index, checkpoint.size, record.leaf, receipt.proof, checkpoint.root
    )
    return checkpoint, record
