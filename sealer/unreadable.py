"""Records aiokafka cannot parse: found one partition and one record at a time, and passed by.

aiokafka decodes every header name as UTF-8 while it unpacks a fetch, inside ``getmany``. A
client that writes other bytes as a header name (librdkafka and the Go clients take any bytes)
makes ``getmany`` raise ``UnicodeDecodeError`` whenever it reaches that record. Let through, the
exception would stop the sealer; restarted at the same offset, it would stop again, and so would
every sealer the partition then moves to.

So when ``getmany`` raises so, the fetch loop rewinds every partition it owns to its head: the
exception does not say which partition holds the record, and ``getmany`` may already have moved
other partitions' read positions past records it then dropped with it. It then calls
:func:`read_past_unreadable`, which reads each partition one record at a time: where a read
raises, the record at the partition's read position is the unreadable one. It becomes an
:class:`Unreadable` (its offset, no key, no value), dead-lettered as ``unreadable-record``, and
the partition is read on from the next offset.

aiokafka parses a whole record batch to reach any record in it, so the records after an
unreadable one *in the same producer batch* cannot be read either: each of them becomes an
unreadable dead letter in turn. The dead letters name their offsets, and the records stay on the
events topic, for a more tolerant client to recover, until its retention removes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from sealer.records import UNREADABLE, Record, Rejected

log = structlog.get_logger("sealer")

# What aiokafka raises, out of getmany, for a record it cannot parse.
UNPARSEABLE: Final = (UnicodeDecodeError,)
# How long each partition's one-record reads wait for the fetch a rewind started. A partition
# with nothing to read waits this long once, so a round over P idle partitions takes P times it.
CAREFUL_WAIT_MS: Final = 500


class Unreadable(NamedTuple):
    """A record aiokafka could not parse: only its offset is known."""

    offset: int
    error: str
    timestamp: int = -1
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def rejected(self) -> Rejected:
        return Rejected(self.offset, UNREADABLE, self, f"aiokafka cannot parse it: {self.error}")


async def read_past_unreadable(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    limit: int,
    wait_ms: int = CAREFUL_WAIT_MS,
) -> dict[TopicPartition, list[Record]]:
    """Up to ``limit`` records of each partition, read one at a time from its read position,
    with an :class:`Unreadable` for each record that could not be read, in offset order."""
    fetched: dict[TopicPartition, list[Record]] = {}
    for tp in partitions:
        records: list[Record] = []
        try:
            while len(records) < limit:
                try:
                    got = await consumer.getmany(tp, timeout_ms=wait_ms, max_records=1)
                except UNPARSEABLE as exc:
                    offset = await consumer.position(tp)
                    log.warning(
                        "unreadable_record", topic=tp.topic, partition=tp.partition, offset=offset
                    )
                    records.append(Unreadable(offset, f"{type(exc).__name__}: {exc}"))
                    consumer.seek(tp, offset + 1)
                    continue
                if not got:
                    break
                records += got.get(tp, ())
        except IllegalStateError:
            pass  # revoked meanwhile: its records, read or not, are no longer ours to seal
        if records:
            fetched[tp] = records
    return fetched
