"""Log entries: the bytes a log commits to for each envelope, and the leaf hash verifiers compute.

The large-envelope rule
-----------------------
C2SP entry bundles length-prefix each entry with a uint16, so an entry is at most 65,535 bytes,
while Pangea's field limits admit bigger events (``message``, ``new`` and ``old`` may each hold
32,766 characters, up to 4 bytes each in UTF-8). Rejecting those would break Pangea
compatibility; storing them outside the tree would leave them unsealed. The rule:

* a canonical envelope of at most :data:`MAX_ENTRY_SIZE` (65,535) bytes **is** its log entry;
* a longer one is represented by a fixed 90-byte *digest entry*::

      b"auditlog-digest/v1 sha256 " + hex(sha256(canonical envelope))   (64 lowercase hex digits)

  which commits to the whole envelope. The envelope itself is stored (and served) with the event.

A canonical envelope always starts with ``{``, and a digest entry never does, so an entry says
which kind it is. A verifier never needs to know the rule: it calls :func:`leaf_hash` with the
canonical envelope, which applies it.

Leaf hashes per scheme
----------------------
* ``rfc6962-*``: ``hash_leaf(log_entry(envelope))``, i.e. RFC 6962 over the entry, so the tree
  is an ordinary tlog-tiles tree over the bundles' entries, digest entries included.
* ``pangea-sha256``: always ``sha256(canonical envelope)`` -- the Pangea event hash, whatever the
  envelope's size, because that is what the Pangea SDK folds. For a digest entry this is exactly
  the digest it carries, so leaf hashes can still be recomputed from bundles alone
  (:func:`entry_leaf_hash`).

For every scheme and envelope, ``leaf_hash(h, env) == entry_leaf_hash(h, log_entry(env))``.
"""

from __future__ import annotations

import hashlib
from typing import Final

from auditlog.core.errors import InvalidEvent
from auditlog.core.hashing import LogHasher

__all__ = [
    "DIGEST_ENTRY_PREFIX",
    "DIGEST_ENTRY_SIZE",
    "MAX_ENTRY_SIZE",
    "digest_of_entry",
    "entry_and_leaf",
    "entry_leaf_hash",
    "is_digest_entry",
    "leaf_hash",
    "log_entry",
]

MAX_ENTRY_SIZE: Final = 65535
DIGEST_ENTRY_PREFIX: Final = b"auditlog-digest/v1 sha256 "
DIGEST_ENTRY_SIZE: Final = len(DIGEST_ENTRY_PREFIX) + 64
_HEX_DIGITS: Final = frozenset(b"0123456789abcdef")


def log_entry(canonical_envelope: bytes) -> bytes:
    """The entry stored in the log for an envelope: itself if it fits a bundle, else its digest."""
    if not canonical_envelope.startswith(b"{"):
        # Guards the "an entry says which kind it is" property the rule depends on.
        raise InvalidEvent("a canonical envelope is a JSON object")
    if len(canonical_envelope) <= MAX_ENTRY_SIZE:
        return bytes(canonical_envelope)
    return DIGEST_ENTRY_PREFIX + hashlib.sha256(canonical_envelope).hexdigest().encode("ascii")


def is_digest_entry(entry: bytes) -> bool:
    """True for a well-formed digest entry (prefix, then exactly 64 lowercase hex digits)."""
    return (
        len(entry) == DIGEST_ENTRY_SIZE
        and entry.startswith(DIGEST_ENTRY_PREFIX)
        and _HEX_DIGITS.issuperset(entry[len(DIGEST_ENTRY_PREFIX) :])
    )


def digest_of_entry(entry: bytes) -> bytes:
    """The sha256 of the envelope a digest entry stands for; InvalidEvent if it is not one."""
    if not is_digest_entry(entry):
        raise InvalidEvent("not a digest entry")
    return bytes.fromhex(entry[len(DIGEST_ENTRY_PREFIX) :].decode("ascii"))


def entry_leaf_hash(hasher: LogHasher, entry: bytes) -> bytes:
    """The leaf hash of a log entry as found in an entry bundle."""
    if hasher.event_hash_leaves and is_digest_entry(entry):
        return digest_of_entry(entry)
    return hasher.hash_leaf(entry)


def entry_and_leaf(hasher: LogHasher, canonical_envelope: bytes) -> tuple[bytes, bytes]:
    """``(log_entry(envelope), leaf_hash(hasher, envelope))``, the entry made once (the sealer
    needs both for every record)."""
    entry = log_entry(canonical_envelope)
    return entry, hasher.hash_leaf(canonical_envelope if hasher.event_hash_leaves else entry)


def leaf_hash(hasher: LogHasher, canonical_envelope: bytes) -> bytes:
    """The leaf hash of a canonical envelope: the one function verifiers and the sealer call."""
    if hasher.event_hash_leaves:
        if not canonical_envelope.startswith(b"{"):
            raise InvalidEvent("a canonical envelope is a JSON object")
        # sha256(envelope) for every size; equal to entry_leaf_hash of the digest entry.
        return hasher.hash_leaf(canonical_envelope)
    return hasher.hash_leaf(log_entry(canonical_envelope))
