"""The log's signed statements about its own entries: pruned bounds and erasure records.

Without them a missing entry is damage. With them (:mod:`auditlog.core.log_statements`), the
auditor accepts an entry missing below the log's pruned bound, and a missing entry whose
erasure record names the very leaf the tree holds there; any other absence is still damage, and
so is a statement that does not verify, a bound that goes backwards (between the stored
statements, or against the one the verifier remembers), and a record whose leaf is not the
sealed one. A statement's checkpoint (size, root) must be reproduced by the rebuilt tree, like
any signed checkpoint: a statement made against another history is not this log's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from auditlog.core.audit.findings import Erased, Findings
from auditlog.core.compact import CompactRange
from auditlog.core.errors import MalformedNote, SignatureError
from auditlog.core.hashing import LogHasher
from auditlog.core.log_statements import (
    ErasureRecord,
    PrunedBound,
    bound_went_back,
    open_erasure,
    open_pruned,
)
from auditlog.core.note import NoteVerifier

__all__ = ["LogStatements", "StoredStatements"]


@dataclass(frozen=True, slots=True)
class StoredStatements:
    """The signed notes as stored: pruned bounds (oldest first), erasure records, and the pruned
    bound the verifier remembers (None: none)."""

    pruned: Sequence[str] = ()
    erasures: Sequence[str] = ()
    remembered_pruned: str | None = None


class LogStatements:
    """One log's verified statements, and the absences they account for."""

    def __init__(
        self,
        origin: str,
        hasher: LogHasher,
        verifiers: Sequence[NoteVerifier],
        stored: StoredStatements,
        findings: Findings,
    ) -> None:
        self.origin = origin
        self.hasher = hasher
        self.findings = findings
        self._verifiers = list(verifiers)
        self.below = 0  # entries below this index may be absent
        self.latest_pruned: str | None = None  # the note that set ``below``
        self.erasures: dict[int, ErasureRecord] = {}
        self.erased: list[Erased] = []
        self._roots: dict[int, tuple[bytes, str]] = {}  # size -> (root, what claimed it)
        opened = [(n, self._pruned(n, "stored")) for n in stored.pruned]
        valid = [(n, b) for n, b in opened if b is not None]
        bounds = [b for _, b in valid]
        self._check_order(bounds)
        if valid:
            note, best = max(valid, key=lambda nb: (nb[1].below, nb[1].size))
            self.below = best.below
            self.latest_pruned = note
        if stored.remembered_pruned is not None:
            remembered = self._pruned(stored.remembered_pruned, "remembered")
            if remembered is not None and remembered.below > self.below:
                self.findings.add(
                    "pruned-bound-backwards",
                    self.below,
                    None,
                    f"the pruned bound is {self.below}, this verifier saw it at"
                    f" {remembered.below} (at size {remembered.size})",
                )
        for note in stored.erasures:
            self._erasure(note)

    # -- opening -------------------------------------------------------------------------
    def _pruned(self, note: str, where: str) -> PrunedBound | None:
        try:
            bound = open_pruned(note, self._verifiers)
        except (SignatureError, MalformedNote) as exc:
            self.findings.add("pruned-statement-invalid", None, None, f"{where} statement: {exc}")
            return None
        if bound.origin != self.origin:
            self.findings.add(
                "pruned-statement-invalid",
                bound.below,
                None,
                f"{where} statement is for {bound.origin!r}, this log is {self.origin!r}",
            )
            return None
        self._claim(bound.size, bound.root, f"pruned statement (below {bound.below})")
        return bound

    def _check_order(self, bounds: list[PrunedBound]) -> None:
        ordered = sorted(bounds, key=lambda b: (b.size, b.time, b.below))
        for earlier, later in itertools.pairwise(ordered):
            if bound_went_back(earlier, later):
                self._backwards(earlier, later, "an earlier statement")

    def _backwards(self, earlier: PrunedBound, later: PrunedBound, what: str) -> None:
        self.findings.add(
            "pruned-bound-backwards",
            later.below,
            None,
            f"pruned bound {later.below} (at size {later.size}) is below {what}'s"
            f" {earlier.below} (at size {earlier.size})",
        )

    def _erasure(self, note: str) -> None:
        add = self.findings.add
        try:
            record = open_erasure(note, self._verifiers)
        except (SignatureError, MalformedNote) as exc:
            add("erasure-invalid", None, None, f"erasure record: {exc}")
            return
        if record.origin != self.origin:
            add(
                "erasure-invalid",
                record.index,
                record.event_hash,
                f"erasure record is for {record.origin!r}, this log is {self.origin!r}",
            )
            return
        if self.hasher.event_hash_leaves and record.leaf != record.event_hash:
            add(
                "erasure-mismatch",
                record.index,
                record.event_hash,
                "in this hash scheme the leaf is the event hash, the record names another leaf",
            )
            return
        if record.index in self.erasures:
            add("erasure-invalid", record.index, record.event_hash, "a second erasure record")
            return
        self.erasures[record.index] = record

    def _claim(self, size: int, root: bytes, what: str) -> None:
        seen = self._roots.get(size)
        if seen is not None and seen[0] != root:
            self.findings.add(
                "pruned-statement-invalid",
                size,
                root,
                f"{what} names root {root.hex()} at size {size}, {seen[1]} names {seen[0].hex()}",
            )
            return
        self._roots.setdefault(size, (root, what))

    # -- during the audit ----------------------------------------------------------------
    @property
    def sizes(self) -> dict[int, tuple[bytes, str]]:
        """size -> the root a statement was made against; the tree must reproduce each."""
        return self._roots

    def observe(self, tree: CompactRange) -> None:
        """Called by the auditor at each size in :attr:`sizes`."""
        root, what = self._roots[tree.size]
        if tree.root() != root:
            self.findings.add(
                "pruned-statement-invalid",
                tree.size,
                root,
                f"{what} was made against root {root.hex()} at size {tree.size}, the entries"
                f" give {tree.root().hex()}",
            )

    def absence(self, index: int, sealed: bytes | None) -> tuple[bool, bytes | None]:
        """Whether an absent entry at ``index`` is accounted for (else it is damage), and the
        leaf to rebuild with: the erasure record's, or None for the sealed one."""
        record = self.erasures.get(index)
        if record is not None:
            if sealed is not None and record.leaf != sealed:
                self.findings.add(
                    "erasure-mismatch",
                    index,
                    record.event_hash,
                    f"the erasure record names leaf {record.leaf.hex()}, the tree holds"
                    f" {sealed.hex()}",
                )
                self.findings.damage_at(index)
                return False, None
            self.erased.append(Erased(index, record.event_hash.hex(), record.reason, record.time))
            return True, record.leaf
        return index < self.below, None

    def chunk_pruned(self, start: int, width: int) -> bool:
        """Whether every entry of ``[start, start+width)`` lies below the pruned bound."""
        return width > 0 and start + width <= self.below
