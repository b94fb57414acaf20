"""The envelope's canonical bytes: equal to the stdlib rule everywhere, orjson or not."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditlog.core.envelope import Envelope, canonical_json, format_received_at, parse_received_at
from auditlog.core.errors import InvalidEvent, NonCanonicalEnvelope

RECEIVED_AT = "2023-06-05T17:01:28.026682Z"


def stdlib(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


# -- canonical_json against the stdlib rule ------------------------------------------------------

EDGE_STRINGS = [
    "",
    "plain",
    "\u2028\u2029",  # JS line separators: not escaped by either
    "\x7f",
    "/",
    "\\",
    '"',
    "\b\f\n\r\t",
    "".join(chr(c) for c in range(0x20)),
    "\ufeff",
    "\ud7ff\ue000\uffff",
    "\U00010000\U0001f600\U0010ffff",
    "ä ö ü ß 中文 العربية",
    "<>&'",
]


@pytest.mark.parametrize("s", EDGE_STRINGS)
def test_edge_strings_match_stdlib(s: str) -> None:
    obj = {"k" + s: s, "list": [s]}
    assert canonical_json(obj) == stdlib(obj)


def test_every_code_point_matches_stdlib() -> None:
    # One string holding every Unicode scalar value: proves orjson escapes exactly like the
    # stdlib, character for character, and sorts keys by code point.
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert canonical_json(everything) == stdlib(everything)
    keys = {chr(c): c for c in range(0, 0x110000, 97) if not 0xD800 <= c < 0xE000}
    assert canonical_json(keys) == stdlib(keys)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**63 - 1,
        2**63,
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        10**40,
        -(10**40),
        True,
        False,
        None,
        0.0,
        -0.0,
        1.0,
        0.1,
        1e-05,
        1e-07,
        6.8712010744125834e-09,
        1e16,
        1e15,
        1.7976931348623157e308,
        5e-324,
        123456.789,
    ],
)
def test_numbers_match_stdlib(value: object) -> None:
    obj = {"v": value, "l": [value, {"n": value}]}
    assert canonical_json(obj) == stdlib(obj)


def test_subclasses_and_tuples_follow_stdlib() -> None:
    class Color(str, enum.Enum):  # noqa: UP042 - the (str, Enum) mix-in is the case under test
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    obj = OrderedDict([("b", (1, 2)), ("a", [Level.HIGH, Color.RED])])
    assert canonical_json(obj) == stdlib(obj)


@pytest.mark.parametrize(
    "bad",
    [
        {"x": math.nan},
        {"x": math.inf},
        [-math.inf],
        {1: "int key"},
        {None: "null key"},
        {"x": datetime(2024, 1, 1, tzinfo=UTC)},
        {"x": uuid.UUID(int=1)},
        {"x": b"bytes"},
        {"x": {1, 2}},
        {"x": "\ud800"},
        {"\udfff": 1},
        {"x": 10**5000},
    ],
)
def test_non_canonical_values_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidEvent):
        canonical_json(bad)


def test_cycles_and_deep_nesting_are_rejected() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidEvent):
        canonical_json(loop)
    deep: object = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidEvent):
        canonical_json(deep)


def test_moderate_nesting_beyond_orjson_limit_matches_stdlib() -> None:
    nested: object = "x"
    for _ in range(300):  # orjson stops at 254 levels; the stdlib path takes over
        nested = {"a": nested}
    assert canonical_json(nested) == stdlib(nested)


def test_shared_non_cyclic_references_are_fine() -> None:
    shared = {"a": 1}
    obj = {"x": shared, "y": [shared, shared]}
    assert canonical_json(obj) == stdlib(obj)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"])), children, max_size=5
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_is_the_stdlib_rule(value: Any) -> None:
    assert canonical_json(value) == stdlib(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(alphabet=st.characters(exclude_categories=["Cs"])), json_values))
def test_envelope_round_trips_through_its_canonical_bytes(event: dict[str, Any]) -> None:
    env = Envelope(event, RECEIVED_AT)
    again = Envelope.from_bytes(env.canonical)
    assert again == env
    assert again.canonical == env.canonical
    assert env.event_hash == hashlib.sha256(stdlib(env.to_dict())).digest()


def _judged_by_stdlib(raw: bytes) -> bytes | None:
    """What the canonical rule says about ``raw``: its canonical bytes if it is canonical."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    try:
        again = stdlib(obj)
    except (ValueError, RecursionError):
        return None
    return again if again == raw else None


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["canonical", "ascii", "spaced", "float", "unsorted"]))
def test_fast_path_accepts_exactly_what_the_stdlib_rule_accepts(value: Any, spelling: str) -> None:
    # Envelope._from_canonical trusts orjson's round trip; whatever bytes it accepts must be
    # exactly the stdlib's canonical form, and it must hand anything else to the full path.
    obj = {"event": {"v": value}, "received_at": RECEIVED_AT}
    if spelling == "canonical":
        raw = stdlib(obj)
    elif spelling == "ascii":
        raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    elif spelling == "spaced":
        raw = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
    elif spelling == "float":
        raw = stdlib({"event": {"f": 1.5, "v": value}, "received_at": RECEIVED_AT})
    else:
        raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    fast = Envelope._from_canonical(json.loads(raw), raw)
    if spelling == "float":
        assert fast is None
    if fast is not None:
        assert _judged_by_stdlib(raw) == raw
        assert fast.canonical == raw
        assert fast == Envelope.from_obj(json.loads(raw))
    expected = _judged_by_stdlib(raw)
    if expected is None:
        with pytest.raises(InvalidEvent):
            Envelope.from_bytes(raw)
    else:
        assert Envelope.from_bytes(raw).canonical == raw


@pytest.mark.parametrize(
    "event",
    [
        {"n": 1.5},
        {"n": [1, 2.0]},
        {"n": 2**65},
        {"n": -(2**64)},
        {"s": "a:1.5 [1e5 ,2E3"},
        {"deep": json.loads("[" * 300 + "]" * 300)},
    ],
)
def test_fast_path_leaves_floats_big_ints_and_deep_nesting_to_the_full_path(
    event: dict[str, Any],
) -> None:
    env = Envelope(event, RECEIVED_AT)
    raw = env.canonical
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        fast = Envelope._from_canonical(parsed, raw)
        assert fast is None or "s" in event  # only the plain string may take the fast path
    assert Envelope.from_bytes(raw) == env


def test_fast_path_checks_the_envelope_shape() -> None:
    good = Envelope({"m": "x"}, RECEIVED_AT, signature="c2ln", public_key="{}").canonical
    assert Envelope._from_canonical(orjson.loads(good), good) is not None
    for raw in [
        b'{"event":{},"received_at":"2023-06-05T17:01:28Z"}',
        b'{"event":{},"extra":1,"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{},"public_key":7,"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":[],"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{},"received_at":null}',
    ]:
        with pytest.raises(InvalidEvent):
            Envelope.from_bytes(raw)


# -- received_at ----------------------------------------------------------------------------


def test_format_received_at() -> None:
    assert format_received_at(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000000Z"
    aware = datetime(2024, 1, 2, 5, 4, 5, 123, tzinfo=timezone(timedelta(hours=2)))
    assert format_received_at(aware) == "2024-01-02T03:04:05.000123Z"
    assert format_received_at(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00.000000Z"


def test_parse_received_at_round_trips() -> None:
    assert format_received_at(parse_received_at(RECEIVED_AT)) == RECEIVED_AT


@pytest.mark.parametrize(
    "bad",
    [
        "2023-06-05T17:01:28Z",
        "2023-06-05T17:01:28.026682",
        "2023-06-05T17:01:28.026682+00:00",
        "2023-06-05T17:01:28.0266820Z",
        "2023-06-05 17:01:28.026682Z",
        "2023-02-30T17:01:28.026682Z",
        "2023-06-05T24:01:28.026682Z",
        "\uff12\uff10\uff12\uff13-06-05T17:01:28.026682Z",  # fullwidth digits
    ],
)
def test_bad_received_at_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidEvent):
        Envelope({"message": "m"}, bad)


# -- Envelope -------------------------------------------------------------------------------


def test_envelope_omits_absent_optionals_and_hashes_like_pangea() -> None:
    env = Envelope({"message": "hello", "actor": "ä"}, RECEIVED_AT)
    assert env.to_dict() == {
        "event": {"message": "hello", "actor": "ä"},
        "received_at": RECEIVED_AT,
    }
    assert (
        env.canonical
        == (
            '{"event":{"actor":"ä","message":"hello"},"received_at":"2023-06-05T17:01:28.026682Z"}'
        ).encode()
    )
    assert env.event_hash == hashlib.sha256(env.canonical).digest()
    signed = Envelope({"message": "m"}, RECEIVED_AT, signature="c2ln", public_key="{}")
    assert set(signed.to_dict()) == {"event", "received_at", "signature", "public_key"}


def test_pangea_go_sdk_vector() -> None:
    # pangea-audit-api.md §4.8 item 3: the hash of a bare {"event": ...} object.
    assert (
        hashlib.sha256(canonical_json({"event": {"message": "test"}})).hexdigest()
        == "9c9c3b5a627cce035d517c14c10779656e900532bf6e76a5d2c69148e45fdb8d"
    )


def test_from_bytes_accepts_only_the_canonical_spelling() -> None:
    env = Envelope({"b": 1, "a": [1.5, 2**70, "x/\u2028"]}, RECEIVED_AT)
    assert Envelope.from_bytes(env.canonical) == env
    text = env.canonical.decode()
    for variant in [
        json.dumps(env.to_dict()),  # spaces
        json.dumps(env.to_dict(), separators=(",", ":"), ensure_ascii=False),  # key order
        json.dumps(env.to_dict(), sort_keys=True, separators=(",", ":")),  # \u escapes
        text.replace("1.5", "1.50"),
        text.replace('"b":1', '"b":1e0'),
        text.replace('"b":1', '"b":-0'),
        text + "\n",
        " " + text,
        text.replace('{"a"', '{"b":1,"a"'),  # duplicate key
    ]:
        with pytest.raises(NonCanonicalEnvelope):
            Envelope.from_bytes(variant.encode())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'"x"',
        b"\xff",
        b'{"event":{},"received_at":"2023-06-05T17:01:28.026682Z","extra":1}',
        b'{"event":[],"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{}}',
        b'{"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{},"received_at":"2023-06-05T17:01:28.026682Z","signature":null}',
        b'{"event":{},"public_key":7,"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{"x":NaN},"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{"x":1e400},"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{"x":"\\ud800"},"received_at":"2023-06-05T17:01:28.026682Z"}',
        b'{"event":{},"received_at":"2023-06-05T17:01:28Z"}',
    ],
)
def test_from_bytes_rejects_invalid_envelopes(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        Envelope.from_bytes(raw)


def test_from_obj_does_not_require_canonical_spelling() -> None:
    obj = json.loads('{"received_at": "2023-06-05T17:01:28.026682Z", "event": {"z": 1, "a": 2}}')
    env = Envelope.from_obj(obj)
    assert env.canonical.startswith(b'{"event":{"a":2,"z":1}')


def test_envelopes_compare_by_canonical_bytes() -> None:
    one, one_float = Envelope({"n": 1}, RECEIVED_AT), Envelope({"n": 1.0}, RECEIVED_AT)
    assert one.event == one_float.event  # Python says equal...
    assert one != one_float  # ...but they are different envelopes with different hashes
    assert one == Envelope({"n": 1}, RECEIVED_AT)
    assert len({one, one_float, Envelope({"n": 1}, RECEIVED_AT)}) == 2


def test_envelope_rejects_non_object_events() -> None:
    with pytest.raises(InvalidEvent):
        Envelope(["not", "an", "object"], RECEIVED_AT)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        Envelope({"x": math.nan}, RECEIVED_AT)
