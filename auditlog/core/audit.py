"""Auditing a whole log from its stored data, trusting nothing but the log's public key.

The auditor rebuilds the tree ``R`` from the entries themselves (event rows' envelope bytes, or
entry bundles when all we have is the read API), and holds it against two other accounts of the
same log: the stored tiles ``T`` and the signed checkpoints ``C``. Only ``C`` is authenticated
(by the key); the tiles are what lets a finding name the exact record:

* a leaf where ``R`` and ``T`` differ is decided one level up. If the rebuilt tile's root is the
  hash the stored parent tile holds (or, at the right edge, if ``R``'s root is the signed root),
  the entries are authentic and the stored tile was damaged (``tile-mismatch``); otherwise the
  entry is not the one sealed (``leaf-mismatch``, or ``reordered`` when it is the entry sealed at
  another index). A missing entry is named and its sealed leaf taken from ``T`` (or its bundle),
  so one deleted row does not make every later checkpoint disagree.
* a signed checkpoint whose root ``R`` does not reproduce is ``inconsistent-checkpoints`` when a
  larger signed checkpoint *does* match ``R`` (that proves ``R``'s prefix authentic, so the two
  signed statements cannot both hold), and ``checkpoint-root-mismatch`` when no entry-level
  finding below its size already explains it.

Everything here is pure and push-driven, so that an asyncpg edge and an HTTP edge can both feed
it and memory stays bounded whatever the log's size: the caller pushes one 256-entry *chunk* at a
time (rows, the stored level-0 tile and the entry bundle of those indexes), then answers
:meth:`LogAuditor.wanted_tiles` (stored tiles of higher levels, only as the rebuilt ones
complete), and calls :meth:`LogAuditor.finish`. The auditor keeps one partial tile per level,
a compact range, and the discrepancies still waiting for their parent tile.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.columns import searchable_columns
from auditlog.core.compact import CompactRange, subtree_root
from auditlog.core.entry import (
    digest_of_entry,
    entry_leaf_hash,
    is_digest_entry,
    leaf_hash,
    log_entry,
)
from auditlog.core.errors import InvalidEvent, MalformedNote, SignatureError, TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.note import NoteVerifier, open_note
from auditlog.core.tiles import TILE_HEIGHT, TILE_WIDTH, TileID, decode_bundle, split_hashes

__all__ = [
    "COLUMN_NAMES",
    "KINDS",
    "AuditedLog",
    "Finding",
    "LogAuditor",
    "StoredCheckpoint",
    "StoredEvent",
    "StoredHead",
    "expected_columns",
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
)

# Searchable columns the sealer derives from the envelope (sealer/rows.py `prepare`).
COLUMN_NAMES: Final = (
    "tenant_id",
    "actor",
    "action",
    "target",
    "status",
    "source",
    "message",
    "new_value",
    "old_value",
    "event_time",
    "received_at",
)
_RECEIVED_AT_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
# Beyond this many entry-level findings per kind a log is simply broken; keep counting, stop
# listing, so a wrecked billion-entry log cannot exhaust memory.
DEFAULT_MAX_FINDINGS: Final = 10_000


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
class StoredEvent:
    """An event row as stored: index, event_hash column, envelope bytes, searchable columns.

    ``columns`` holds whichever of :data:`COLUMN_NAMES` the edge read; only those are compared.
    """

    index: int
    event_hash: bytes
    envelope: bytes
    columns: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed note with the size/root stored beside it (None where the source has no columns).

    ``source`` says where it came from ("checkpoints", "head", "state") for the report.
    """

    note: str
    size: int | None = None
    root: bytes | None = None
    source: str = "checkpoints"


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A log as listed: id, origin, hash scheme, and its head (size, root, latest note)."""

    log_id: str
    origin: str
    hash_scheme: str
    size: int
    root: bytes | None
    checkpoint: str | None


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

    def to_dict(self) -> dict[str, object]:
        return {
            "log": self.log,
            "origin": self.origin,
            "size": self.size,
            "entries_checked": self.entries,
            "checkpoints_verified": self.checkpoints,
            "findings": len(self.findings) + self.suppressed,
        }


def expected_columns(envelope: object) -> dict[str, object]:
    """The searchable column values the sealer derives from a (parsed) envelope."""
    if not isinstance(envelope, dict):
        raise InvalidEvent("envelope is not a JSON object")
    event = envelope.get("event")
    if not isinstance(event, dict):
        raise InvalidEvent("envelope has no event object")
    out = searchable_columns(event)
    received = envelope.get("received_at")
    if not isinstance(received, str):
        raise InvalidEvent("envelope has no received_at")
    try:
        out["received_at"] = datetime.strptime(received, _RECEIVED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidEvent(f"received_at {received!r} does not parse") from exc
    return out


def _hex(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def _event_hash_of_entry(entry: bytes) -> bytes:
    # What a user knows a record by: a digest entry carries the event hash itself.
    return digest_of_entry(entry) if is_digest_entry(entry) else hashlib.sha256(entry).digest()


@dataclass(slots=True)
class _Position:
    """A leaf (level 0) or node where the rebuilt tree and a stored tile differ."""

    pos: int
    rebuilt: bytes
    stored: bytes | None
    name: bytes | None  # the event hash of the entry at this index, when known


@dataclass(slots=True)
class _Discrepancy:
    tile: TileID
    rebuilt: list[bytes]
    positions: list[_Position]


class LogAuditor:
    """Audits one log; see the module docstring for the protocol the edge follows."""

    def __init__(
        self,
        head: StoredHead,
        hasher: LogHasher,
        verifiers: Sequence[NoteVerifier],
        checkpoints: Iterable[StoredCheckpoint],
        *,
        entries_from: str = "rows",
        max_findings: int = DEFAULT_MAX_FINDINGS,
    ) -> None:
        if entries_from not in ("rows", "bundles", "tiles"):
            raise ValueError(f"entries_from must be rows, bundles or tiles, not {entries_from!r}")
        self.head = head
        self.log = head.log_id
        self.hasher = hasher
        self.verifiers = list(verifiers)
        self.entries_from = entries_from
        self.max_findings = max_findings
        self._findings: list[Finding] = []
        self._suppressed = 0
        self._per_kind: dict[str, int] = {}
        # Signed checkpoints by size (root, source); verified ones only.
        self._signed: dict[int, tuple[bytes, str]] = {}
        self._head_note: str | None = None
        self._check_checkpoints(list(checkpoints))
        self.expected_size = max([head.size, *self._signed])
        self._cp_sizes = sorted(s for s in self._signed if s > 0)
        self._cp_next = 0
        self._cp_results: dict[int, bool] = {}  # size -> did R reproduce the signed root

        self._range = CompactRange(hasher)
        self._levels: list[list[bytes]] = []
        self._level_index: list[int] = []
        self._next_chunk = 0
        self.entries = 0
        self._need: set[TileID] = set()
        self._stored: dict[TileID, bytes | None] = {}  # fetched higher-level tiles, pruned
        self._await_compare: dict[TileID, list[bytes]] = {}
        self._await_parent: dict[TileID, _Discrepancy] = {}
        self._edge: list[_Discrepancy] = []  # decided at the end, against the signed root
        self._upper: list[_Discrepancy] = []  # decided at the end, by the entries beneath
        self._entry_damage: list[tuple[int, _Position]] = []  # (index, position) leaf mismatches
        self._sealed_at: dict[bytes, int] = {}  # stored leaf -> index, for the mismatched ones
        self._missing_run: tuple[int, int, bytes | None, str] | None = None
        self._first_damage: int | None = None

    # -- findings ------------------------------------------------------------------------
    def _add(self, kind: str, index: int | None, digest: bytes | str | None, detail: str) -> None:
        count = self._per_kind.get(kind, 0) + 1
        self._per_kind[kind] = count
        if count > self.max_findings:
            self._suppressed += 1
            return
        text = digest.hex() if isinstance(digest, bytes) else digest
        self._findings.append(Finding(self.log, kind, index, text, detail))

    def _damage_at(self, index: int) -> None:
        if self._first_damage is None or index < self._first_damage:
            self._first_damage = index

    # -- checkpoints ---------------------------------------------------------------------
    def _open(self, cp: StoredCheckpoint) -> Checkpoint | None:
        where = "published head checkpoint" if cp.source == "head" else f"{cp.source} row"
        try:
            note = open_note(cp.note, self.verifiers)
            body = Checkpoint.from_text(note.text)
        except SignatureError as exc:
            self._add("checkpoint-signature", cp.size, cp.root, f"{where}: {exc}")
            return None
        except MalformedNote as exc:
            self._add("checkpoint-malformed", cp.size, cp.root, f"{where}: {exc}")
            return None
        if body.origin != self.head.origin:
            self._add(
                "checkpoint-origin",
                body.size,
                body.root,
                f"{where} is for {body.origin!r}, this log is {self.head.origin!r}",
            )
            return None
        if (cp.size is not None and cp.size != body.size) or (
            cp.root is not None and cp.root != body.root
        ):
            self._add(
                "checkpoint-row-mismatch",
                body.size,
                body.root,
                f"{where} stores size {cp.size} root {_hex(cp.root)} beside a note that signs"
                f" size {body.size} root {body.root.hex()}",
            )
        return body

    def _check_checkpoints(self, checkpoints: list[StoredCheckpoint]) -> None:
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
            seen = self._signed.get(body.size)
            if seen is not None and seen[0] != body.root:
                self._add(
                    "inconsistent-checkpoints",
                    body.size,
                    body.root,
                    f"{cp.source} signs root {body.root.hex()} for size {body.size}, "
                    f"{seen[1]} signs {seen[0].hex()}",
                )
                continue
            self._signed.setdefault(body.size, (body.root, cp.source))
            if best is None or body.size > best[0]:
                best = (body.size, cp.note)
        self._head_note = best[1] if best else None
        if not self._signed:
            self._add(
                "no-verified-checkpoint", None, None, "no checkpoint is signed by a trusted key"
            )
        has_history = any(cp.source == "checkpoints" for cp in checkpoints)
        if head.checkpoint and head.size > 0 and has_history and head.size not in history_sizes:
            self._add(
                "missing-checkpoint",
                head.size,
                head.root,
                "the published head checkpoint is not in the checkpoint history",
            )
        largest = max(self._signed, default=0)
        if head.size < largest:
            root, source = self._signed[largest]
            self._add(
                "rollback",
                head.size,
                head.root,
                f"log head is at size {head.size}, but a checkpoint of size {largest} "
                f"(root {root.hex()}, from {source}) was signed",
            )
        if head.checkpoint is not None and head.size in self._signed:
            root = self._signed[head.size][0]
            if head.root is not None and head.root != root:
                self._add(
                    "head-mismatch",
                    head.size,
                    head.root,
                    f"log head root {head.root.hex()} differs from the signed {root.hex()}",
                )

    # -- the rebuilt tree ----------------------------------------------------------------
    def _push(self, level: int, node: bytes) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._level_index.append(0)
        buf = self._levels[level]
        buf.append(node)
        if len(buf) == TILE_WIDTH:
            tile = TileID(level, self._level_index[level])
            hashes = list(buf)
            buf.clear()
            self._level_index[level] += 1
            if level > 0:
                self._await_compare[tile] = hashes
                self._need.add(tile)
            self._push(level + 1, subtree_root(self.hasher, hashes))

    def _append_leaf(self, leaf: bytes) -> None:
        self._range.append(leaf)
        # Level 0 is compared chunk by chunk in add_chunk, so only the upper levels are pushed.
        buf0 = self._levels[0] if self._levels else None
        if buf0 is None:
            self._levels.append([])
            self._level_index.append(0)
            buf0 = self._levels[0]
        buf0.append(leaf)
        if len(buf0) == TILE_WIDTH:
            hashes = list(buf0)
            buf0.clear()
            self._level_index[0] += 1
            self._push(1, subtree_root(self.hasher, hashes))
        size = self._range.size
        while self._cp_next < len(self._cp_sizes) and self._cp_sizes[self._cp_next] == size:
            self._cp_results[size] = self._range.root() == self._signed[size][0]
            self._cp_next += 1

    # -- entries -------------------------------------------------------------------------
    def _check_row(self, row: StoredEvent) -> tuple[bytes | None, bytes | None]:
        """Row-level checks; returns (leaf hash, log entry) or Nones if the envelope is junk."""
        actual = hashlib.sha256(row.envelope).digest()
        if actual != row.event_hash:
            self._add(
                "envelope-hash-mismatch",
                row.index,
                row.event_hash,
                f"stored event_hash, but sha256 of the stored envelope is {actual.hex()}",
            )
            self._damage_at(row.index)
        try:
            parsed = orjson.loads(row.envelope)
            expected = expected_columns(parsed) if row.columns else {}
            leaf, entry = leaf_hash(self.hasher, row.envelope), log_entry(row.envelope)
        except (orjson.JSONDecodeError, InvalidEvent) as exc:
            self._add("envelope-invalid", row.index, row.event_hash, f"stored envelope: {exc}")
            self._damage_at(row.index)
            return None, None
        for name, value in row.columns.items():
            if name in expected and expected[name] != value:
                self._add(
                    "column-mismatch",
                    row.index,
                    row.event_hash,
                    f"column {name} is {value!r}, the envelope says {expected[name]!r}",
                )
        return leaf, entry

    def _flush_missing(self) -> None:
        run = self._missing_run
        if run is None:
            return
        first, last, digest, what = run
        self._damage_at(first)
        if first == last:
            detail = f"no {what} for this index"
        else:
            detail = f"no {what} for indexes {first}..{last} ({last - first + 1} entries)"
        self._add("missing-entry", first, digest, detail)
        self._missing_run = None

    def _missing(self, index: int, digest: bytes | None, what: str) -> None:
        # Runs collapse into one finding: a truncated table is one piece of damage, not a
        # million, and the first index and hash still name where it starts.
        run = self._missing_run
        if run is not None and run[1] == index - 1 and run[3] == what:
            self._missing_run = (run[0], index, run[2], what)
            return
        self._flush_missing()
        self._missing_run = (index, index, digest, what)

    def add_chunk(
        self,
        chunk: int,
        rows: Sequence[StoredEvent],
        tile: bytes | None,
        bundle: bytes | None,
    ) -> None:
        """Push the entries ``[256*chunk, 256*chunk+256)``: rows in that range, stored tile
        ``0/chunk`` and entry bundle ``chunk`` (None when not stored). Chunks come in order,
        every chunk below :attr:`expected_size` exactly once.
        """
        if chunk != self._next_chunk:
            raise ValueError(f"chunk {chunk} out of order, expected {self._next_chunk}")
        self._next_chunk += 1
        start = chunk * TILE_WIDTH
        width = max(0, min(TILE_WIDTH, self.expected_size - start))
        stored = self._tile_hashes(TileID(0, chunk), tile, width)
        entries = self._bundle_entries(chunk, bundle, width)
        by_index: dict[int, list[StoredEvent]] = {}
        for row in rows:
            by_index.setdefault(row.index, []).append(row)
        positions: list[_Position] = []
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
                positions.append(_Position(pos, leaf, sealed, name))
            self._append_leaf(leaf)
            self.entries += 1
        if entries is not None and len(entries) > width:
            self._add(
                "bundle-mismatch",
                start + width,
                None,
                f"bundle {chunk} holds {len(entries)} entries, the log has {width} there",
            )
        self.add_extra_rows([r for group in by_index.values() for r in group])
        if positions:
            disc = _Discrepancy(TileID(0, chunk), rebuilt, positions)
            self._await_decision(disc, full=width == TILE_WIDTH)

    def _leaf_for(
        self, index: int, rows: list[StoredEvent], sealed: bytes | None, entry: bytes | None
    ) -> tuple[bytes | None, bytes | None]:
        """The rebuilt leaf for one index and the event hash that names it."""
        if self.entries_from == "tiles":
            return sealed, None
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
        self._flush_missing()
        row = rows[0]
        if len(rows) > 1:
            # Which of several rows for one index was sealed is for the tile to say.
            row = next((r for r in rows if sealed is not None and self._leaf(r) == sealed), row)
            for other in rows:
                if other is not row:
                    self._add(
                        "extra-entry",
                        other.index,
                        other.event_hash,
                        "a second event row for this index",
                    )
                    self._damage_at(other.index)
        leaf, entry_bytes = self._check_row(row)
        # When the bundle agrees with the sealed leaf, the row is what is wrong, and the leaf
        # comparison names it; only a bundle that disagrees with the tile is damaged.
        if (
            entry is not None
            and entry_bytes is not None
            and entry != entry_bytes
            and (sealed is None or entry_leaf_hash(self.hasher, entry) != sealed)
        ):
            self._add(
                "bundle-mismatch",
                index,
                row.event_hash,
                "the entry bundle holds other bytes than the sealed entry",
            )
        return leaf, row.event_hash

    def _leaf(self, row: StoredEvent) -> bytes | None:
        try:
            return leaf_hash(self.hasher, row.envelope)
        except InvalidEvent:
            return None

    def add_extra_rows(self, rows: Iterable[StoredEvent]) -> None:
        """Rows whose index is outside ``[0, expected_size)``: each one is damage."""
        for row in rows:
            if 0 <= row.index < self.expected_size:
                raise ValueError(f"row {row.index} is inside the log; pass it with its chunk")
            self._add(
                "extra-entry",
                row.index,
                row.event_hash,
                f"an event row beyond the signed size {self.expected_size}",
            )
            self._damage_at(row.index)

    def _tile_hashes(self, tile: TileID, data: bytes | None, width: int) -> list[bytes] | None:
        if width == 0:
            return None
        if data is None:
            if self.entries_from != "tiles" or tile.level > 0:
                self._add(
                    "missing-tile",
                    tile.index << (TILE_HEIGHT * (tile.level + 1)),
                    None,
                    f"tile {tile.level}/{tile.index} is not stored",
                )
            return None
        try:
            hashes = split_hashes(data)
        except TileError as exc:
            self._add(
                "tile-mismatch",
                tile.index << (TILE_HEIGHT * (tile.level + 1)),
                None,
                f"tile {tile.level}/{tile.index}: {exc}",
            )
            return None
        if len(hashes) < width:
            self._add(
                "missing-tile",
                tile.index << (TILE_HEIGHT * (tile.level + 1)),
                None,
                f"tile {tile.level}/{tile.index} holds {len(hashes)} hashes, the log needs {width}",
            )
        return hashes

    def _bundle_entries(self, chunk: int, data: bytes | None, width: int) -> list[bytes] | None:
        if data is None:
            if self.entries_from == "rows" and width:
                self._add(
                    "bundle-mismatch",
                    chunk * TILE_WIDTH,
                    None,
                    f"entry bundle {chunk} is not stored",
                )
            return None
        try:
            return decode_bundle(data)
        except TileError as exc:
            self._add("bundle-mismatch", chunk * TILE_WIDTH, None, f"entry bundle {chunk}: {exc}")
            return None

    # -- stored tiles of higher levels ---------------------------------------------------
    def wanted_tiles(self) -> list[TileID]:
        """Stored tiles the audit needs before it can go on; fetch and :meth:`add_tiles`."""
        return sorted(self._need)

    def add_tiles(self, tiles: Mapping[TileID, bytes | None]) -> None:
        """Stored tiles (None: not stored), as asked for by :meth:`wanted_tiles`."""
        for tile, data in tiles.items():
            self._need.discard(tile)
            self._stored[tile] = data
        for tile in [t for t in self._await_compare if t in self._stored]:
            self._compare_upper(tile, self._await_compare.pop(tile))
        for tile in [t for t in self._await_parent if self._parent_id(t) in self._stored]:
            self._decide(self._await_parent.pop(tile))
        waiting = {self._parent_id(t) for t in self._await_parent} | set(self._await_compare)
        for tile in [t for t in self._stored if t not in waiting]:
            del self._stored[tile]

    def _compare_upper(self, tile: TileID, rebuilt: list[bytes]) -> None:
        stored = self._tile_hashes(tile, self._stored.get(tile), len(rebuilt))
        if stored is None:
            return
        positions = [
            _Position(pos, node, stored[pos], None)
            for pos, node in enumerate(rebuilt[: len(stored)])
            if node != stored[pos]
        ]
        if positions:
            self._upper.append(_Discrepancy(tile, rebuilt, positions))

    @staticmethod
    def _parent_id(tile: TileID) -> TileID:
        return TileID(tile.level + 1, tile.index >> TILE_HEIGHT)

    def _await_decision(self, disc: _Discrepancy, *, full: bool) -> None:
        if not full:
            self._edge.append(disc)
            return
        self._await_parent[disc.tile] = disc
        parent = self._parent_id(disc.tile)
        if parent in self._stored:
            self._decide(self._await_parent.pop(disc.tile))
        else:
            self._need.add(parent)

    def _decide(self, disc: _Discrepancy) -> None:
        parent = self._parent_id(disc.tile)
        data = self._stored.get(parent)
        pos = disc.tile.index & (TILE_WIDTH - 1)
        end = (pos + 1) * HASH_SIZE
        if data is None or len(data) < end:
            # No stored parent to judge by: fall back to the signed root, like the right edge.
            self._edge.append(disc)
            return
        self._resolve(
            disc,
            tile_damaged=subtree_root(self.hasher, disc.rebuilt) == data[end - HASH_SIZE : end],
        )

    def _resolve(self, disc: _Discrepancy, *, tile_damaged: bool) -> None:
        """Name a level-0 discrepancy as entry or tile damage; upper ones only as tile damage."""
        tile = disc.tile
        span = 1 << (TILE_HEIGHT * tile.level)
        for p in disc.positions:
            first = ((tile.index << TILE_HEIGHT) + p.pos) * span
            if tile_damaged:
                covers = f"leaf {first}" if span == 1 else f"leaves {first}..{first + span - 1}"
                self._add(
                    "tile-mismatch",
                    first,
                    p.stored,
                    f"tile {tile.level}/{tile.index} position {p.pos} ({covers}) holds "
                    f"{_hex(p.stored)}, the entries give {p.rebuilt.hex()}",
                )
            elif tile.level == 0:
                # Upper-level differences follow from these; naming the entries is the point.
                self._entry_damage.append((first, p))
                if p.stored is not None:
                    self._sealed_at[p.stored] = first
                self._damage_at(first)

    # -- the end -------------------------------------------------------------------------
    def end_of_entries(self) -> None:
        """No more chunks: queue the right edge (the partial upper tiles) for comparison.

        Partial tiles are never hashed into a parent, so their differences are judged against
        the signed root instead.
        """
        while self._next_chunk * TILE_WIDTH < self.expected_size:
            self.add_chunk(self._next_chunk, [], None, None)
        self._flush_missing()
        for level in range(1, len(self._levels)):
            buf = self._levels[level]
            if buf:
                tile = TileID(level, self._level_index[level])
                self._await_compare[tile] = list(buf)
                self._need.add(tile)

    def finish(self) -> AuditedLog:
        """The findings; call after :meth:`end_of_entries` once no tiles are wanted."""
        if self._need:
            raise ValueError(f"tiles still wanted: {sorted(self._need)[:4]}")
        for disc in self._await_parent.values():
            self._edge.append(disc)
        self._await_parent.clear()
        # Is the rebuilt tree the signed one? Judged at the largest signed size it reached.
        reached = [s for s in self._cp_results if s <= self._range.size]
        authentic = self._cp_results[max(reached)] if reached else True
        for disc in self._edge:
            self._resolve(disc, tile_damaged=authentic)
        self._edge.clear()
        self._report_upper()
        self._report_entry_damage()
        self._report_checkpoints()
        findings = sorted(
            self._findings, key=lambda f: (f.index if f.index is not None else -1, f.kind)
        )
        return AuditedLog(
            self.log,
            self.head.origin,
            self.expected_size,
            self.entries,
            len(self._signed),
            tuple(findings),
            self._suppressed,
            self._head_note,
        )

    def _report_upper(self) -> None:
        # A node above entry damage must differ from the stored one; any other difference is
        # the stored hash's own. (When an entry and a tile hash above it are both damaged, the
        # entry is named and the hash is not: one finding per subtree is enough to fail.)
        damaged = sorted(index for index, _ in self._entry_damage)
        for disc in self._upper:
            span = 1 << (TILE_HEIGHT * disc.tile.level)
            alone = []
            for p in disc.positions:
                first = ((disc.tile.index << TILE_HEIGHT) + p.pos) * span
                at = bisect.bisect_left(damaged, first)
                if at == len(damaged) or damaged[at] >= first + span:
                    alone.append(p)
            if alone:
                self._resolve(_Discrepancy(disc.tile, disc.rebuilt, alone), tile_damaged=True)
        self._upper.clear()

    def _report_entry_damage(self) -> None:
        for index, p in self._entry_damage:
            moved = self._sealed_at.get(p.rebuilt)
            if moved is not None and moved != index:
                self._add(
                    "reordered",
                    index,
                    p.name,
                    f"the entry at index {index} is the one sealed at index {moved}",
                )
            else:
                self._add(
                    "leaf-mismatch",
                    index,
                    p.name,
                    f"leaf {p.rebuilt.hex()} is not the sealed leaf {_hex(p.stored)}",
                )

    def _report_checkpoints(self) -> None:
        matched_above: int | None = None
        for size in sorted(self._cp_results, reverse=True):
            root, source = self._signed[size]
            if self._cp_results[size]:
                matched_above = size
            elif matched_above is not None:
                # R reproduces the larger signed root, so R's prefix is the authentic tree of
                # this size: the two signed statements contradict each other.
                self._add(
                    "inconsistent-checkpoints",
                    size,
                    root,
                    f"signed checkpoint ({source}) is not a prefix of the signed checkpoint of "
                    f"size {matched_above}",
                )
            elif self._first_damage is None or self._first_damage >= size:
                below = [s for s, ok in self._cp_results.items() if ok and s < size]
                since = f" after index {max(below) - 1}" if below else ""
                self._add(
                    "checkpoint-root-mismatch",
                    size,
                    root,
                    f"the stored entries and tiles do not reproduce the signed root ({source}):"
                    f" entries{since} were rewritten together with their tiles",
                )
