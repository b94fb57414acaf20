"""A direct, recursive transcription of RFC 9162 §2.1 (MTH, PATH, PROOF/SUBPROOF).

Used only to cross-check the tile-based, iterative code in ``auditlog``: it is slow on purpose
(no tiles, no compact ranges, no closed forms), so that the two share nothing but the RFC text.
Hash functions come from the hasher under test, so the same reference covers all three schemes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from auditlog.core.hashing import LogHasher


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """MTH, PATH and PROOF over a fixed list of leaf hashes, memoized by leaf range."""

    def __init__(self, hasher: LogHasher, leaf_hashes: Sequence[bytes]) -> None:
        self.hasher = hasher
        self.leaves = list(leaf_hashes)
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return self.hasher.empty_root()
        if n == 1:
            return self.leaves[lo]
        k = largest_power_of_two_below(n)
        return self.hasher.hash_children(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]) with m relative to lo."""
        n = hi - lo
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b) with m relative to lo."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = largest_power_of_two_below(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        if size1 in (0, size2):
            return []
        return self.subproof(size1, 0, size2, True)
