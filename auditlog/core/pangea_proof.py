"""Pangea's proof strings for ``pangea-sha256`` logs, built from tiles, parsed and verified.

Pangea's SDK verifies two text formats (pangea-audit-api.md §4.3-4.4), both over the
``pangea-sha256`` tree (leaf = event hash, node = SHA-256(left || right), RFC 6962 shape):

membership proof
    ``"l:<hex>,r:<hex>,..."``, siblings from the leaf up; ``l:X`` means ``node = H(X || node)``,
    ``r:X`` means ``node = H(node || X)``. The proof for a one-leaf tree is ``""``.
consistency proof
    a list of ``"x:<subtree hash>,<membership proof of that subtree in the new tree>"``, one per
    maximal perfect subtree of the old tree, smallest (rightmost) first. Folding the subtree
    hashes as ``r = H(item.hash || r)`` gives the old root; each item verifies in the new root.
    For old size 0 or equal sizes there is nothing to prove and the API sends null, never an
    empty list (the SDK indexes ``proof[0]``), so :func:`consistency_proof` returns ``None``.

Plans and assembly work like :mod:`auditlog.core.proof`; the hasher is always ``pangea-sha256``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Final

from auditlog.core.errors import MalformedProof, RootMismatch
from auditlog.core.hashing import PANGEA_SHA256, get_hasher
from auditlog.core.proof import (
    Node,
    Range,
    descend,
    inclusion_ranges,
    range_hash,
    tiles_for_ranges,
)
from auditlog.core.tiles import TileID

__all__ = [
    "consistency_proof",
    "consistency_tiles",
    "membership_proof",
    "membership_tiles",
    "parse_consistency_proof",
    "parse_membership_proof",
    "verify_consistency_proof",
    "verify_membership_proof",
]

_HASHER: Final = get_hasher(PANGEA_SHA256)
_ITEM: Final = re.compile(r"([lr]):([0-9a-f]{64})")
_X_ITEM: Final = re.compile(r"x:([0-9a-f]{64}),(.+)", re.DOTALL)

MembershipProof = list[tuple[str, bytes]]  # (side "l" or "r", sibling hash), leaf first


def _node_path(start: int, width: int, size: int) -> list[Range]:
    """Sibling ranges of the tree node covering ``[start, start + width)``, bottom-up."""
    out, node = descend(start, size, width)
    if node != (start, start + width):
        raise MalformedProof(f"[{start}, {start + width}) is not a node of a tree of size {size}")
    return out


def _old_subtrees(size1: int) -> list[tuple[int, int]]:
    """Maximal perfect subtrees of the old tree, left to right, as (start, width)."""
    out: list[tuple[int, int]] = []
    start = 0
    while start < size1:
        width = 1 << ((size1 - start).bit_length() - 1)
        out.append((start, width))
        start += width
    return out


def _side(sibling: Range, start: int) -> str:
    return "l" if sibling[1] <= start else "r"


def _format(path: Sequence[Range], start: int, hashes: Sequence[bytes]) -> str:
    return ",".join(f"{_side(r, start)}:{h.hex()}" for r, h in zip(path, hashes, strict=True))


def membership_tiles(index: int, size: int) -> list[TileID]:
    """Plan: the tiles :func:`membership_proof` needs."""
    return tiles_for_ranges(inclusion_ranges(index, size))


def membership_proof(
    index: int,
    size: int,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> str:
    """The membership proof string of leaf ``index`` in the tree of ``size``."""
    path = inclusion_ranges(index, size)
    hashes = [range_hash(_HASHER, lo, hi, tiles, cache) for lo, hi in path]
    return _format(path, index, hashes)


def _consistency_plan(size1: int, size2: int) -> list[tuple[Range, list[Range]]]:
    if not 0 < size1 < size2:
        raise MalformedProof(
            f"a Pangea consistency proof needs 0 < size1 < size2, not {size1}, {size2}"
        )
    return [
        ((start, start + width), _node_path(start, width, size2))
        for start, width in reversed(_old_subtrees(size1))
    ]


def consistency_tiles(size1: int, size2: int) -> list[TileID]:
    """Plan: the tiles :func:`consistency_proof` needs (none when there is nothing to prove)."""
    if size1 in (0, size2):
        return []
    ranges = [r for node, path in _consistency_plan(size1, size2) for r in (node, *path)]
    return tiles_for_ranges(ranges)


def consistency_proof(
    size1: int,
    size2: int,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> list[str] | None:
    """The consistency proof items from ``size1`` to ``size2``, or None if there is none to give.

    None for ``size1 == 0`` or ``size1 == size2``: send null, not an empty list.
    """
    if not 0 <= size1 <= size2:
        raise MalformedProof(f"sizes {size1} -> {size2}: need 0 <= size1 <= size2")
    if size1 in (0, size2):
        return None
    items: list[str] = []
    for (lo, hi), path in _consistency_plan(size1, size2):
        node = range_hash(_HASHER, lo, hi, tiles, cache)
        hashes = [range_hash(_HASHER, a, b, tiles, cache) for a, b in path]
        items.append(f"x:{node.hex()},{_format(path, lo, hashes)}")
    return items


# Parsing and verification --------------------------------------------------------------------


def parse_membership_proof(text: str) -> MembershipProof:
    """Parse ``"l:<hex>,r:<hex>,..."`` strictly (sides l/r, 64 lowercase hex digits each)."""
    if text == "":
        return []
    out: MembershipProof = []
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise MalformedProof(f"bad membership proof item {item!r}")
        out.append((match[1], bytes.fromhex(match[2])))
    return out


def parse_consistency_proof(items: Sequence[str]) -> list[tuple[bytes, MembershipProof]]:
    """Parse consistency proof items into (subtree hash, membership proof) pairs."""
    if not items:
        raise MalformedProof("an empty consistency proof is never sent (null is)")
    out: list[tuple[bytes, MembershipProof]] = []
    for item in items:
        match = _X_ITEM.fullmatch(item)
        if match is None:
            raise MalformedProof(f"bad consistency proof item {item[:80]!r}")
        out.append((bytes.fromhex(match[1]), parse_membership_proof(match[2])))
    return out


def _fold(node: bytes, proof: MembershipProof) -> bytes:
    children = _HASHER.hash_children
    for side, sibling in proof:
        node = children(sibling, node) if side == "l" else children(node, sibling)
    return node


def _expected_sides(start: int, width: int, size: int) -> list[str]:
    return [_side(r, start) for r in _node_path(start, width, size)]


def verify_membership_proof(
    proof: str,
    event_hash: bytes,
    root: bytes,
    index: int | None = None,
    size: int | None = None,
) -> None:
    """Check a membership proof string as the SDK does, and more strictly.

    With ``index`` and ``size`` the proof's length and sides must also be those of that leaf's
    path, which binds the position (the SDK's fold alone does not). Raises MalformedProof or
    RootMismatch.
    """
    items = parse_membership_proof(proof)
    if index is not None and size is not None:
        inclusion_ranges(index, size)  # validates the coordinates
        if [side for side, _ in items] != _expected_sides(index, 1, size):
            raise MalformedProof(f"proof does not have the shape of leaf {index} of {size}")
    calculated = _fold(event_hash, items)
    if calculated != root:
        raise RootMismatch(root, calculated)


def verify_consistency_proof(
    items: Sequence[str],
    old_root: bytes,
    new_root: bytes,
    sizes: tuple[int, int] | None = None,
) -> None:
    """Check consistency proof items as the SDK does; with ``sizes`` also check their shape."""
    parsed = parse_consistency_proof(items)
    if sizes is not None:
        plan = _consistency_plan(*sizes)
        shapes = [[_side(r, node[0]) for r in path] for node, path in plan]
        if [[side for side, _ in proof] for _, proof in parsed] != shapes:
            raise MalformedProof(f"proof does not have the shape of sizes {sizes[0]} -> {sizes[1]}")
    acc = parsed[0][0]
    for node, _ in parsed[1:]:
        acc = _HASHER.hash_children(node, acc)
    if acc != old_root:
        raise RootMismatch(old_root, acc, "old root")
    for i, (node, proof) in enumerate(parsed):
        calculated = _fold(node, proof)
        if calculated != new_root:
            raise RootMismatch(new_root, calculated, f"new root via item {i}")
