"""Reading the entries: the leaf each index contributes to the rebuilt tree, and the row damage.

Where the leaves come from depends on what the edge can read (``entries_from``): event rows
(the database: each row's envelope is also checked against its ``event_hash`` and searchable
columns, and the entry bundle against the row), entry bundles (the read API with a token), or
the level-0 tiles alone (the read API without one: the leaves are taken on trust from the tile,
and only the tree above them is checked). An index with no entry is named, and its sealed leaf
stands in for it so that the rest of the tree can still be checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import orjson

from auditlog.core.audit.discrepancies import Position
from auditlog.core.audit.findings import Findings
from auditlog.core.audit.statements import LogStatements
from auditlog.core.audit.stored import StoredEvent, expected_columns
from auditlog.core.entry import (
    digest_of_entry,
    entry_leaf_hash,
    is_digest_entry,
    leaf_hash,
    log_entry,
)
from auditlog.core.errors import InvalidEvent, TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.log_statements import erased_entry_leaf
from auditlog.core.tiles import TILE_WIDTH, decode_bundle

__all__ = ["EntryReader", "rows_by_index"]


def _event_hash_of_entry(entry: bytes) -> bytes:
    # What a user knows a record by: a digest entry carries the event hash itself.
    return digest_of_entry(entry) if is_digest_entry(entry) else hashlib.sha256(entry).digest()


class EntryReader:
    """Turns one chunk's rows, bundle entries and sealed leaves into rebuilt leaves."""

    def __init__(
        self,
        hasher: LogHasher,
        entries_from: str,
        expected_size: int,
        findings: Findings,
        statements: LogStatements,
    ) -> None:
        self.hasher = hasher
        self.statements = statements
        self.entries_from = entries_from
        self.expected_size = expected_size
        self.findings = findings
        # The run of missing entries being collected: (first, last, its hash, what is missing).
        self._missing_run: tuple[int, int, bytes | None, str] | None = None

    def bundle_entries(self, chunk: int, data: bytes | None, width: int) -> list[bytes] | None:
        """The entries of stored bundle ``chunk`` (None: not stored, or unreadable)."""
        if data is None:
            # Retention deletes the bundles of chunks wholly below the pruned bound.
            pruned = self.statements.chunk_pruned(chunk * TILE_WIDTH, width)
            if self.entries_from == "rows" and width and not pruned:
                self.findings.add(
                    "bundle-mismatch",
                    chunk * TILE_WIDTH,
                    None,
                    f"entry bundle {chunk} is not stored",
                )
            return None
        try:
            return decode_bundle(data)
        except TileError as exc:
            self.findings.add(
                "bundle-mismatch", chunk * TILE_WIDTH, None, f"entry bundle {chunk}: {exc}"
            )
            return None

    def chunk_leaves(
        self,
        start: int,
        width: int,
        by_index: dict[int, list[StoredEvent]],
        stored: list[bytes] | None,
        entries: list[bytes] | None,
    ) -> tuple[list[bytes], list[Position]]:
        """The rebuilt leaves of ``[start, start+width)`` and where they differ from the sealed
        leaves ``stored``. The rows used are popped from ``by_index``; what is left is extra."""
        positions: list[Position] = []
        rebuilt: list[bytes] = []
        for pos in range(width):
            index = start + pos
            sealed = stored[pos] if stored is not None and pos < len(stored) else None
            entry = entries[pos] if entries is not None and pos < len(entries) else None
            leaf, name = self._leaf_for(index, by_index.pop(index, []), sealed, entry)
            if leaf is None:
                leaf = sealed if sealed is not None else bytes(HASH_SIZE)
            rebuilt.append(leaf)
            if sealed is not None and leaf != sealed:
                positions.append(Position(pos, leaf, sealed, name))
        return rebuilt, positions

    def _leaf_for(
        self, index: int, rows: list[StoredEvent], sealed: bytes | None, entry: bytes | None
    ) -> tuple[bytes | None, bytes | None]:
        """The rebuilt leaf for one index and the event hash that names it."""
        if self.entries_from == "tiles":
            return sealed, None
        # An absent entry the log's own signed statements account for (pruned, erased).
        if self.entries_from == "bundles":
            absent = entry is None or erased_entry_leaf(entry) is not None
        else:
            absent = not rows
        if absent:
            accounted, leaf = self.statements.absence(index, sealed)
            if accounted:
                return (sealed if leaf is None else leaf), None
        if self.entries_from == "bundles":
            if entry is None:
                self._missing(index, sealed, "bundle entry (hash: the sealed leaf)")
                return sealed, None
            return entry_leaf_hash(self.hasher, entry), _event_hash_of_entry(entry)
        if not rows:
            if entry is not None:
                self._missing(index, _event_hash_of_entry(entry), "event row")
            else:
                self._missing(index, sealed, "event row (hash: the sealed leaf)")
            if sealed is not None:
                return sealed, None
            return (entry_leaf_hash(self.hasher, entry) if entry is not None else None), None
        self.flush_missing()
        row = self._pick_row(rows, sealed)
        leaf, entry_bytes = self._check_row(row)
        # When the bundle agrees with the sealed leaf, the row is what is wrong, and the leaf
        # comparison names it; only a bundle that disagrees with the tile is damaged.
        if (
            entry is not None
            and entry_bytes is not None
            and entry != entry_bytes
            and (sealed is None or entry_leaf_hash(self.hasher, entry) != sealed)
        ):
            self.findings.add(
                "bundle-mismatch",
                index,
                row.event_hash,
                "the entry bundle holds other bytes than the sealed entry",
            )
        return leaf, row.event_hash

    def _pick_row(self, rows: list[StoredEvent], sealed: bytes | None) -> StoredEvent:
        row = rows[0]
        if len(rows) > 1:
            # Which of several rows for one index was sealed is for the tile to say.
            row = next((r for r in rows if sealed is not None and self._leaf(r) == sealed), row)
            for other in rows:
                if other is not row:
                    self.findings.add(
                        "extra-entry",
                        other.index,
                        other.event_hash,
                        "a second event row for this index",
                    )
                    self.findings.damage_at(other.index)
        return row

    def _leaf(self, row: StoredEvent) -> bytes | None:
        try:
            return leaf_hash(self.hasher, row.envelope)
        except InvalidEvent:
            return None

    def _check_row(self, row: StoredEvent) -> tuple[bytes | None, bytes | None]:
        """Row-level checks; returns (leaf hash, log entry) or Nones if the envelope is junk."""
        add = self.findings.add
        actual = hashlib.sha256(row.envelope).digest()
        if actual != row.event_hash:
            add(
                "envelope-hash-mismatch",
                row.index,
                row.event_hash,
                f"stored event_hash, but sha256 of the stored envelope is {actual.hex()}",
            )
            self.findings.damage_at(row.index)
        try:
            parsed = orjson.loads(row.envelope)
            expected = expected_columns(parsed) if row.columns else {}
            leaf, entry = leaf_hash(self.hasher, row.envelope), log_entry(row.envelope)
        except (orjson.JSONDecodeError, InvalidEvent) as exc:
            add("envelope-invalid", row.index, row.event_hash, f"stored envelope: {exc}")
            self.findings.damage_at(row.index)
            return None, None
        for name, value in row.columns.items():
            if name in expected and expected[name] != value:
                add(
                    "column-mismatch",
                    row.index,
                    row.event_hash,
                    f"column {name} is {value!r}, the envelope says {expected[name]!r}",
                )
        return leaf, entry

    def extra_rows(self, rows: Iterable[StoredEvent]) -> None:
        """Rows whose index is outside ``[0, expected_size)``: each one is damage."""
        for row in rows:
            if 0 <= row.index < self.expected_size:
                raise ValueError(f"row {row.index} is inside the log; pass it with its chunk")
            self.findings.add(
                "extra-entry",
                row.index,
                row.event_hash,
                f"an event row beyond the signed size {self.expected_size}",
            )
            self.findings.damage_at(row.index)

    # -- missing entries -----------------------------------------------------------------
    def _missing(self, index: int, digest: bytes | None, what: str) -> None:
        # Runs collapse into one finding: a truncated table is one piece of damage, not a
        # million, and the first index and hash still name where it starts.
        run = self._missing_run
        if run is not None and run[1] == index - 1 and run[3] == what:
            self._missing_run = (run[0], index, run[2], what)
            return
        self.flush_missing()
        self._missing_run = (index, index, digest, what)

    def flush_missing(self) -> None:
        """Report the run of missing entries collected so far (a present entry ends a run)."""
        run = self._missing_run
        if run is None:
            return
        first, last, digest, what = run
        self.findings.damage_at(first)
        if first == last:
            detail = f"no {what} for this index"
        else:
            detail = f"no {what} for indexes {first}..{last} ({last - first + 1} entries)"
        self.findings.add("missing-entry", first, digest, detail)
        self._missing_run = None


def rows_by_index(rows: Sequence[StoredEvent]) -> dict[int, list[StoredEvent]]:
    """``rows`` grouped by index, in their order (a second row for one index is damage)."""
    by_index: dict[int, list[StoredEvent]] = {}
    for row in rows:
        by_index.setdefault(row.index, []).append(row)
    return by_index
