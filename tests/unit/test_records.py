from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from auditlog.core.envelope import Envelope
from sealer.records import (
    EMPTY_VALUE,
    INVALID_ENVELOPE,
    INVALID_EVENT,
    MAX_RECORD_BYTES,
    NON_CANONICAL,
    NOT_JSON,
    NOT_OBJECT,
    REASONS,
    TOO_LARGE,
    UNKNOWN_CONFIG_ID,
    Rejected,
    Sealable,
    decode,
)
from sealer.timestamps import micros


@dataclass
class FakeRecord:
    """A stand-in for aiokafka's ConsumerRecord: decode() is pure and reads only these fields."""

    value: bytes | None
    offset: int = 7
    timestamp: int = 1_700_000_000_123
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def test_a_canonical_envelope_is_kept_byte_for_byte() -> None:
    env = Envelope(
        event={"message": "hi", "actor": "ä😀"}, received_at="2024-05-06T07:08:09.123456Z"
    )
    out = decode(FakeRecord(env.canonical, headers=(("idempotency-key", b"k1"),)))
    assert isinstance(out, Sealable)
    assert out.envelope.canonical == env.canonical
    assert out.received_us == micros(datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    assert out.idempotency_key == "k1"


def test_a_plain_event_is_wrapped_with_the_record_timestamp() -> None:
    out = decode(FakeRecord(json.dumps({"message": "plain", "actor": "svc"}).encode()))
    assert isinstance(out, Sealable)
    assert out.envelope.received_at == "2023-11-14T22:13:20.123000Z"
    assert out.received_us == micros(datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC))
    assert out.envelope.event == {"message": "plain", "actor": "svc"}
    assert out.offset == 7


def test_a_non_canonical_envelope_is_rejected_not_rewritten() -> None:
    raw = b'{"received_at":"2024-05-06T07:08:09.123456Z", "event":{"message":"hi"}}'
    out = decode(FakeRecord(raw))
    assert isinstance(out, Rejected)
    assert out.reason == NON_CANONICAL
    assert "canonical" in out.detail


def test_garbage_of_every_kind_is_rejected_with_a_reason() -> None:
    cases = {
        b"": (EMPTY_VALUE, "no value"),
        b"\xff\xfe": (NOT_JSON, "utf-8"),
        b"[1,2]": (NOT_OBJECT, "an array"),
        b"null": (NOT_OBJECT, "null"),
        b'{"actor":"no message"}': (INVALID_EVENT, "message"),
        b'{"message":"m","colour":"red"}': (INVALID_EVENT, "colour"),
        b"x" * (MAX_RECORD_BYTES + 1): (TOO_LARGE, "limit"),
        b'{"event":{"message":"m"},"received_at":"yesterday"}': (INVALID_ENVELOPE, "received_at"),
        b"[" * 2000 + b"]" * 2000: (NOT_JSON, "depth"),
        b'{"message":' * 1100 + b'"m"' + b"}" * 1100: (NOT_JSON, "depth"),
    }
    for value, (reason, needle) in cases.items():
        out = decode(FakeRecord(value))
        assert isinstance(out, Rejected), value[:40]
        assert out.reason == reason, (value[:40], out)
        assert needle in out.detail.lower(), (value[:40], out.detail)
        assert out.reason in REASONS
    assert decode(FakeRecord(None)).reason == EMPTY_VALUE  # type: ignore[union-attr]


def test_custom_schema_records_follow_their_config_id() -> None:
    from auditlog.core.schema import parse_schemas

    schemas = parse_schemas(
        {
            "pci_c": {
                "fields": [{"id": "message", "required": True}, {"id": "amount", "type": "integer"}]
            }
        }
    )
    ok = Envelope(event={"message": "pay", "amount": 5}, received_at="2024-05-06T07:08:09.123456Z")
    header = (("config-id", b"pci_c"),)
    sealed = decode(FakeRecord(ok.canonical, headers=header), schemas)
    assert isinstance(sealed, Sealable)
    assert sealed.config_id == "pci_c"
    # The standard schema knows no "amount"; an unknown config id is refused outright.
    assert isinstance(decode(FakeRecord(ok.canonical), schemas), Rejected)
    unknown = decode(FakeRecord(ok.canonical, headers=(("config-id", b"pci_x"),)), schemas)
    assert isinstance(unknown, Rejected)
    assert unknown.reason == UNKNOWN_CONFIG_ID
    assert "pci_x" in unknown.detail
