"""A value PostgreSQL refuses, though no rule of decode() foresaw it: the batch is sealed again
one record at a time, the refused record is dead-lettered, and the partition moves on
(sealer/refused.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from sealer import worker
from sealer.batcher import Batch
from sealer.records import NOT_JSON, UNSTORABLE, Rejected, Sealable
from sealer.settings import Settings
from sealer.store import LogHead, SealResult
from sealer.timestamps import micros
from sealer.worker import Judged, SealBatch, Sealer

TP = TopicPartition("audit.refused", 0)
POISON = 5  # the offset whose value "PostgreSQL" refuses


def _sealable(offset: int) -> Sealable:
    received = datetime(2026, 12, 4, tzinfo=UTC)
    envelope = Envelope({"message": f"event {offset}"}, format_received_at(received))
    return Sealable(offset, envelope, micros(received), f"key-{offset}")


class _Pool:
    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()


class _Consumer:
    def assignment(self) -> set[TopicPartition]:
        return set()


class _DeadLetters:
    def __init__(self) -> None:
        self.sent: list[Rejected] = []

    async def send(self, tp: TopicPartition, log_id: str, rejected: Sequence[Rejected]) -> None:
        self.sent += rejected


async def test_a_refused_value_is_dead_lettered_and_the_rest_sealed_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[list[int], int]] = []

    async def seal(conn: object, head: LogHead, *args: Any, **kwargs: Any) -> SealResult:
        items: Sequence[Sealable] = args[2]
        next_offset: int = args[3]
        offsets = [item.offset for item in items]
        calls.append((offsets, next_offset))
        assert head.next_offset <= next_offset  # each seal extends the head before it
        if POISON in offsets:
            raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding")
        moved = replace(head, size=head.size + len(items), next_offset=next_offset)
        return SealResult(moved, "note" if items else None)

    async def ensure(*args: object) -> None:
        return None

    monkeypatch.setattr(worker, "seal", seal)
    hasher = get_hasher("rfc6962-sha256")
    sealer = Sealer(
        Settings(),
        _Consumer(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        _Pool(),  # type: ignore[arg-type]
        hasher,
        NoteSigner.generate("refused.test"),
    )
    dead = _DeadLetters()
    sealer.dead_letters = dead  # type: ignore[assignment]
    sealer.partitions.ensure = ensure  # type: ignore[method-assign]
    sealer.heads[TP] = LogHead("audit.refused-0", "o", hasher.name, 3, hasher.empty_root(), 3)
    sealer._reset(TP)
    not_json = Rejected(4, NOT_JSON, _sealable(4), "not JSON")  # type: ignore[arg-type]
    last = Rejected(8, NOT_JSON, _sealable(8), "not JSON")  # type: ignore[arg-type]
    records: list[Judged] = [_sealable(3), not_json, _sealable(5), _sealable(6), _sealable(7), last]
    batch: SealBatch = Batch(TP, sealer.generation[TP], records)

    await sealer.seal_batch(batch)

    assert calls == [
        ([3, 5, 6, 7], 9),  # the batch: refused
        ([3], 4),
        ([5], 6),  # refused alone: dead-lettered, then passed by
        ([], 6),
        ([6], 7),
        ([7], 8),
        ([], 9),  # past the last dead letter of the batch
    ]
    assert [(r.offset, r.reason) for r in dead.sent] == [
        (4, NOT_JSON),
        (8, NOT_JSON),
        (5, UNSTORABLE),
    ]
    refused = dead.sent[-1]
    assert "CharacterNotInRepertoireError" in refused.detail
    assert refused.record.value == _sealable(5).envelope.canonical
    assert refused.record.headers == (("idempotency-key", b"key-5"),)
    head = sealer.heads[TP]
    assert (head.size, head.next_offset) == (6, 9)
    assert sealer.sealed[TP] == 9
