"""C2SP tlog-checkpoint: the signed statement of a log's size and root hash.

The checkpoint is the *text* of a signed note (see :mod:`auditlog.core.note`)::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <root hash, standard base64 of 32 bytes>\\n
    [<extension line>\\n ...]

Parsing is strict so that one checkpoint has one spelling: a verifier that accepted ``007`` or
unpadded base64 would treat two different texts as the same statement.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from auditlog.core.errors import MalformedNote
from auditlog.core.hashing import HASH_SIZE

__all__ = ["Checkpoint", "parse_decimal", "parse_hash"]

_MAX_SIZE = (1 << 63) - 1  # sizes are uint64 on the wire; int64 keeps Go and SQL bigint happy


def parse_decimal(text: str, what: str) -> int:
    """A non-negative int64 spelled in decimal without sign or leading zeros, as every note line
    of ours spells numbers (checkpoints, auditlog/core/log_statements.py); ``what`` names it in
    the error."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise MalformedNote(f"{what} {text!r} is not a decimal without leading zeros")
    value = int(text)
    if value > _MAX_SIZE:
        raise MalformedNote(f"{what} {value} is too large")
    return value


def parse_hash(text: str, what: str) -> bytes:
    """A hash spelled as the standard, padded base64 of HASH_SIZE bytes, and only so."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedNote(f"{what} {text!r} is not base64") from exc
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != text:
        raise MalformedNote(f"{what} {text!r} is not the base64 of {HASH_SIZE} bytes")
    return raw


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's origin, tree size and root hash, plus optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedNote("checkpoint origin must be a non-empty single line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise MalformedNote(f"checkpoint size {self.size} out of range")
        if len(self.root) != HASH_SIZE:
            raise MalformedNote(f"checkpoint root must be {HASH_SIZE} bytes")
        for line in self.extensions:
            if not line or "\n" in line:
                raise MalformedNote("checkpoint extension lines must be non-empty single lines")

    def to_text(self) -> str:
        """The note text (ending in a newline) to sign."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint text (a note's text, not the signed note); MalformedNote if invalid."""
        if not text.endswith("\n"):
            raise MalformedNote("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNote("checkpoint needs origin, size and root lines")
        origin, size, root, *extensions = lines
        return cls(
            origin,
            parse_decimal(size, "checkpoint size"),
            parse_hash(root, "checkpoint root"),
            tuple(extensions),
        )
