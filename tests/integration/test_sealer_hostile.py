"""A corpus of hostile records on real Kafka, sealed by a real sealer process.

Each record of :data:`CORPUS` is written as raw bytes with aiokafka (its own headers and Kafka
timestamp; one even with a header *name* aiokafka cannot decode), spread over three partitions,
and a good record follows them on every partition. The sealer must stay alive, park every
hostile record on the dead-letter topic with the expected reason (or seal the two that are
odd but valid), and seal every good record after them. The counts are printed in the run's
summary (``hostile records: N tried, ...``, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiokafka.producer.message_accumulator as accumulator
import aiokafka.producer.producer as producer_module
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.kafka.clients import dlq_topic
from sealer import records as r
from tests.conftest import SEALER_TALLIES, Services, delete_topics
from tests.integration.sealer_harness import SealerFleet, check_exactly_once, wait_sealed

pytestmark = pytest.mark.integration

PARTITIONS = 3
NOW = datetime.now(UTC)
EVENTS_MAX_BYTES = 8 * 1024 * 1024  # the events topic takes records the DLQ (1 MiB) refuses
EVENTS_MAX = str(EVENTS_MAX_BYTES)


def _canonical(event: object, received_at: str) -> bytes:
    """Canonical JSON of an envelope, whatever it holds (Envelope would refuse some)."""
    obj = {"event": event, "received_at": received_at}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _at(moment: datetime) -> str:
    return format_received_at(moment)


GOOD = _canonical({"message": "fine"}, _at(NOW))
PLAIN = b'{"message":"plain event","actor":"kcat"}'


@dataclass(frozen=True)
class Hostile:
    name: str
    value: bytes | None
    reason: str | None  # None: odd but valid, to be sealed
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None
    undecodable_header_name: bool = False
    key: bytes | None = None


def _env(received_at: str, **event: str) -> bytes:
    return _canonical({"message": "m", **event}, received_at)


def _env_with(raw_field: bytes) -> bytes:
    """An envelope dated now whose event holds ``raw_field``, spelled as given."""
    return _env(_at(NOW)).replace(b'"message":"m"', b'"message":"m",' + raw_field)


H = Hostile
IDEMPOTENCY, CONFIG = "idempotency-key", "config-id"
CORPUS = [
    H("received_at in December 9999", _env("9999-12-31T23:59:59.999999Z"), r.OUT_OF_WINDOW),
    H("received_at in the year 1", _env("0001-01-01T00:00:00.000000Z"), r.OUT_OF_WINDOW),
    H("received_at two days ahead", _env(_at(NOW + timedelta(days=2))), r.OUT_OF_WINDOW),
    H("received_at eleven years ago", _env(_at(NOW - timedelta(days=4020))), r.OUT_OF_WINDOW),
    H("received_at on a leap second", _env("2016-12-31T23:59:60.000000Z"), r.INVALID_ENVELOPE),
    H("received_at with an offset", _env("2026-12-04T10:00:00.000000+01:00"), r.INVALID_ENVELOPE),
    H("received_at on February 30", _env("2026-02-30T10:00:00.000000Z"), r.INVALID_ENVELOPE),
    H("plain event at Kafka timestamp 0", PLAIN, r.OUT_OF_WINDOW, timestamp_ms=0),
    H("plain event at Kafka timestamp -1", PLAIN, r.OUT_OF_WINDOW, timestamp_ms=-1),
    H("plain event at Kafka timestamp -2**62", PLAIN, r.OUT_OF_WINDOW, timestamp_ms=-(2**62)),
    H("plain event before the year 1", PLAIN, r.OUT_OF_WINDOW, timestamp_ms=-62_135_596_800_001),
    H("arrays nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, r.NOT_JSON),
    H("objects nested 5,000 deep", b'{"message":' * 5000 + b'"m"' + b"}" * 5000, r.NOT_JSON),
    H("an envelope nested 5,000 deep", b'{"event":' * 5000 + b"{}" + b"}" * 5000, r.NOT_JSON),
    H("a 5,000-digit integer", b'{"message":"m","n":' + b"9" * 5000 + b"}", r.NOT_JSON),
    H("an envelope with a 5,000-digit integer", _env_with(b'"n":' + b"9" * 5000), r.NOT_JSON),
    H("a 30-digit integer", b'{"message":"m","n":123456789012345678901234567890}', r.INVALID_EVENT),
    H("NaN", b'{"message":NaN}', r.NOT_JSON),
    H("Infinity in an envelope", _env_with(b'"x":Infinity'), r.NOT_JSON),
    H("invalid UTF-8", b'{"message":"\xff\xfe"}', r.NOT_JSON),
    H("a lone surrogate", b'{"message":"\\ud800"}', r.NOT_JSON),
    H("a JSON string", b'"message"', r.NOT_OBJECT),
    H("a JSON array", b"[1,2,3]", r.NOT_OBJECT),
    H("JSON null", b"null", r.NOT_OBJECT),
    H("a JSON number", b"42", r.NOT_OBJECT),
    H("an empty value", b"", r.EMPTY_VALUE),
    H("a tombstone", None, r.EMPTY_VALUE, key=b"tenant"),  # aiokafka sends none without a key
    H("an idempotency-key not UTF-8", GOOD, r.INVALID_HEADER, [(IDEMPOTENCY, b"\xff\xfe")]),
    H("an idempotency-key with a NUL", GOOD, r.INVALID_HEADER, [(IDEMPOTENCY, b"a\x00b")]),
    H("an idempotency-key of 3,000 bytes", GOOD, r.INVALID_HEADER, [(IDEMPOTENCY, b"k" * 3000)]),
    H("an idempotency-key without a value", GOOD, r.INVALID_HEADER, [(IDEMPOTENCY, None)]),
    H("a config-id that is not UTF-8", GOOD, r.INVALID_HEADER, [(CONFIG, b"\xc3(")]),
    H("an unknown config-id", GOOD, r.UNKNOWN_CONFIG_ID, [(CONFIG, b"nope")]),
    H("a NUL in a plain event's message", b'{"message":"a\\u0000b"}', r.UNSTORABLE),
    H("a NUL in an envelope's actor", _env(_at(NOW), actor="a\x00b"), r.UNSTORABLE),
    H(
        "a non-canonical envelope",
        b'{"received_at": "%s", "event": {"message": "m"}}' % _at(NOW).encode(),
        r.NON_CANONICAL,
    ),
    H("an unknown field", b'{"message":"m","colour":"red"}', r.INVALID_EVENT),
    H("a message of 40,000 characters", b'{"message":"%s"}' % (b"x" * 40_000), r.INVALID_EVENT),
    H("2 MiB of random bytes", random.Random(21).randbytes(2 * 1024 * 1024), r.TOO_LARGE),
    H("a header name that is not UTF-8", PLAIN, r.UNREADABLE, undecodable_header_name=True),
    # Odd but valid: sealed, their timestamp (no timestamptz holds it) not searchable.
    H(
        "an event timestamp past 9999 in UTC",
        _env(_at(NOW), timestamp="9999-12-31T23:59-01:00"),
        None,
    ),
    H(
        "an event timestamp before 1 in UTC",
        _env(_at(NOW), timestamp="0001-01-01T00:00+01:00"),
        None,
    ),
]


class _UndecodableName(str):
    """A header name whose UTF-8 form is not UTF-8, as librdkafka or a Go client can write."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"trace\xff"


@contextmanager
def _python_record_builder() -> Iterator[None]:
    """aiokafka's pure-Python record builder, which takes a header name's bytes as given."""
    saved = accumulator.DefaultRecordBatchBuilder, producer_module.DefaultRecordBatchBuilder
    accumulator.DefaultRecordBatchBuilder = _DefaultRecordBatchBuilderPy
    producer_module.DefaultRecordBatchBuilder = _DefaultRecordBatchBuilderPy
    try:
        yield
    finally:
        accumulator.DefaultRecordBatchBuilder, producer_module.DefaultRecordBatchBuilder = saved


@pytest.fixture
async def topic(services: Services) -> AsyncIterator[str]:
    name = f"{services.topic}.hostile{time.monotonic_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, PARTITIONS, 1, topic_configs={"max.message.bytes": EVENTS_MAX}),
                NewTopic(dlq_topic(name), 1, 1),
            ]
        )
    finally:
        await admin.close()
    yield name
    await delete_topics(services.kafka_bootstrap, [name, dlq_topic(name)])


async def _produce(services: Services, topic: str) -> tuple[dict[int, tuple[int, int]], list[str]]:
    """The corpus, then a good record on every partition: ({corpus index: (partition, offset)},
    the good records' event hashes)."""
    placed: dict[int, tuple[int, int]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=services.kafka_bootstrap, max_request_size=EVENTS_MAX_BYTES
    )
    await producer.start()
    try:
        for i, item in enumerate(CORPUS):
            headers = list(item.headers)
            if item.undecodable_header_name:
                headers.append((_UndecodableName("trace"), b"t"))
                context = _python_record_builder()
            else:
                context = contextlib.nullcontext()
            with context:
                sent = await producer.send_and_wait(
                    topic,
                    item.value,
                    key=item.key,
                    partition=i % PARTITIONS,
                    headers=headers,
                    timestamp_ms=item.timestamp_ms,
                )
            placed[i] = (sent.partition, sent.offset)
        good = []
        for p in range(PARTITIONS):
            envelope = Envelope({"message": f"good after the corpus, partition {p}"}, _at(NOW))
            await producer.send_and_wait(topic, envelope.canonical, partition=p)
            good.append(envelope.event_hash.hex())
    finally:
        await producer.stop()
    return placed, good


async def _dead_letters(services: Services, topic: str, n: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=EVENTS_MAX_BYTES,
    )
    await consumer.start()
    dead: list[object] = []
    try:
        deadline = time.monotonic() + 90
        while len(dead) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            dead += [rec for recs in batch.values() for rec in recs]
        # Anything more would be a record dead-lettered that should not have been.
        dead += [rec for recs in (await consumer.getmany(timeout_ms=2000)).values() for rec in recs]
    finally:
        await consumer.stop()
    return dead


async def test_hostile_records_are_dead_lettered_and_the_sealer_lives_on(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    placed, good = await _produce(services, topic)
    sealer = fleet.start()
    expected_dead = {placed[i]: item for i, item in enumerate(CORPUS) if item.reason is not None}
    sealable = [i for i, item in enumerate(CORPUS) if item.reason is None]
    sealable_hashes = [
        Envelope.from_bytes(CORPUS[i].value or b"").event_hash.hex() for i in sealable
    ]
    await wait_sealed(services, topic, len(good) + len(sealable), within=120)
    dead = await _dead_letters(services, topic, len(expected_dead))
    await asyncio.sleep(1.0)

    found = {}
    for rec in dead:
        headers = dict(rec.headers)  # type: ignore[attr-defined]
        where = (int(headers["dlq-partition"]), int(headers["dlq-offset"]))
        found[where] = (headers["dlq-reason"].decode(), rec)
    right = {w for w, item in expected_dead.items() if found.get(w, ("",))[0] == item.reason}
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch(
            "SELECT encode(event_hash, 'hex') AS hash, event_time FROM events WHERE log_id LIKE $1",
            f"{topic}-%",
        )
        heads = {
            row["log_id"]: row["next_offset"]
            for row in await conn.fetch(
                "SELECT log_id, next_offset FROM logs WHERE log_id LIKE $1", f"{topic}-%"
            )
        }
    finally:
        await conn.close()
    sealed = {row["hash"]: row["event_time"] for row in rows}
    failures = fleet.events("record_failed")
    crashes = sum(proc.poll() is not None for proc in fleet.procs) + len(failures)
    SEALER_TALLIES["hostile records"] = (
        len(CORPUS),
        len(right),
        sum(h in sealed for h in sealable_hashes),
        crashes,
    )

    assert sealer.poll() is None, f"the sealer died:\n{fleet.logs()[-3000:]}"
    assert failures == [], failures  # nothing reached the last resort (sealer-error)
    assert fleet.events("seal_failed") == [], "a seal failed: a record the database refused?"
    wrong = {
        item.name: found.get(w, ("missing",))[0]
        for w, item in expected_dead.items()
        if w not in right
    }
    assert wrong == {}, wrong
    assert set(found) == set(expected_dead), "dead letters of records that should be sealed"
    # Every partition moved past its last record, and its good record and the odd-but-valid
    # ones are sealed under consistent checkpoints.
    per_partition = [sum(1 for p, _ in placed.values() if p == q) + 1 for q in range(PARTITIONS)]
    assert heads == {f"{topic}-{p}": per_partition[p] for p in range(PARTITIONS)}
    assert set(good) <= set(sealed)
    assert all(sealed[h] is None for h in sealable_hashes)  # a timestamp no timestamptz holds
    await check_exactly_once(services, topic, good + sealable_hashes, _vkey(fleet))
    # The 2 MiB record went without its value (and, keyless, with an empty one); the one
    # aiokafka could not read has no value to send.
    big = next(w for w, item in expected_dead.items() if item.reason == r.TOO_LARGE)
    big_headers = dict(found[big][1].headers)  # type: ignore[attr-defined]
    assert found[big][1].value == b""  # type: ignore[attr-defined]
    assert big_headers["dlq-value-bytes"] == str(2 * 1024 * 1024).encode()
    unreadable = next(w for w, item in expected_dead.items() if item.reason == r.UNREADABLE)
    assert found[unreadable][1].value == b""  # type: ignore[attr-defined]
    # The header of a record that could be read is kept on its dead letter.
    keyed = next(
        w for w, item in expected_dead.items() if item.name.startswith("an idempotency-key not")
    )
    assert dict(found[keyed][1].headers)["idempotency-key"] == b"\xff\xfe"  # type: ignore[attr-defined]


def _vkey(fleet: SealerFleet) -> str:
    return fleet.key_file.with_suffix(".vkey").read_text().strip()
