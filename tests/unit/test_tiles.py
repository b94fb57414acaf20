"""tlog-tiles paths and bundles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditlog.core.errors import MalformedProof, TileError
from auditlog.core.tiles import (
    MAX_TILE_INDEX,
    TileID,
    decode_bundle,
    encode_bundle,
    entries_path,
    parse_tile_path,
    split_hashes,
    tile_path,
    tiles_for_size,
)


def test_paths_follow_the_spec_examples() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(0, 1234, 17) == "tile/0/x001/234.p/17"
    assert tile_path(3, 0) == "tile/3/000"
    assert tile_path(63, 999) == "tile/63/999"
    assert tile_path(1, 1000) == "tile/1/x001/000"
    assert entries_path(1234) == "tile/entries/x001/234"
    assert entries_path(5, 255) == "tile/entries/005.p/255"


def test_size_70000_needs_the_tiles_the_spec_lists() -> None:
    assert tiles_for_size(70_000) == [(TileID(0, 273), 112), (TileID(1, 1), 17), (TileID(2, 0), 1)]
    assert tiles_for_size(256) == [(TileID(1, 0), 1)]
    assert tiles_for_size(0) == []


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.integers(0, 63)),
    st.integers(0, MAX_TILE_INDEX),
    st.integers(1, 256),
)
def test_paths_round_trip(level: int | None, index: int, width: int) -> None:
    path = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert parse_tile_path(path) == (level, index, width)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tiles/0/000",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/0/0",
        "tile/0/0000",
        "tile/0/x000/005",
        "tile/0/001/234",
        "tile/0/x001/x234",
        "tile/0/x01/234",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/017",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000/",
        "tile/0/x001/234.p/17/",
        "tile/data/000",
        "tile/entries/000.p/1x",
        "tile/0/\u0660\u0660\u0660",  # Arabic-Indic digits are digits to str.isdigit
        "tile/8/0/x001/234",  # Go's path, with the tile height
    ],
)
def test_non_canonical_paths_are_rejected(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


def test_tile_error_is_a_malformed_proof() -> None:
    assert issubclass(TileError, MalformedProof)


def test_bundles_round_trip() -> None:
    entries = [b"", b"a", b"x" * 65535, bytes(range(256))]
    data = encode_bundle(entries)
    assert data[:2] == b"\x00\x00"
    assert decode_bundle(data) == entries


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x05abc", b"\x00\x01a\x00"])
def test_truncated_bundles_are_rejected(data: bytes) -> None:
    with pytest.raises(TileError):
        decode_bundle(data)


def test_bundles_hold_at_most_256_entries() -> None:
    with pytest.raises(TileError):
        encode_bundle([b"x"] * 257)
    with pytest.raises(TileError):
        decode_bundle(b"\x00\x00" * 257)


def test_split_hashes() -> None:
    assert split_hashes(b"a" * 32 + b"b" * 32) == [b"a" * 32, b"b" * 32]
    with pytest.raises(TileError):
        split_hashes(b"a" * 33)
    with pytest.raises(TileError):
        split_hashes(b"a" * 32 * 257)


def test_a_tile_index_beyond_any_log_is_a_tile_error() -> None:
    assert parse_tile_path(tile_path(0, MAX_TILE_INDEX))[1] == MAX_TILE_INDEX
    with pytest.raises(TileError, match="beyond any log"):
        parse_tile_path(tile_path(0, MAX_TILE_INDEX + 1))
    with pytest.raises(TileError, match="beyond any log"):
        parse_tile_path("tile/0/" + "x999/" * 400 + "999")
