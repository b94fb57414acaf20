"""What an audit reports: the kinds of damage, one finding, one log's outcome, and the tally.

:class:`Findings` is the one place findings are recorded. Every part of the auditor adds to the
same tally, so the per-kind cap and the order findings were found in (which breaks ties in the
final report's order) are the same whichever part found them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_MAX_FINDINGS",
    "KINDS",
    "AuditedLog",
    "Erased",
    "Finding",
    "Findings",
    "hex_or_none",
]

# Every kind of finding, so reports and tests agree on the names.
KINDS: Final = (
    "envelope-invalid",  # stored envelope bytes are not a canonical JSON envelope
    "envelope-hash-mismatch",  # event_hash column != sha256(envelope)
    "column-mismatch",  # a searchable column disagrees with the envelope
    "leaf-mismatch",  # the entry at this index is not the one sealed there
    "reordered",  # the entry at this index is the one sealed at another index
    "missing-entry",  # no event row (or bundle entry) for an index below the log's size
    "extra-entry",  # a row beyond the signed size, or a second row for one index
    "bundle-mismatch",  # an entry bundle disagrees with the event rows
    "tile-mismatch",  # a stored tile hash disagrees with the authentic tree
    "missing-tile",  # a tile the tree needs is not stored
    "checkpoint-signature",  # not signed by a trusted key, or a bad signature
    "checkpoint-malformed",  # not a signed checkpoint at all
    "checkpoint-origin",  # signed, but for another log
    "checkpoint-row-mismatch",  # the size/root columns beside a note disagree with it
    "checkpoint-root-mismatch",  # the entries do not reproduce a signed root
    "inconsistent-checkpoints",  # two signed checkpoints that cannot both be true
    "missing-checkpoint",  # the published head is not in the checkpoint history
    "head-mismatch",  # the log head's size/root disagree with its own checkpoint
    "rollback",  # the head is smaller than a checkpoint already signed or seen
    "no-verified-checkpoint",  # nothing signed by a trusted key: nothing can be trusted
    "pruned-statement-invalid",  # a pruned-bound note that does not verify or fit this log
    "pruned-bound-backwards",  # a pruned bound below one stated or seen before
    "erasure-invalid",  # an erasure record that does not verify or fit this log
    "erasure-mismatch",  # an erasure record naming another leaf than the sealed one
)

# Beyond this many entry-level findings per kind a log is simply broken; keep counting, stop
# listing, so a wrecked billion-entry log cannot exhaust memory.
DEFAULT_MAX_FINDINGS: Final = 10_000


def hex_or_none(data: bytes | None) -> str | None:
    """``data`` in hex, or None (how a finding's detail shows a hash that may be absent)."""
    return None if data is None else data.hex()


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of damage: which log, which leaf index (tree size for checkpoints), which hash.

    ``hash`` is the event hash for entry findings, the stored hash for tile findings and the
    root for checkpoint findings, all hex; ``index`` is None when there is no position to name.
    """

    log: str
    kind: str
    index: int | None
    hash: str | None
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {
            "log": self.log,
            "kind": self.kind,
            "index": self.index,
            "hash": self.hash,
            "detail": self.detail,
        }

    def line(self) -> str:
        where = "" if self.index is None else f" index {self.index}"
        what = "" if self.hash is None else f" hash {self.hash}"
        return f"{self.log}: {self.kind}{where}{what}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Erased:
    """An erased entry the audit accepted: its index, event hash (hex) and reason."""

    index: int
    hash: str
    reason: str
    time: str


@dataclass(frozen=True, slots=True)
class AuditedLog:
    """The outcome for one log."""

    log: str
    origin: str
    size: int
    entries: int
    checkpoints: int
    findings: tuple[Finding, ...]
    suppressed: int
    head_note: str | None  # the largest verified checkpoint, for a monitor-style state file
    pruned_below: int = 0  # entries below this index may be absent: pruned by retention
    erased: tuple[Erased, ...] = ()  # erased entries whose records verified
    pruned_note: str | None = None  # the signed statement of pruned_below, for the state file

    def to_dict(self) -> dict[str, object]:
        return {
            "log": self.log,
            "origin": self.origin,
            "size": self.size,
            "entries_checked": self.entries,
            "checkpoints_verified": self.checkpoints,
            "findings": len(self.findings) + self.suppressed,
            "pruned_below": self.pruned_below,
            "erased": [
                {"index": e.index, "hash": e.hash, "reason": e.reason, "time": e.time}
                for e in self.erased
            ],
        }


class Findings:
    """The findings of one log so far, capped per kind, and where the first entry damage is."""

    def __init__(self, log: str, max_findings: int) -> None:
        self.log = log
        self.max_findings = max_findings
        self.listed: list[Finding] = []
        self.suppressed = 0
        self._per_kind: dict[str, int] = {}
        # The lowest index of damage at the entry level: a signed root that does not reproduce
        # is only worth its own finding when no entry finding below its size explains it.
        self.first_damage: int | None = None

    def add(self, kind: str, index: int | None, digest: bytes | str | None, detail: str) -> None:
        """Record one finding (or only count it, once its kind has reached the cap)."""
        count = self._per_kind.get(kind, 0) + 1
        self._per_kind[kind] = count
        if count > self.max_findings:
            self.suppressed += 1
            return
        text = digest.hex() if isinstance(digest, bytes) else digest
        self.listed.append(Finding(self.log, kind, index, text, detail))

    def damage_at(self, index: int) -> None:
        """Note entry-level damage at ``index`` (whether or not its finding was listed)."""
        if self.first_damage is None or index < self.first_damage:
            self.first_damage = index

    def in_order(self) -> tuple[Finding, ...]:
        """The listed findings by index (unpositioned first), then kind; ties keep their order."""
        return tuple(
            sorted(self.listed, key=lambda f: (f.index if f.index is not None else -1, f.kind))
        )
