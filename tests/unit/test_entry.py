"""Hashers and the log-entry rule, including the 64 KiB boundary."""

from __future__ import annotations

import hashlib

import pytest
from blake3 import blake3

from auditlog.core.entry import (
    DIGEST_ENTRY_PREFIX,
    DIGEST_ENTRY_SIZE,
    MAX_ENTRY_SIZE,
    digest_of_entry,
    entry_and_leaf,
    entry_leaf_hash,
    is_digest_entry,
    leaf_hash,
    log_entry,
)
from auditlog.core.envelope import Envelope
from auditlog.core.errors import InvalidEvent, TileError, UnknownHashScheme
from auditlog.core.hashing import HASH_SCHEMES, get_hasher
from auditlog.core.tiles import decode_bundle, encode_bundle

RECEIVED_AT = "2024-01-02T03:04:05.000006Z"


def envelope_of_size(size: int) -> bytes:
    """A canonical envelope of exactly ``size`` bytes."""
    base = Envelope({"message": ""}, RECEIVED_AT).canonical
    env = Envelope({"message": "x" * (size - len(base))}, RECEIVED_AT).canonical
    assert len(env) == size
    return env


def test_hash_functions() -> None:
    a, b = b"a" * 32, b"b" * 32
    sha = get_hasher("rfc6962-sha256")
    assert sha.empty_root() == hashlib.sha256(b"").digest()
    assert sha.hash_leaf(b"x") == hashlib.sha256(b"\x00x").digest()
    assert sha.hash_children(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    b3 = get_hasher("rfc6962-blake3")
    assert b3.empty_root() == blake3(b"").digest()
    assert b3.hash_leaf(b"x") == blake3(b"\x00x").digest()
    assert b3.hash_children(a, b) == blake3(b"\x01" + a + b).digest()
    pangea = get_hasher("pangea-sha256")
    assert pangea.hash_leaf(b"x") == hashlib.sha256(b"x").digest()
    assert pangea.hash_children(a, b) == hashlib.sha256(a + b).digest()
    assert [get_hasher(n).name for n in HASH_SCHEMES] == list(HASH_SCHEMES)


def test_rfc6962_empty_leaf_vector() -> None:
    # RFC 6962 test vector: the leaf hash of the empty entry.
    assert (
        get_hasher("rfc6962-sha256").hash_leaf(b"").hex()
        == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_unknown_scheme() -> None:
    with pytest.raises(UnknownHashScheme):
        get_hasher("sha1")


@pytest.mark.parametrize("size", [MAX_ENTRY_SIZE - 1, MAX_ENTRY_SIZE])
def test_envelopes_up_to_the_limit_are_their_own_entry(size: int) -> None:
    env = envelope_of_size(size)
    assert log_entry(env) == env
    assert decode_bundle(encode_bundle([log_entry(env)])) == [env]


@pytest.mark.parametrize("size", [MAX_ENTRY_SIZE + 1, MAX_ENTRY_SIZE + 2, 4 * 32766 + 200])
def test_larger_envelopes_become_digest_entries(size: int) -> None:
    env = envelope_of_size(size)
    entry = log_entry(env)
    assert entry == DIGEST_ENTRY_PREFIX + hashlib.sha256(env).hexdigest().encode()
    assert len(entry) == DIGEST_ENTRY_SIZE
    assert is_digest_entry(entry)
    assert digest_of_entry(entry) == hashlib.sha256(env).digest()
    assert decode_bundle(encode_bundle([entry])) == [entry]


def test_bundles_refuse_oversized_entries() -> None:
    with pytest.raises(TileError):
        encode_bundle([b"{" + b"x" * MAX_ENTRY_SIZE])


@pytest.mark.parametrize("scheme", HASH_SCHEMES)
@pytest.mark.parametrize("size", [200, MAX_ENTRY_SIZE, MAX_ENTRY_SIZE + 1])
def test_leaf_hash_agrees_with_the_entry_in_the_bundle(scheme: str, size: int) -> None:
    hasher = get_hasher(scheme)
    env = envelope_of_size(size)
    assert leaf_hash(hasher, env) == entry_leaf_hash(hasher, log_entry(env))
    assert entry_and_leaf(hasher, env) == (log_entry(env), leaf_hash(hasher, env))


@pytest.mark.parametrize("size", [200, MAX_ENTRY_SIZE + 1])
def test_pangea_leaf_is_always_the_event_hash(size: int) -> None:
    env = envelope_of_size(size)
    assert leaf_hash(get_hasher("pangea-sha256"), env) == hashlib.sha256(env).digest()


def test_rfc6962_leaf_of_a_large_envelope_commits_to_the_digest_entry() -> None:
    env = envelope_of_size(MAX_ENTRY_SIZE + 1)
    sha = get_hasher("rfc6962-sha256")
    assert leaf_hash(sha, env) == hashlib.sha256(b"\x00" + log_entry(env)).digest()


@pytest.mark.parametrize(
    "entry",
    [
        DIGEST_ENTRY_PREFIX + b"A" * 64,  # uppercase hex
        DIGEST_ENTRY_PREFIX + b"a" * 63,
        DIGEST_ENTRY_PREFIX + b"a" * 65,
        b"auditlog-digest/v2 sha256 " + b"a" * 64,
        b'{"event":{}}',
    ],
)
def test_only_exact_digest_entries_are_digest_entries(entry: bytes) -> None:
    assert not is_digest_entry(entry)
    with pytest.raises(InvalidEvent):
        digest_of_entry(entry)


def test_non_envelopes_have_no_log_entry() -> None:
    for hasher in map(get_hasher, HASH_SCHEMES):
        with pytest.raises(InvalidEvent):
            leaf_hash(hasher, DIGEST_ENTRY_PREFIX + b"0" * 64)
