"""Archives: a range of a log's entries that verifies offline with only the log's public key.

An archive (``auditlog archive``, verified by ``auditlog audit --bundle``) is JSON lines::

    {"format": "auditlog-archive/v1", "origin": O, "log": L, "hash_scheme": S,
     "first": A, "end": B, "checkpoint": <signed note of size N >= B>,
     "tiles": {"<level>/<index>": <base64>, ...}, "pruned": <signed note> | null}
    {"index": A, "envelope": <base64 canonical envelope>}
    {"index": A+1, "erasure": <signed erasure record>}          (an erased entry)
    ...
    {"entries": B - A}

The verifier rebuilds the tree of size N from three parts: the perfect subtrees covering
``[0, A)`` and ``[B, N)`` (read from the archived tiles, which hold nothing else that matters),
and between them the leaves of the archived entries, each computed from its envelope (or taken
from its verified erasure record). The root must be the signed checkpoint's: one flipped byte
anywhere, in an envelope, a tile, a record or the checkpoint, and it is not. The last line
guards against a truncated file. Everything is streamed: memory does not grow with the range.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.compact import CompactRange
from auditlog.core.entry import leaf_hash
from auditlog.core.errors import AuditLogError, InvalidEvent, NoteError, TileError
from auditlog.core.hashing import LogHasher, get_hasher
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.log_statements import open_erasure, open_pruned
from auditlog.core.note import NoteVerifier
from auditlog.core.proof import node_hash, range_nodes, tiles_for_ranges
from auditlog.core.tiles import TileID

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveError",
    "VerifiedArchive",
    "archive_header",
    "archive_tiles",
    "entry_line",
    "trailer_line",
    "verify_archive",
]

ARCHIVE_FORMAT: Final = "auditlog-archive/v1"


class ArchiveError(AuditLogError):
    """The archive does not verify (or is not an archive); the message says why."""


@dataclass(frozen=True, slots=True)
class VerifiedArchive:
    origin: str
    first: int
    end: int
    size: int  # the signed checkpoint's
    erased: int


def archive_tiles(first: int, end: int, size: int) -> list[TileID]:
    """The tiles an archive of ``[first, end)`` against ``size`` carries."""
    return tiles_for_ranges([(0, first), (end, size)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def archive_header(
    *,
    origin: str,
    log: str,
    hash_scheme: str,
    first: int,
    end: int,
    checkpoint: str,
    tiles: dict[TileID, bytes],
    pruned: str | None,
) -> bytes:
    body = {
        "format": ARCHIVE_FORMAT,
        "origin": origin,
        "log": log,
        "hash_scheme": hash_scheme,
        "first": first,
        "end": end,
        "checkpoint": checkpoint,
        "tiles": {f"{t.level}/{t.index}": _b64(d) for t, d in sorted(tiles.items())},
        "pruned": pruned,
    }
    return orjson.dumps(body) + b"\n"


def entry_line(index: int, *, envelope: bytes | None = None, erasure: str | None = None) -> bytes:
    if envelope is not None:
        return orjson.dumps({"index": index, "envelope": _b64(envelope)}) + b"\n"
    return orjson.dumps({"index": index, "erasure": erasure}) + b"\n"


def trailer_line(count: int) -> bytes:
    return orjson.dumps({"entries": count}) + b"\n"


def _load(line: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ArchiveError(f"{what} is not a non-negative integer")
    return value


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ArchiveError(f"{what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ArchiveError(f"{what} is not base64") from exc


def _tiles(value: object) -> dict[TileID, bytes]:
    if not isinstance(value, dict):
        raise ArchiveError("tiles is not an object")
    out = {}
    for key, data in value.items():
        level, _, index = str(key).partition("/")
        if not level.isdigit() or not index.isdigit():
            raise ArchiveError(f"tile name {key!r} is not <level>/<index>")
        out[TileID(int(level), int(index))] = _unb64(data, f"tile {key}")
    return out


def _subtree(rng: CompactRange, node_root: bytes, height: int) -> None:
    """Append a perfect subtree of ``2**height`` leaves at an aligned position."""
    if rng.size % (1 << height):
        raise ArchiveError("internal: subtree not aligned")
    roots = rng.roots
    roots.append(node_root)
    merges = rng.size >> height
    rng.size += 1 << height
    while merges & 1:
        right = roots.pop()
        roots[-1] = rng.hasher.hash_children(roots[-1], right)
        merges >>= 1


def _open_header(head: dict[str, Any], trusted: list[NoteVerifier]) -> tuple[Checkpoint, LogHasher]:
    """The verified checkpoint and the hasher of an archive's header."""
    if head.get("format") != ARCHIVE_FORMAT:
        raise ArchiveError(f"not an {ARCHIVE_FORMAT} archive")
    try:
        note = open_checkpoint_note(str(head.get("checkpoint")), trusted)
        cp = Checkpoint.from_text(note.text)
        hasher = get_hasher(str(head.get("hash_scheme")))
    except AuditLogError as exc:
        raise ArchiveError(f"checkpoint: {exc}") from exc
    if cp.origin != head.get("origin"):
        raise ArchiveError(f"the checkpoint is for {cp.origin!r}, not {head.get('origin')!r}")
    if head.get("pruned") is not None:
        try:
            bound = open_pruned(str(head["pruned"]), trusted)
        except NoteError as exc:
            raise ArchiveError(f"pruned statement: {exc}") from exc
        if bound.origin != cp.origin:
            raise ArchiveError("the pruned statement is for another log")
    return cp, hasher


def _subtrees(rng: CompactRange, lo: int, hi: int, tiles: dict[TileID, bytes]) -> None:
    try:
        for height, index in range_nodes(lo, hi):
            _subtree(rng, node_hash(rng.hasher, (height, index), tiles), height)
    except TileError as exc:
        raise ArchiveError(f"tiles: {exc}") from exc


def _leaf(
    line: dict[str, Any],
    expected: int,
    cp: Checkpoint,
    rng: CompactRange,
    trusted: list[NoteVerifier],
) -> tuple[bytes, bool]:
    """The leaf of one entry line, and whether it is an erased entry's."""
    if line.get("index") != expected:
        raise ArchiveError(f"entry {expected} is missing (found {line.get('index')!r})")
    if "envelope" in line:
        try:
            return leaf_hash(rng.hasher, _unb64(line["envelope"], f"entry {expected}")), False
        except InvalidEvent as exc:
            raise ArchiveError(f"entry {expected}: {exc}") from exc
    try:
        record = open_erasure(str(line.get("erasure")), trusted)
    except NoteError as exc:
        raise ArchiveError(f"entry {expected}: erasure record: {exc}") from exc
    if record.origin != cp.origin or record.index != expected:
        raise ArchiveError(f"entry {expected}: the erasure record is for another entry")
    return record.leaf, True


def verify_archive(lines: Iterable[bytes], trusted: list[NoteVerifier]) -> VerifiedArchive:
    """Verify an archive read line by line; ArchiveError with the reason when it does not."""
    it: Iterator[bytes] = iter(lines)
    head = _load(next(it, b""), "the header")
    cp, hasher = _open_header(head, trusted)
    first, end = _int(head.get("first"), "first"), _int(head.get("end"), "end")
    if not first <= end <= cp.size:
        raise ArchiveError(f"range [{first}, {end}) does not lie in the checkpoint's {cp.size}")
    tiles = _tiles(head.get("tiles"))
    rng = CompactRange(hasher)
    _subtrees(rng, 0, first, tiles)
    erased = 0
    for expected in range(first, end):
        leaf, was_erased = _leaf(
            _load(next(it, b""), f"entry {expected}"), expected, cp, rng, trusted
        )
        erased += was_erased
        rng.append(leaf)
    _subtrees(rng, end, cp.size, tiles)
    if rng.root() != cp.root:
        raise ArchiveError(
            f"the archived entries and tiles give root {rng.root().hex()}, the signed"
            f" checkpoint of size {cp.size} says {cp.root.hex()}"
        )
    trailer = _load(next(it, b""), "the last line")
    if trailer != {"entries": end - first} or next(it, None) is not None:
        raise ArchiveError("the archive does not end with its entry count: truncated or extended")
    return VerifiedArchive(cp.origin, first, end, cp.size, erased)
