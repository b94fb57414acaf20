"""Merkle tree hashers: how leaves and interior nodes are hashed in each log's scheme.

A log's hash scheme is fixed when the log is created. All three share the RFC 6962 tree *shape*
(split at the largest power of two below n); they differ only in the two hash functions:

``rfc6962-sha256`` (default)
    RFC 6962 / RFC 9162: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right).
    What C2SP tlog-tiles clients, witnesses and Go's ``sumdb/tlog`` expect.
``rfc6962-blake3``
    The same domain-separated structure with BLAKE3 (32-byte output). Not verifiable by
    SHA-256-only tooling; see docs/verification.md for how a verifier learns the scheme.
``pangea-sha256``
    Pangea's tree: leaf = SHA-256(entry), which for a canonical envelope is the event hash
    itself; node = SHA-256(left || right), no prefixes. Lets the Pangea SDK verify proofs.

The protocol mirrors transparency-dev/merkle's ``LogHasher`` so the proof code is hash-agnostic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from blake3 import blake3

from auditlog.core.errors import UnknownHashScheme

__all__ = [
    "HASH_SCHEMES",
    "HASH_SIZE",
    "PANGEA_SHA256",
    "RFC6962_BLAKE3",
    "RFC6962_SHA256",
    "LogHasher",
    "get_hasher",
]

HASH_SIZE: Final = 32
RFC6962_SHA256: Final = "rfc6962-sha256"
RFC6962_BLAKE3: Final = "rfc6962-blake3"
PANGEA_SHA256: Final = "pangea-sha256"
HASH_SCHEMES: Final[tuple[str, ...]] = (RFC6962_SHA256, RFC6962_BLAKE3, PANGEA_SHA256)

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


class LogHasher(Protocol):
    """What the tree, proof and tile code needs from a hash scheme. All hashes are 32 bytes."""

    @property
    def name(self) -> str:
        """The scheme name, one of :data:`HASH_SCHEMES`."""
        ...

    @property
    def event_hash_leaves(self) -> bool:
        """True when a leaf hash is the event hash ``sha256(canonical envelope)`` itself.

        The log-entry rule for large envelopes needs to know (see :mod:`auditlog.core.entry`).
        """
        ...

    def empty_root(self) -> bytes:
        """The root of the tree with no leaves."""
        ...

    def hash_leaf(self, entry: bytes) -> bytes:
        """The leaf hash of one log entry."""
        ...

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """The hash of an interior node from its two children."""
        ...

    def hash_level(self, nodes: Sequence[bytes]) -> list[bytes]:
        """The parents of ``nodes`` taken in pairs (an even count): one level up a subtree.

        Equal to ``[hash_children(a, b) for a, b in pairs]``; a loop without a method call per
        node, which is most of the cost of rehashing inside a tile in Python.
        """
        ...


class _Rfc6962Sha256:
    __slots__ = ()
    name: Final = RFC6962_SHA256
    event_hash_leaves: Final = False

    def empty_root(self) -> bytes:
        return hashlib.sha256(b"").digest()

    def hash_leaf(self, entry: bytes) -> bytes:
        return hashlib.sha256(_LEAF + entry).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(_NODE + left + right).digest()

    def hash_level(self, nodes: Sequence[bytes]) -> list[bytes]:
        sha, node = hashlib.sha256, _NODE
        pairs = iter(nodes)
        return [sha(node + left + right).digest() for left, right in zip(pairs, pairs, strict=True)]


class _Rfc6962Blake3:
    __slots__ = ()
    name: Final = RFC6962_BLAKE3
    event_hash_leaves: Final = False

    def empty_root(self) -> bytes:
        return blake3(b"").digest()

    def hash_leaf(self, entry: bytes) -> bytes:
        return blake3(_LEAF + entry).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return blake3(_NODE + left + right).digest()

    def hash_level(self, nodes: Sequence[bytes]) -> list[bytes]:
        node = _NODE
        pairs = iter(nodes)
        return [
            blake3(node + left + right).digest() for left, right in zip(pairs, pairs, strict=True)
        ]


class _PangeaSha256:
    __slots__ = ()
    name: Final = PANGEA_SHA256
    event_hash_leaves: Final = True

    def empty_root(self) -> bytes:
        # Pangea never publishes an empty tree; SHA-256 of nothing keeps RFC 6962's convention.
        return hashlib.sha256(b"").digest()

    def hash_leaf(self, entry: bytes) -> bytes:
        return hashlib.sha256(entry).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(left + right).digest()

    def hash_level(self, nodes: Sequence[bytes]) -> list[bytes]:
        sha = hashlib.sha256
        pairs = iter(nodes)
        return [sha(left + right).digest() for left, right in zip(pairs, pairs, strict=True)]


_HASHERS: Final[dict[str, LogHasher]] = {
    RFC6962_SHA256: _Rfc6962Sha256(),
    RFC6962_BLAKE3: _Rfc6962Blake3(),
    PANGEA_SHA256: _PangeaSha256(),
}


def get_hasher(name: str) -> LogHasher:
    """Return the (stateless, shared) hasher for a scheme name; UnknownHashScheme otherwise."""
    try:
        return _HASHERS[name]
    except KeyError:
        raise UnknownHashScheme(
            f"unknown hash scheme {name!r}; expected one of {', '.join(HASH_SCHEMES)}"
        ) from None
