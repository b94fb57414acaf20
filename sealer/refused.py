"""Values PostgreSQL refuses: the last guard of "no record stops the sealer", at the seal.

``decode`` (sealer/records.py) rejects every value we know PostgreSQL to refuse: U+0000 in text,
btree entries past ~2,700 bytes, times no ``timestamptz`` holds. Should PostgreSQL still refuse
a value of a batch (SQLSTATE class 22, data exception, or 54, program limit exceeded), every seal
of that batch would fail and be retried forever, and the partition would never move on. So the
batch is sealed again one record at a time (:func:`seal_one_by_one`): a record PostgreSQL refuses
on its own is dead-lettered as ``unstorable-value`` and passed by, the others are sealed in
order, each seal extending the head the one before returned, as a batch's seals do.

Its dead letter is made of what the sealer kept of the record: the envelope it was to seal (for
a plain event, the envelope the sealer wrapped it in), with its ``idempotency-key``,
``principal`` (unless the default, ``kafka``) and ``config-id`` headers; the record itself is at
``dlq-offset`` on the events topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NamedTuple

import asyncpg
import structlog
from aiokafka import TopicPartition

from auditlog.kafka.clients import KAFKA_PRINCIPAL
from sealer.deadletters import DeadLetters
from sealer.records import CONFIG_ID, IDEMPOTENCY_KEY, PRINCIPAL, UNSTORABLE, Rejected, Sealable
from sealer.store import Conflict, LogHead, SealResult

log = structlog.get_logger("sealer")

# PostgreSQL refusing a value: data exceptions (class 22) and program limits (54).
REFUSED: Final = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)

SealOne = Callable[[LogHead, Sequence[Sealable], int], Awaitable[SealResult]]


class Kept(NamedTuple):
    """A record as the sealer kept it: its envelope and the headers it read."""

    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int = -1
    key: bytes | None = None

    @classmethod
    def of(cls, item: Sealable) -> Kept:
        headers = [
            (name, value.encode())
            for name, value in (
                (IDEMPOTENCY_KEY, item.idempotency_key),
                # A replayed copy keeps its key in its producer's namespace (kafka: no header).
                (PRINCIPAL, None if item.principal == KAFKA_PRINCIPAL else item.principal),
                (CONFIG_ID, item.config_id),
            )
            if value is not None
        ]
        return cls(item.offset, item.envelope.canonical, tuple(headers))


async def seal_one_by_one(
    seal: SealOne,
    dead_letters: DeadLetters,
    tp: TopicPartition,
    head: LogHead,
    items: Sequence[Sealable],
    next_offset: int,
) -> tuple[SealResult, int]:
    """Seal ``items`` one at a time from ``head`` up to ``next_offset``, dead-lettering each that
    PostgreSQL refuses; the last seal's result (with every seal's duplicates and the last
    checkpoint) and how many were refused."""
    duplicates = refused = 0
    conflicts: tuple[Conflict, ...] = ()
    checkpoint = None
    for item in items:
        try:
            result = await seal(head, [item], item.offset + 1)
        except REFUSED as exc:
            log.warning("value_refused", log=head.log_id, offset=item.offset, error=str(exc))
            detail = f"PostgreSQL refused it: {type(exc).__name__}: {exc}"
            await dead_letters.send(
                tp, head.log_id, [Rejected(item.offset, UNSTORABLE, Kept.of(item), detail)]
            )
            refused += 1
            result = await seal(head, [], item.offset + 1)
        head = result.head
        duplicates += result.duplicates
        conflicts += result.conflicts
        checkpoint = result.checkpoint or checkpoint
    if head.next_offset != next_offset:  # past the batch's last dead letters
        head = (await seal(head, [], next_offset)).head
    return SealResult(head, checkpoint, duplicates, conflicts), refused
