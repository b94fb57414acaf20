"""Idempotency keys end to end, without servers (issue 21): ingest names the principal of a keyed
event, every producer keys an untenanted keyed event by its key's namespace (so its retries
share a partition), the sealer reads the principal (``kafka`` without one), and a claim's
content digest ignores only ``received_at``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from auditlog.core.envelope import Envelope
from auditlog.core.schema import NO_CUSTOM_SCHEMAS
from auditlog.kafka.clients import record_key
from auditlog.pg.tokens import TokenInfo
from ingest.publisher import IngestState
from ingest.settings import Settings
from sealer.claims import IDEMPOTENCY_CONFLICT, Conflict, content_digest, namespace
from sealer.records import INVALID_HEADER, MAX_PRINCIPAL_BYTES, Rejected, Sealable, decode
from tests.unit.ingest_served import served

RECEIVED = "2026-12-04T12:00:00.000000Z"
TOKENS = {
    "alt_a": TokenInfo("tok-a", "a", frozenset({"log"}), None),
    "alt_t": TokenInfo("tok-t", "t", frozenset({"log"}), "acme"),
}


def _env(event: dict[str, Any], received_at: str = RECEIVED, **signed: str) -> Envelope:
    return Envelope(event=event, received_at=received_at, **signed)  # type: ignore[arg-type]


# -- the Kafka record key -------------------------------------------------------------------


def test_a_tenant_keys_its_events_whatever_the_headers() -> None:
    env = _env({"message": "m", "tenant_id": "acme"})
    assert record_key(env) == b"acme"
    assert record_key(env, [("idempotency-key", b"k"), ("principal", b"token:a")]) == b"acme"


def test_an_untenanted_keyed_event_is_keyed_by_its_namespace() -> None:
    env = _env({"message": "m"})
    assert record_key(env) is None
    assert record_key(env, [("config-id", b"c")]) is None
    assert record_key(env, [("idempotency-key", b"k1")]) == b"idempotency-key\nkafka\nk1"
    by_token = record_key(env, [("principal", b"token:a"), ("idempotency-key", b"k1")])
    assert by_token == b"idempotency-key\ntoken:a\nk1"
    # Another attempt (another received_at) of the same key: the same partition.
    again = _env({"message": "m"}, "2026-12-04T12:00:09.000000Z")
    assert record_key(again, [("principal", b"token:a"), ("idempotency-key", b"k1")]) == by_token
    # Another principal's key is another namespace.
    assert record_key(env, [("principal", b"token:b"), ("idempotency-key", b"k1")]) != by_token


# -- the sealer reads the principal ---------------------------------------------------------


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int = 7
    timestamp: int = 1_764_849_600_000
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)


def test_the_principal_header_names_the_namespace_and_kafka_is_the_default() -> None:
    env = _env({"message": "m"})
    named = decode(FakeRecord(env.canonical, headers=(("principal", b"token:x"),)))
    assert isinstance(named, Sealable) and named.principal == "token:x"
    plain = decode(FakeRecord(b'{"message": "plain"}', headers=(("principal", b"token:y"),)))
    assert isinstance(plain, Sealable) and plain.principal == "token:y"
    for headers in ((), (("idempotency-key", b"k"),)):
        unnamed = decode(FakeRecord(env.canonical, headers=headers))
        assert isinstance(unnamed, Sealable) and unnamed.principal == "kafka"


@pytest.mark.parametrize(
    "value",
    [b"", b"\xff", b"a\x00b", None, b"p" * (MAX_PRINCIPAL_BYTES + 1)],
    ids=["empty", "not-utf8", "nul", "no-value", "too-long"],
)
def test_a_principal_that_names_no_namespace_is_an_invalid_header(value: bytes | None) -> None:
    out = decode(FakeRecord(_env({"message": "m"}).canonical, headers=(("principal", value),)))
    assert isinstance(out, Rejected) and out.reason == INVALID_HEADER


# -- what a claim compares ------------------------------------------------------------------


def test_the_content_digest_ignores_only_received_at() -> None:
    event = {"message": "pay", "actor": "alice"}
    digest = content_digest(_env(event))
    assert content_digest(_env(dict(event), "2026-12-04T12:00:09.000000Z")) == digest
    assert content_digest(_env({**event, "actor": "mallory"})) != digest
    assert content_digest(_env({**event, "tenant_id": "acme"})) != digest


def test_a_claim_is_namespaced_by_principal_tenant_and_key() -> None:
    env = _env({"message": "m", "tenant_id": "acme"})
    assert namespace(Sealable(0, env, 0, "k", None, "token:a")) == ("token:a", "acme", "k")
    assert namespace(Sealable(0, _env({"message": "m"}), 0, "k")) == ("kafka", "", "k")
    assert namespace(Sealable(0, env, 0, None)) is None


def test_a_conflict_is_a_dead_letter_of_the_envelope_with_its_headers() -> None:
    env = _env({"message": "other"})
    item = Sealable(11, env, 0, "k", "cfg", "token:a")
    rejected = Conflict(item, "already sealed").rejected()
    assert (rejected.offset, rejected.reason, rejected.detail) == (
        11,
        IDEMPOTENCY_CONFLICT,
        "already sealed",
    )
    assert rejected.record.value == env.canonical
    assert dict(rejected.record.headers) == {
        "idempotency-key": b"k",
        "principal": b"token:a",
        "config-id": b"cfg",
    }


# -- ingest sends the principal -------------------------------------------------------------


class Tokens:
    async def resolve(self, token: str) -> TokenInfo | None:
        return TOKENS.get(token)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes | None, list[tuple[str, bytes]] | None]] = []

    async def send(self, _topic: str, value: bytes, **kw: Any) -> asyncio.Future[None]:
        self.sent.append((value, kw.get("key"), kw.get("headers")))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[httpx.AsyncClient, Producer]]:
    producer = Producer()
    async with asyncio.TaskGroup() as tasks:
        state = IngestState(
            Settings(),
            producer,  # type: ignore[arg-type]
            Tokens(),  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            tasks,
            NO_CUSTOM_SCHEMAS,
        )
        async with served(state) as http:
            yield http, producer


async def test_ingest_names_the_token_as_the_principal_of_a_keyed_event(
    ingest: tuple[httpx.AsyncClient, Producer],
) -> None:
    http, producer = ingest
    body = {
        "events": [
            {"event": {"message": "keyed"}, "idempotency_key": "k1"},
            {"event": {"message": "plain"}},
        ]
    }
    resp = await http.post(
        "/v2/log", content=orjson.dumps(body), headers={"Authorization": "Bearer alt_a"}
    )
    assert resp.status_code == 200, resp.text
    resp = await http.post(
        "/v1/log",
        content=orjson.dumps({"event": {"message": "tenant"}}),
        headers={"Authorization": "Bearer alt_t", "Idempotency-Key": "k2"},
    )
    assert resp.status_code == 200, resp.text
    (_, key1, headers1), (_, key2, headers2), (_, key3, headers3) = producer.sent
    assert headers1 == [("principal", b"token:tok-a"), ("idempotency-key", b"k1")]
    assert key1 == b"idempotency-key\ntoken:tok-a\nk1"
    assert (key2, headers2) == (None, None)
    assert headers3 == [("principal", b"token:tok-t"), ("idempotency-key", b"k2")]
    assert key3 == b"acme"  # a tenant keeps keying its events


def test_a_refused_record_keeps_its_principal_in_its_dead_letter() -> None:
    from sealer.refused import Kept

    env = _env({"message": "m"})
    named = Kept.of(Sealable(3, env, 0, "k", None, "token:a"))
    assert named.headers == (("idempotency-key", b"k"), ("principal", b"token:a"))
    assert Kept.of(Sealable(3, env, 0, "k")).headers == (("idempotency-key", b"k"),)
