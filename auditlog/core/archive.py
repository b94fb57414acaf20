"""Archives: a range of a log's entries that verifies offline with only the log's public key.

An archive (``auditlog archive``, verified by ``auditlog audit --bundle``) is JSON lines::

    {"format": "auditlog-archive/v1", "origin": O, "log": L, "hash_scheme": S,
     "first": A, "end": B, "checkpoint": <signed note of size N >= B>,
     "left": [<base64 hash>, ...], "right": [<base64 hash>, ...], "pruned": <signed note> | null}
    {"index": A, "envelope": <base64 canonical envelope>}
    {"index": A+1, "erasure": <signed erasure record>}          (an erased entry)
    ...
    {"entries": B - A}

The verifier rebuilds the tree of size N from three parts: the roots of the perfect subtrees
covering ``[0, A)`` (``left``) and ``[B, N)`` (``right``), as
:func:`~auditlog.core.proof.range_nodes` decomposes them (at most one per bit of N), and between
them the leaves of the archived entries, each computed from its envelope (or taken from its
verified erasure record). The root must be
the signed checkpoint's. Every byte counts: keys are exactly these, base64 is in its one
spelling, ``log`` must be the log id the origin names (``<topic>-<partition>``), and the last
line guards against a truncated or extended file. Everything is streamed: memory does not grow
with the range.
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
from auditlog.core.errors import AuditLogError, InvalidEvent, NoteError
from auditlog.core.hashing import HASH_SIZE, LogHasher, get_hasher
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.log_statements import open_erasure, open_pruned
from auditlog.core.note import NoteVerifier, parse_note
from auditlog.core.proof import node_hash, range_nodes, tiles_for_ranges
from auditlog.core.tiles import TileID

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveError",
    "VerifiedArchive",
    "archive_header",
    "archive_nodes",
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


_HEADER_KEYS: Final = frozenset(
    {"format", "origin", "log", "hash_scheme", "first", "end", "checkpoint", "left", "right",
     "pruned"}
)  # fmt: skip


def archive_tiles(first: int, end: int, size: int) -> list[TileID]:
    """The tiles the writer reads the subtree roots of an archive of ``[first, end)`` from."""
    return tiles_for_ranges([(0, first), (end, size)])


def archive_nodes(
    hasher: LogHasher, first: int, end: int, size: int, tiles: dict[TileID, bytes]
) -> tuple[list[bytes], list[bytes]]:
    """The ``left`` and ``right`` subtree roots of an archive, from the log's tiles."""
    left = [node_hash(hasher, node, tiles) for node in range_nodes(0, first)]
    right = [node_hash(hasher, node, tiles) for node in range_nodes(end, size)]
    return left, right


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
    left: list[bytes],
    right: list[bytes],
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
        "left": [_b64(h) for h in left],
        "right": [_b64(h) for h in right],
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
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ArchiveError(f"{what} is not base64") from exc
    if _b64(raw) != value:
        raise ArchiveError(f"{what} is not base64 in its one spelling")
    return raw


def _note(value: object, what: str) -> str:
    """A signed note in its one spelling (base64 signatures can be spelled several ways)."""
    text = str(value)
    try:
        parsed = parse_note(text)
    except NoteError as exc:
        raise ArchiveError(f"{what}: {exc}") from exc
    if parsed.text + "\n" + "".join(sig.line() + "\n" for sig in parsed.signatures) != text:
        raise ArchiveError(f"{what} is not a signed note in its one spelling")
    return text


def _hashes(value: object, what: str, count: int) -> list[bytes]:
    if not isinstance(value, list) or len(value) != count:
        raise ArchiveError(f"{what} must hold {count} subtree hashes")
    out = [_unb64(h, what) for h in value]
    if any(len(h) != HASH_SIZE for h in out):
        raise ArchiveError(f"{what} holds a hash that is not {HASH_SIZE} bytes")
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
    if head.get("format") != ARCHIVE_FORMAT or set(head) != _HEADER_KEYS:
        raise ArchiveError(f"not an {ARCHIVE_FORMAT} archive header")
    try:
        note = open_checkpoint_note(_note(head.get("checkpoint"), "checkpoint"), trusted)
        cp = Checkpoint.from_text(note.text)
        hasher = get_hasher(str(head.get("hash_scheme")))
    except AuditLogError as exc:
        raise ArchiveError(f"checkpoint: {exc}") from exc
    if cp.origin != head.get("origin"):
        raise ArchiveError(f"the checkpoint is for {cp.origin!r}, not {head.get('origin')!r}")
    parts = cp.origin.rsplit("/", 2)
    named = f"{parts[1]}-{parts[2]}" if len(parts) == 3 else cp.origin
    if head.get("log") != named:
        raise ArchiveError(f"log {head.get('log')!r} is not the one {cp.origin!r} names")
    if head.get("pruned") is not None:
        try:
            bound = open_pruned(_note(head["pruned"], "pruned statement"), trusted)
        except NoteError as exc:
            raise ArchiveError(f"pruned statement: {exc}") from exc
        if bound.origin != cp.origin:
            raise ArchiveError("the pruned statement is for another log")
    return cp, hasher


def _subtrees(rng: CompactRange, lo: int, hi: int, value: object, what: str) -> None:
    nodes = range_nodes(lo, hi)
    for (height, _), node in zip(nodes, _hashes(value, what, len(nodes)), strict=True):
        _subtree(rng, node, height)


def _leaf(
    line: dict[str, Any],
    expected: int,
    cp: Checkpoint,
    rng: CompactRange,
    trusted: list[NoteVerifier],
) -> tuple[bytes, bool]:
    """The leaf of one entry line, and whether it is an erased entry's."""
    if set(line) not in ({"index", "envelope"}, {"index", "erasure"}):
        raise ArchiveError(f"entry {expected} is not an archived entry")
    if line.get("index") != expected:
        raise ArchiveError(f"entry {expected} is missing (found {line.get('index')!r})")
    if "envelope" in line:
        try:
            return leaf_hash(rng.hasher, _unb64(line["envelope"], f"entry {expected}")), False
        except InvalidEvent as exc:
            raise ArchiveError(f"entry {expected}: {exc}") from exc
    try:
        record = open_erasure(_note(line.get("erasure"), f"entry {expected}"), trusted)
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
    rng = CompactRange(hasher)
    _subtrees(rng, 0, first, head["left"], "left")
    erased = 0
    for expected in range(first, end):
        leaf, was_erased = _leaf(
            _load(next(it, b""), f"entry {expected}"), expected, cp, rng, trusted
        )
        erased += was_erased
        rng.append(leaf)
    _subtrees(rng, end, cp.size, head["right"], "right")
    if rng.root() != cp.root:
        raise ArchiveError(
            f"the archived entries and subtree hashes give root {rng.root().hex()}, the signed"
            f" checkpoint of size {cp.size} says {cp.root.hex()}"
        )
    trailer = _load(next(it, b""), "the last line")
    if trailer != {"entries": end - first} or next(it, None) is not None:
        raise ArchiveError("the archive does not end with its entry count: truncated or extended")
    return VerifiedArchive(cp.origin, first, end, cp.size, erased)
