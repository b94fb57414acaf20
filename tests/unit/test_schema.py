from __future__ import annotations

import pytest

from auditlog.schema import STANDARD_FIELDS, validate_event, validate_signature_fields


def codes(errors: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(e["code"], e["source"]) for e in errors]


def test_a_complete_standard_event_is_valid() -> None:
    event = dict.fromkeys(STANDARD_FIELDS, "x")
    event["timestamp"] = "2024-01-02T03:04:05.123456Z"
    assert validate_event(event, "/event") == []


def test_message_is_required_and_not_empty() -> None:
    assert codes(validate_event({"actor": "a"}, "/event")) == [("FieldRequired", "/event/message")]
    assert codes(validate_event({"message": ""}, "/event")) == [
        ("BelowMinLength", "/event/message")
    ]


# timestamp is a date-time first, so its 128-character limit cannot be reached by a valid value.
@pytest.mark.parametrize(
    ("field", "limit"), sorted((k, v) for k, v in STANDARD_FIELDS.items() if k != "timestamp")
)
def test_each_field_limit_is_enforced_at_the_boundary(field: str, limit: int) -> None:
    base = {"message": "m"}
    assert validate_event({**base, field: "y" * limit}, "/event") == []
    errors = validate_event({**base, field: "y" * (limit + 1)}, "/event")
    assert codes(errors) == [("AboveMaxLength", f"/event/{field}")]


def test_unknown_fields_and_wrong_types_are_each_reported() -> None:
    errors = validate_event({"message": 5, "colour": "red", "actor": None}, "/events/3/event")
    assert codes(errors) == [
        ("InvalidString", "/events/3/event/message"),
        ("UnexpectedProperty", "/events/3/event/colour"),
        ("InvalidString", "/events/3/event/actor"),
    ]


def test_event_must_be_an_object() -> None:
    assert codes(validate_event(["message"], "/event")) == [("InvalidObject", "/event")]


def test_timestamp_must_be_a_date_time() -> None:
    assert validate_event({"message": "m", "timestamp": "2024-01-02T03:04:05+02:00"}, "/e") == []
    errors = validate_event({"message": "m", "timestamp": "yesterday"}, "/e")
    assert codes(errors) == [("BadFormatDateTime", "/e/timestamp")]


def test_signature_and_public_key_come_together() -> None:
    assert validate_signature_fields({"signature": "c2ln", "public_key": "k"}, "") == []
    assert codes(validate_signature_fields({"signature": "c2ln"}, "")) == [
        ("FieldRequired", "/public_key")
    ]
    assert codes(validate_signature_fields({"public_key": 3, "signature": "s"}, "/events/0")) == [
        ("InvalidString", "/events/0/public_key")
    ]
