"""What a sealable record becomes: its events row, log entry and leaf hash (sealer/rows.py).

The seal (sealer/store.py) writes each row as ``(log_id, index, *prepared.tail)`` in
``EVENT_COLUMNS`` order; these tests check the preparation that row is made of.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from auditlog.core.columns import searchable_values
from auditlog.core.entry import MAX_ENTRY_SIZE, leaf_hash, log_entry
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import HASH_SCHEMES, get_hasher
from auditlog.pg import search_blocks
from sealer.records import Sealable
from sealer.rows import EVENT_COLUMNS, block_rows, prepare, prepared
from sealer.timestamps import micros

RECEIVED = datetime(2026, 11, 26, 15, 0, 1, 250000, tzinfo=UTC)


def _item(message: str = "hello", **extra: object) -> Sealable:
    event = {
        "tenant_id": "acme",
        "actor": "alice",
        "action": "login",
        "target": "console",
        "status": "ok",
        "source": "10.0.0.1",
        "message": message,
        "new": "n",
        "old": "o",
        "timestamp": "2026-11-26T14:59:59.5+01:00",
        **extra,
    }
    env = Envelope(event, "2026-11-26T15:00:01.250000Z")
    return Sealable(41, env, micros(RECEIVED), "key-1", "cfg")


def test_the_row_holds_every_column_in_order() -> None:
    item = _item()
    row = ("audit.events-3", 9, *prepare(item, get_hasher("rfc6962-sha256")).tail)  # as seal()
    canonical = item.envelope.canonical
    assert dict(zip(EVENT_COLUMNS, row, strict=True)) == {
        "log_id": "audit.events-3",
        "idx": 9,
        "event_hash": hashlib.sha256(canonical).digest(),
        "envelope": canonical,
        "received_at": micros(RECEIVED),
        "kafka_offset": 41,
        "tenant_id": "acme",
        "actor": "alice",
        "action": "login",
        "target": "console",
        "status": "ok",
        "source": "10.0.0.1",
        "message": "hello",
        "new_value": "n",
        "old_value": "o",
        "event_time": datetime(2026, 11, 26, 13, 59, 59, 500000, tzinfo=UTC),
        "idempotency_key": "key-1",
        "config_id": "cfg",
    }


@pytest.mark.parametrize("scheme", HASH_SCHEMES)
@pytest.mark.parametrize("size", ["small", "digest entry"])
def test_entry_and_leaf_are_the_core_s(scheme: str, size: str) -> None:
    hasher = get_hasher(scheme)
    item = _item("x" * (MAX_ENTRY_SIZE + 1) if size == "digest entry" else "small")
    canonical = item.envelope.canonical
    ready = prepare(item, hasher)
    assert ready.scheme == scheme
    assert ready.entry == log_entry(canonical)
    assert ready.leaf == leaf_hash(hasher, canonical)


def test_a_preparation_for_another_scheme_is_made_again() -> None:
    item = _item()
    sha, blake = get_hasher("rfc6962-sha256"), get_hasher("rfc6962-blake3")
    item.prepared = prepare(item, sha)
    assert prepared(item, sha) is item.prepared
    again = prepared(item, blake)
    assert again.leaf == leaf_hash(blake, item.envelope.canonical) != item.prepared.leaf


def test_an_unprepared_item_is_prepared_on_demand() -> None:
    item = _item()
    sha = get_hasher("rfc6962-sha256")
    assert item.prepared is None
    assert prepared(item, sha) == prepare(item, sha)


def test_a_seals_blocks_are_what_the_backfill_makes_of_the_same_rows() -> None:
    # The seal finds keys from its preparations, the backfill and erasure from rows read back:
    # the same blocks, and the row's other strings (idempotency key, config id) are no text.
    sha = get_hasher("rfc6962-sha256")
    items = [_item(f"message {i} from 10.1.2.{i}", actor=f"user{i % 3}@example.com")
             for i in range(150)]  # fmt: skip
    first = 60  # straddles two block boundaries of the log
    sealed = block_rows("audit.t", first, [prepare(item, sha) for item in items])
    rows = [(first + i, RECEIVED, *searchable_values(item.envelope.event)[:-1])
            for i, item in enumerate(items)]  # fmt: skip
    backfilled = search_blocks.block_rows("audit.t", rows)
    assert [(r[1], r[2]) for r in sealed] == [(60, 63), (64, 127), (128, 191), (192, 209)]
    assert [(r[1], r[2], sorted(r[5])) for r in sealed] == [
        (r[1], r[2], sorted(r[5])) for r in backfilled
    ]
