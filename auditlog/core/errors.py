"""The exception tree shared by the pure core and the services.

Every error the core raises is an :class:`AuditLogError`, so a caller can catch the whole family
in one place, and every branch says *what kind* of failure it is, never *where* it happened::

    AuditLogError                  retriable = False unless stated
    ├── InvalidEvent               an event or envelope that cannot be canonical or is invalid
    │   └── NonCanonicalEnvelope   valid JSON, but not byte-identical to its canonical form
    ├── ProofError
    │   ├── MalformedProof         wrong length, bad index or size, bad encoding
    │   │   └── TileError          a tile is missing, too narrow, or its path is malformed
    │   └── RootMismatch           the proof is well formed but leads to another root
    ├── NoteError
    │   ├── MalformedNote          not a signed note, or not a valid checkpoint body
    │   ├── SignatureError         no trusted key signed, or a trusted key's signature is bad
    │   └── OriginMismatch         a verified checkpoint belongs to another log
    ├── ReceiptError               a receipt (tlog-proof) that cannot be parsed
    ├── UnknownHashScheme          a hash scheme name this build does not implement
    └── Pushback                   retriable = True: overloaded, answer 503 + Retry-After

Verification failures of a receipt are raised as the :class:`ProofError` or :class:`NoteError`
subclass that describes them, so "the receipt is garbage" and "the receipt lies" stay apart.
Code that retries checks ``retriable`` rather than listing classes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuditLogError",
    "InvalidEvent",
    "MalformedNote",
    "MalformedProof",
    "NonCanonicalEnvelope",
    "NoteError",
    "OriginMismatch",
    "ProofError",
    "Pushback",
    "ReceiptError",
    "RootMismatch",
    "SignatureError",
    "TileError",
    "UnknownHashScheme",
]


class AuditLogError(Exception):
    """Base of every error raised on purpose by this project."""

    retriable: ClassVar[bool] = False


class InvalidEvent(AuditLogError):  # noqa: N818 - the contract names it; it reads as a verdict
    """An event or envelope that cannot be made canonical or fails validation."""


class NonCanonicalEnvelope(InvalidEvent):
    """Envelope bytes that parse, but differ from the canonical serialization of what they hold."""


class ProofError(AuditLogError):
    """A Merkle proof (or the tiles it is built from) does not check out."""


class MalformedProof(ProofError):  # noqa: N818 - contract name
    """A proof whose shape is wrong: length, index, size or encoding."""


class TileError(MalformedProof):
    """A tile that is missing, narrower than needed, or addressed by a malformed path."""


class RootMismatch(ProofError):  # noqa: N818
    """A well-formed proof that recomputes to a different root than the one expected."""

    def __init__(self, expected: bytes, calculated: bytes, what: str = "root") -> None:
        super().__init__(
            f"{what} mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class NoteError(AuditLogError):
    """A signed note (checkpoint) that cannot be parsed or trusted."""


class MalformedNote(NoteError):  # noqa: N818 - contract name
    """Text that is not a well-formed signed note or checkpoint."""


class SignatureError(NoteError):
    """No trusted key signed the note, or a trusted key's signature does not verify."""


class OriginMismatch(NoteError):  # noqa: N818
    """A correctly signed checkpoint for a different log than the one the verifier expects."""


class ReceiptError(AuditLogError):
    """A receipt (c2sp.org/tlog-proof@v1 text) that cannot be parsed."""


class UnknownHashScheme(AuditLogError):  # noqa: N818
    """A hash scheme name that is not one of :data:`auditlog.core.hashing.HASH_SCHEMES`."""


class Pushback(AuditLogError):  # noqa: N818
    """The service is overloaded; the caller should retry later (HTTP 503 + Retry-After)."""

    retriable: ClassVar[bool] = True
