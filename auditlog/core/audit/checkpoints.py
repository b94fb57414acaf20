"""The signed account ``C``: opening a log's checkpoints and holding them against the tree.

Checkpoints are the only data the auditor authenticates (by the log's key), so they are opened
first: notes that do not verify, are for another log or disagree with the columns stored beside
them are findings and then ignored, and what remains says how large the log must be. As the
rebuilt tree ``R`` reaches each signed size, :meth:`SignedCheckpoints.observe` records whether it
reproduces the signed root; :meth:`SignedCheckpoints.report` turns the roots it did not
reproduce into findings once the entry-level findings are known.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditlog.core.audit.findings import Findings, hex_or_none
from auditlog.core.audit.stored import StoredCheckpoint, StoredHead
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.compact import CompactRange
from auditlog.core.errors import MalformedNote, SignatureError
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.note import NoteVerifier

__all__ = ["SignedCheckpoints"]


class SignedCheckpoints:
    """One log's verified checkpoints, checked against each other and the head on construction."""

    def __init__(
        self,
        head: StoredHead,
        verifiers: Sequence[NoteVerifier],
        checkpoints: list[StoredCheckpoint],
        findings: Findings,
    ) -> None:
        self.head = head
        self.verifiers = verifiers
        self.findings = findings
        # Signed checkpoints by size (root, source); verified ones only.
        self.signed: dict[int, tuple[bytes, str]] = {}
        self.head_note: str | None = None  # the largest verified note
        self._check(checkpoints)
        self._sizes = sorted(self.signed)  # size 0 too: its root must be the empty tree's
        self._next = 0  # the first of _sizes the rebuilt tree has not reached yet
        self.results: dict[int, bool] = {}  # size -> did R reproduce the signed root

    # -- opening -------------------------------------------------------------------------
    def _open(self, cp: StoredCheckpoint) -> Checkpoint | None:
        add = self.findings.add
        where = "published head checkpoint" if cp.source == "head" else f"{cp.source} row"
        try:
            note = open_checkpoint_note(cp.note, self.verifiers)
            body = Checkpoint.from_text(note.text)
        except SignatureError as exc:
            add("checkpoint-signature", cp.size, cp.root, f"{where}: {exc}")
            return None
        except MalformedNote as exc:
            add("checkpoint-malformed", cp.size, cp.root, f"{where}: {exc}")
            return None
        if body.origin != self.head.origin:
            add(
                "checkpoint-origin",
                body.size,
                body.root,
                f"{where} is for {body.origin!r}, this log is {self.head.origin!r}",
            )
            return None
        if (cp.size is not None and cp.size != body.size) or (
            cp.root is not None and cp.root != body.root
        ):
            add(
                "checkpoint-row-mismatch",
                body.size,
                body.root,
                f"{where} stores size {cp.size} root {hex_or_none(cp.root)} beside a note that"
                f" signs size {body.size} root {body.root.hex()}",
            )
        return body

    def _check(self, checkpoints: list[StoredCheckpoint]) -> None:
        add = self.findings.add
        head = self.head
        all_cps = list(checkpoints)
        if head.checkpoint is not None:
            all_cps.append(StoredCheckpoint(head.checkpoint, head.size, head.root, "head"))
        history_sizes = {cp.size for cp in checkpoints if cp.source == "checkpoints"}
        best: tuple[int, str] | None = None
        for cp in all_cps:
            body = self._open(cp)
            if body is None:
                continue
            seen = self.signed.get(body.size)
            if seen is not None and seen[0] != body.root:
                add(
                    "inconsistent-checkpoints",
                    body.size,
                    body.root,
                    f"{cp.source} signs root {body.root.hex()} for size {body.size}, "
                    f"{seen[1]} signs {seen[0].hex()}",
                )
                continue
            self.signed.setdefault(body.size, (body.root, cp.source))
            if best is None or body.size > best[0]:
                best = (body.size, cp.note)
        self.head_note = best[1] if best else None
        if not self.signed:
            add("no-verified-checkpoint", None, None, "no checkpoint is signed by a trusted key")
        has_history = any(cp.source == "checkpoints" for cp in checkpoints)
        if head.checkpoint and head.size > 0 and has_history and head.size not in history_sizes:
            add(
                "missing-checkpoint",
                head.size,
                head.root,
                "the published head checkpoint is not in the checkpoint history",
            )
        largest = max(self.signed, default=0)
        if head.size < largest:
            root, source = self.signed[largest]
            add(
                "rollback",
                head.size,
                head.root,
                f"log head is at size {head.size}, but a checkpoint of size {largest} "
                f"(root {root.hex()}, from {source}) was signed",
            )
        if head.checkpoint is not None and head.size in self.signed:
            root = self.signed[head.size][0]
            if head.root is not None and head.root != root:
                add(
                    "head-mismatch",
                    head.size,
                    head.root,
                    f"log head root {head.root.hex()} differs from the signed {root.hex()}",
                )

    # -- against the rebuilt tree --------------------------------------------------------
    def observe(self, tree: CompactRange) -> None:
        """Called after every leaf: if ``tree`` is now at a signed size, compare the roots."""
        # Called once per leaf, so the common case (no signed size here) is one comparison;
        # the root, which folds the whole range, is only computed at signed sizes.
        size = tree.size
        while self._next < len(self._sizes) and self._sizes[self._next] == size:
            self.results[size] = tree.root() == self.signed[size][0]
            self._next += 1

    def authentic(self, size: int) -> bool:
        """Is the rebuilt tree of ``size`` leaves the signed one? Judged at the largest signed
        size it reached (True when it reached none: nothing contradicts it)."""
        reached = [s for s in self.results if s <= size]
        return self.results[max(reached)] if reached else True

    def report(self) -> None:
        """Findings for the signed roots the rebuilt tree did not reproduce."""
        matched_above: int | None = None
        first_damage = self.findings.first_damage
        for size in sorted(self.results, reverse=True):
            root, source = self.signed[size]
            if self.results[size]:
                matched_above = size
            elif matched_above is not None:
                # R reproduces the larger signed root, so R's prefix is the authentic tree of
                # this size: the two signed statements contradict each other.
                self.findings.add(
                    "inconsistent-checkpoints",
                    size,
                    root,
                    f"signed checkpoint ({source}) is not a prefix of the signed checkpoint of "
                    f"size {matched_above}",
                )
            elif size == 0:
                self.findings.add(
                    "checkpoint-root-mismatch",
                    size,
                    root,
                    f"a signed checkpoint of size 0 ({source}) names another root than the empty"
                    " tree's",
                )
            elif first_damage is None or first_damage >= size:
                # Entry damage below this size already explains the root; only damage the
                # entries cannot show (entries and tiles rewritten together) is named here.
                below = [s for s, ok in self.results.items() if ok and s < size]
                since = f" after index {max(below) - 1}" if below else ""
                self.findings.add(
                    "checkpoint-root-mismatch",
                    size,
                    root,
                    f"the stored entries and tiles do not reproduce the signed root ({source}):"
                    f" entries{since} were rewritten together with their tiles",
                )
