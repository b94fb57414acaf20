"""The sealer's own defences around the record path: its signing key's permissions, dead letters
the DLQ refuses as too large, and records aiokafka cannot parse at all."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.runtime.settings import SettingsError
from sealer.deadletters import DeadLetters
from sealer.main import load_signer
from sealer.records import MAX_RECORD_BYTES, TOO_LARGE, UNREADABLE, Rejected, Sealable
from sealer.settings import Settings
from sealer.store import LogHead
from sealer.unreadable import Unreadable, read_past_unreadable
from sealer.worker import Sealer

TP = TopicPartition("audit.hostile", 0)


# -- the signing key -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666])
def test_a_signing_key_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "log.skey"
    key.write_text(NoteSigner.generate("perm.test").skey() + "\n")
    key.chmod(mode)
    with pytest.raises(SettingsError) as refused:
        load_signer(key)
    message = str(refused.value)
    assert str(key) in message
    assert f"chmod 600 {key}" in message
    assert f"{mode:04o}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_signing_key_is_loaded(tmp_path: Path, mode: int) -> None:
    signer = NoteSigner.generate("perm.test")
    key = tmp_path / "log.skey"
    key.write_text(signer.skey() + "\n")
    key.chmod(mode)
    assert load_signer(key).vkey() == signer.vkey()


# -- dead letters the DLQ refuses ----------------------------------------------------------
class _Record(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class _Producer:
    """Refuses values over ``limit`` bytes as Kafka does, the small ones of a batch included:
    the first send of each offset is refused whenever any value of the round is too large."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.delivered: list[tuple[bytes | None, dict[str, bytes | None]]] = []
        self.refused_batch = False
        self.attempted: list[int] = []  # sizes of the values sent without waiting

    async def send(self, topic: str, value: bytes | None, *, key: Any, headers: Any) -> Any:
        assert not (value is None and key is None), "Need at least one: key or value"  # aiokafka's
        self.attempted.append(len(value or b""))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value is not None and len(value) > self.limit:
            self.refused_batch = True
            future.set_exception(MessageSizeTooLargeError())
        elif self.refused_batch:
            future.set_exception(MessageSizeTooLargeError())  # refused with its batch
        else:
            self.delivered.append((value, dict(headers)))
            future.set_result(None)
        return future

    async def send_and_wait(
        self, topic: str, value: bytes | None, *, key: Any, headers: Any
    ) -> None:
        assert not (value is None and key is None), "Need at least one: key or value"
        if value is not None and len(value) > self.limit:
            raise MessageSizeTooLargeError
        self.delivered.append((value, dict(headers)))


async def test_a_dead_letter_too_large_for_the_dlq_goes_without_its_value() -> None:
    producer = _Producer(limit=100)
    big = _Record(5, 0, None, b"x" * 1000, (("trace", b"t"),))
    small = _Record(6, 0, None, b"[1]", ())
    rejected = [
        Rejected(5, TOO_LARGE, big, "the value is 1000 bytes"),
        Rejected(6, "not-object", small, "the value is an array " * 100),
    ]
    huge = _Record(7, 0, b"k", b"y" * (MAX_RECORD_BYTES + 1), ())
    rejected.append(Rejected(7, TOO_LARGE, huge, "the value is larger than 1 MiB"))
    await DeadLetters(producer).send(TP, "audit.hostile-0", rejected)  # type: ignore[arg-type]
    by_offset = {h["dlq-offset"]: (v, h) for v, h in producer.delivered}
    assert set(by_offset) == {b"5", b"6", b"7"}
    # Past Kafka's default record limit: never even tried with its value.
    assert MAX_RECORD_BYTES + 1 not in producer.attempted
    assert by_offset[b"7"][0] is None
    assert by_offset[b"7"][1]["dlq-value-bytes"] == str(MAX_RECORD_BYTES + 1).encode()
    value, headers = by_offset[b"5"]
    assert value == b""  # no key either: aiokafka sends no record without both
    assert headers["dlq-reason"] == b"too-large"
    assert headers["dlq-value-bytes"] == b"1000"
    assert headers["dlq-value-sha256"] == hashlib.sha256(b"x" * 1000).hexdigest().encode()
    assert headers["trace"] == b"t"
    # The small one was refused only with its batch: sent again alone, it keeps its value.
    value, headers = by_offset[b"6"]
    assert value == b"[1]"
    assert headers["dlq-reason"] == b"not-object"
    assert headers["dlq-detail"] is not None and len(headers["dlq-detail"]) == 1000


async def test_a_dead_letter_with_neither_key_nor_value_is_sent_with_an_empty_value() -> None:
    producer = _Producer(limit=100)
    tombstone = _Record(1, 0, None, None, ())
    keyed = _Record(2, 0, b"k", None, ())
    rejected = [
        Rejected(1, "empty-value", tombstone, "the record has no value"),
        Unreadable(3, "UnicodeDecodeError: ...").rejected(),
        Rejected(2, "empty-value", keyed, "the record has no value"),
    ]
    await DeadLetters(producer).send(TP, "audit.hostile-0", rejected)  # type: ignore[arg-type]
    values = {h["dlq-offset"]: v for v, h in producer.delivered}
    assert values == {b"1": b"", b"3": b"", b"2": None}


# -- records aiokafka cannot parse ---------------------------------------------------------
def _good(offset: int) -> _Record:
    value = Envelope({"message": f"e{offset}"}, "2026-12-04T00:00:00.000000Z").canonical
    return _Record(offset, 0, None, value, ())


class _Consumer:
    """Partition 0 holds records 0..9, of which 4 and 5 (one producer batch, say) cannot be
    parsed: a read that reaches them raises, as aiokafka's does, without moving the position."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.positions = {TP: 0}
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[_Record]]:
        await asyncio.sleep(0)
        wanted = partitions or (TP,)
        out: dict[TopicPartition, list[_Record]] = {}
        for tp in wanted:
            if tp != TP:
                continue
            start = self.positions[tp]
            if start >= 10:
                continue
            take = list(range(start, min(10, start + (max_records or 10))))
            if any(o in self.bad for o in take):
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            self.positions[tp] = take[-1] + 1
            out[tp] = [_good(o) for o in take]
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset


async def test_records_aiokafka_cannot_parse_are_found_one_by_one_and_passed_by() -> None:
    consumer = _Consumer(bad={4, 5})
    fetched = await read_past_unreadable(consumer, [TP], limit=100, wait_ms=1)  # type: ignore[arg-type]
    records = fetched[TP]
    assert [r.offset for r in records] == list(range(10))
    assert [type(r) is Unreadable for r in records] == [o in {4, 5} for o in range(10)]
    assert consumer.seeks == [(TP, 5), (TP, 6)]


async def test_the_fetch_loop_rewinds_and_dead_letters_what_cannot_be_parsed() -> None:
    consumer = _Consumer(bad={7})
    hasher = get_hasher("rfc6962-sha256")
    sealer = Sealer(
        Settings(batch_max_size=100, batch_max_age=30),
        consumer,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        hasher,
        NoteSigner.generate("hostile.test"),
    )
    sealer.heads[TP] = LogHead("audit.hostile-0", "o", hasher.name, 0, b"", 0)
    sealer._reset(TP)
    generation = sealer.generation[TP]
    fetched = await sealer._fetch(10)
    # The whole fetch raised: every partition was read again from its head.
    assert sealer.generation[TP] == generation + 1
    assert consumer.seeks[0] == (TP, 0)
    judged = sealer._judge(fetched[TP])
    assert [r.offset for r in judged] == list(range(10))
    dead = [r for r in judged if isinstance(r, Rejected)]
    assert [(r.offset, r.reason) for r in dead] == [(7, UNREADABLE)]
    assert "UnicodeDecodeError" in dead[0].detail
    assert all(isinstance(r, Sealable) for r in judged if r.offset != 7)
