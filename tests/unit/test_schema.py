from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditlog.core.schema import (
    STANDARD,
    STANDARD_FIELDS,
    SchemaConfigError,
    parse_schemas,
    validate_event,
    validate_signature_fields,
)
from auditlog.runtime.settings import load_schemas


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


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-02T03:04:05Z\n",  # a trailing newline
        "\uff12\uff10\uff12\uff14-01-02T03:04:05Z",  # fullwidth digits
        "2024-01-02T03:04:05.123Z ",
        "2024-01-02T03:04:05+\u0660\u0661:00",  # Arabic-Indic digits in the offset
        "2024-01-02T03:04:05.1234567890Z",  # more than nanoseconds
    ],
)
def test_a_date_time_is_ascii_and_nothing_more(value: str) -> None:
    errors = validate_event({"message": "m", "timestamp": value}, "/e")
    assert codes(errors) == [("BadFormatDateTime", "/e/timestamp")]
    assert not STANDARD.valid({"message": "m", "timestamp": value})


@pytest.mark.parametrize(
    "value",
    ["2024-01-02 03:04", "2024-01-02t03:04:05z", "2024-01-02T03:04:05.123456789-0130"],
)
def test_the_looser_date_time_spellings_stay_accepted(value: str) -> None:
    assert validate_event({"message": "m", "timestamp": value}, "/e") == []
    assert STANDARD.valid({"message": "m", "timestamp": value})


def test_signature_and_public_key_come_together() -> None:
    assert validate_signature_fields({"signature": "c2ln", "public_key": "k"}, "") == []
    assert codes(validate_signature_fields({"signature": "c2ln"}, "")) == [
        ("FieldRequired", "/public_key")
    ]
    assert codes(validate_signature_fields({"public_key": 3, "signature": "s"}, "/events/0")) == [
        ("InvalidString", "/events/0/public_key")
    ]


CUSTOM = {
    "pci_custom": {
        "name": "payments",
        "fields": [
            {"id": "message", "type": "string", "required": True, "size": 64},
            {"id": "field_int", "type": "integer"},
            {"id": "field_bool", "type": "boolean"},
            {"id": "field_time", "type": "datetime"},
            {"id": "field_str_long", "type": "text"},
        ],
    }
}


def test_custom_schemas_validate_their_own_fields_and_types() -> None:
    schemas = parse_schemas(CUSTOM)
    schema = schemas.for_config("pci_custom")
    assert schema is not None
    ok = {"message": "m", "field_int": 3, "field_bool": True, "field_time": "2024-01-02T03:04:05Z"}
    assert validate_event(ok, "/event", schema) == []
    bad = {
        "message": "m" * 65,
        "field_int": True,
        "field_bool": "yes",
        "actor": "a",
        "field_time": "noon",
        "field_str_long": 7,
    }
    assert codes(validate_event(bad, "/event", schema)) == [
        ("AboveMaxLength", "/event/message"),
        ("InvalidInteger", "/event/field_int"),
        ("InvalidBoolean", "/event/field_bool"),
        ("UnexpectedProperty", "/event/actor"),
        ("BadFormatDateTime", "/event/field_time"),
        ("InvalidString", "/event/field_str_long"),
    ]
    assert codes(validate_event({"field_int": 2**63}, "/event", schema)) == [
        ("FieldRequired", "/event/message"),
        ("IsTooBig", "/event/field_int"),
    ]
    assert schemas.for_config(None) is STANDARD
    assert schemas.for_config("pci_unknown") is None


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ([], "must map"),
        ({"c": {"fields": []}}, "non-empty"),
        ({"c": {"fields": [{"id": "Bad"}]}}, "invalid id"),
        ({"c": {"fields": [{"id": "received_at"}]}}, "invalid id"),
        ({"c": {"fields": [{"id": "a", "type": "float"}]}}, "unknown type"),
        ({"c": {"fields": [{"id": "a", "size": 0}]}}, "invalid size"),
        ({"c": {"fields": [{"id": "a"}, {"id": "a"}]}}, "repeat"),
    ],
)
def test_malformed_schema_files_are_refused_with_the_reason(spec: object, needle: str) -> None:
    with pytest.raises(SchemaConfigError, match=needle):
        parse_schemas(spec)


def test_load_schemas_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "schemas.json"
    path.write_text(json.dumps(CUSTOM))
    assert load_schemas(path).for_config("pci_custom") is not None
    assert load_schemas(None).for_config("pci_custom") is None
    with pytest.raises(SchemaConfigError, match="cannot read"):
        load_schemas(tmp_path / "missing.json")


_field_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.text(max_size=40)
    | st.text(max_size=3).map(lambda t: t * 50)  # past the 32- and 128-character limits
    | st.sampled_from(["2024-01-02T03:04:05Z", "noon", ""])
)
_field_names = st.sampled_from(
    [*STANDARD_FIELDS, "field_int", "field_bool", "field_time", "field_str_long", "other"]
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_field_names, _field_values, max_size=6), st.booleans())
def test_the_quick_verdict_agrees_with_the_full_validation(
    event: dict[str, object], custom: bool
) -> None:
    schema = parse_schemas(CUSTOM).for_config("pci_custom") if custom else STANDARD
    assert schema is not None
    assert schema.valid(event) == (validate_event(event, "/event", schema) == [])


def test_the_quick_verdict_refuses_what_is_not_an_object() -> None:
    assert not STANDARD.valid(["message"])
    assert not STANDARD.valid({})
