"""C2SP tlog-tiles: tile coordinates, resource paths and entry bundles.

A tile at level ``L`` and index ``N`` holds up to 256 consecutive hashes of tree height ``8*L``:
at level 0 the leaf hashes, above that the roots of full tiles one level down. A tree of size
``s`` has at each level a *partial* (rightmost, not yet full) tile of width
``(s >> 8*L) % 256`` when that is non-zero. Partial tiles are never hashed into the level above.

Storage keys tiles by :class:`TileID` ``(level, index)`` and keeps the widest version only: a tile
grows in place until it is full, then never changes. A stored tile's width is ``len(data) // 32``
and readers use prefixes, since every prefix of a grown tile is the tile as it was at that width.

Paths follow the spec exactly (``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]``, ``N`` in
zero-padded 3-digit groups with ``x`` on all but the last); note that Go's ``sumdb/tlog`` paths
additionally carry the tile height (``tile/8/0/...``) and call bundles ``data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from auditlog.core.entry import MAX_ENTRY_SIZE, leaf_hash, log_entry
from auditlog.core.errors import TileError
from auditlog.core.hashing import HASH_SIZE

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileID",
    "decode_bundle",
    "encode_bundle",
    "entries_path",
    "leaf_hash",
    "log_entry",
    "parse_tile_path",
    "split_hashes",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
MAX_LEVEL: Final = 63
# A log's size is a PostgreSQL bigint, so no tile index reaches past its level-0 tiles'.
MAX_TILE_INDEX: Final = (2**63 - 1) >> TILE_HEIGHT


@dataclass(frozen=True, slots=True, order=True)
class TileID:
    """A tile's storage key: its level and its index within the level (width is in the data)."""

    level: int
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL or self.index < 0:
            raise TileError(f"invalid tile coordinates level={self.level} index={self.index}")


def tiles_for_size(size: int) -> list[tuple[TileID, int]]:
    """The partial tiles of a tree of ``size`` leaves with their widths, bottom level first.

    These are the right edge of the tree: the only tiles that change as it grows.
    """
    out: list[tuple[TileID, int]] = []
    level = 0
    n = size
    while n > 0:
        width = n % TILE_WIDTH
        if width:
            out.append((TileID(level, n // TILE_WIDTH), width))
        n //= TILE_WIDTH
        level += 1
    return out


def _index_path(index: int) -> str:
    if index < 0:
        raise TileError(f"negative tile index {index}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index > 0:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _width_suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile width {width} outside 1..{TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` for a hash tile; a width of 256 is a full tile (no suffix)."""
    if not 0 <= level <= MAX_LEVEL:
        raise TileError(f"tile level {level} outside 0..{MAX_LEVEL}")
    return f"tile/{level}/{_index_path(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]`` for an entry bundle."""
    return f"tile/entries/{_index_path(index)}{_width_suffix(width)}"


def _decimal(text: str, what: str, path: str) -> int:
    # No signs, spaces, underscores or leading zeros: int() would accept all of those.
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise TileError(f"bad {what} {text!r} in tile path {path!r}")
    return int(text)


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """Parse a tile or bundle path into ``(level, index, width)``; level None for bundles.

    Only the canonical spelling is accepted (what :func:`tile_path` / :func:`entries_path`
    produce), so each resource has exactly one name. Raises TileError otherwise.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"not a tile path: {path!r}")
    level: int | None
    if parts[1] == "entries":
        level = None
    else:
        level = _decimal(parts[1], "level", path)
        if level > MAX_LEVEL:
            raise TileError(f"tile level {level} outside 0..{MAX_LEVEL} in {path!r}")
    rest = parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _decimal(rest[-1], "width", path)
        if not 1 <= width < TILE_WIDTH:
            raise TileError(f"partial tile width {width} outside 1..255 in {path!r}")
        rest = [*rest[:-2], rest[-2][: -len(".p")]]
    index = 0
    for i, group in enumerate(rest):
        digits = group if i == len(rest) - 1 else group.removeprefix("x")
        if (i < len(rest) - 1 and not group.startswith("x")) or len(digits) != 3:
            raise TileError(f"bad index element {group!r} in tile path {path!r}")
        if not digits.isascii() or not digits.isdigit():
            raise TileError(f"bad index element {group!r} in tile path {path!r}")
        index = index * 1000 + int(digits)
        if index > MAX_TILE_INDEX:
            raise TileError(f"tile index beyond any log in {path!r}")
    expected = entries_path(index, width) if level is None else tile_path(level, index, width)
    if expected != path:
        # Catches redundant leading groups such as x000/005.
        raise TileError(f"non-canonical tile path {path!r}, expected {expected!r}")
    return level, index, width


def split_hashes(data: bytes) -> list[bytes]:
    """A tile's content as a list of 32-byte hashes; TileError if it is not a whole number."""
    if len(data) % HASH_SIZE or len(data) > TILE_WIDTH * HASH_SIZE:
        raise TileError(f"tile data of {len(data)} bytes is not 1..256 hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry prefixed by its length as a big-endian uint16."""
    if len(entries) > TILE_WIDTH:
        raise TileError(f"a bundle holds at most {TILE_WIDTH} entries, got {len(entries)}")
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(f"entry of {len(entry)} bytes exceeds {MAX_ENTRY_SIZE}")
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle back into entries; TileError on truncation or too many entries."""
    entries: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            raise TileError("entry bundle truncated inside a length prefix")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > end:
            raise TileError(f"entry bundle truncated: entry of {size} bytes at offset {pos}")
        entries.append(bytes(data[pos : pos + size]))
        pos += size
    if len(entries) > TILE_WIDTH:
        raise TileError(f"entry bundle holds {len(entries)} entries, more than {TILE_WIDTH}")
    return entries
