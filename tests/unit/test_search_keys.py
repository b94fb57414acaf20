"""The search-block keys never lose a match: every text holding a value holds its whole tokens."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from auditlog.core.columns import TEXT_COLUMNS
from auditlog.core.search_keys import (
    BLOCK_SIZE,
    VALUE_FIELDS,
    block_keys,
    blocks,
    field_value_key,
    key,
    tokens,
    value_keys,
)

# Separators, ASCII letters and digits, and non-ASCII letters: every class the rules tell apart.
_ALPHABET = st.sampled_from(list("ab9Z .@-/_\t:é\u00a0✓\U0001f600"))
_TEXT = st.text(_ALPHABET, max_size=40)


def _keys_of(*values: str) -> set[int]:
    return set(block_keys([values]))


def test_tokens_split_at_ascii_separators_only() -> None:
    found = tokens(["alice.smith@example.com", None, 42, "Zürich_7"])
    assert {t for t in found if not t.startswith(b"\0")} == {
        b"alice",
        b"smith",
        b"example",
        b"com",
        "Zürich".encode(),
        b"7",
    }
    assert [t for t in tokens(["", "--"]) if not t.startswith(b"\0")] == []


def test_value_fields_lead_the_searchable_values() -> None:
    # tokens() takes the short fields' values by position, from what searchable_values() gives.
    assert tuple(column for column, _ in TEXT_COLUMNS[: len(VALUE_FIELDS)]) == VALUE_FIELDS


def test_short_fields_whole_values_are_keys_of_their_field_only() -> None:
    values = ["acme", "alice@example.com", "login", "/a/b", "ok", "10.0.0.1", "msg", None, None]
    keys = set(block_keys([values]))
    for field, value in zip(VALUE_FIELDS, values, strict=False):
        assert field_value_key(field, value) in keys
    # Another field holding the same value, or the message, gives another key.
    assert field_value_key("target", "alice@example.com") not in keys
    assert field_value_key("actor", "msg") not in keys
    # A value's key needs the whole value.
    assert field_value_key("actor", "alice@example") not in keys


def test_value_keys_take_only_complete_tokens() -> None:
    assert value_keys("deleted", whole=False) == []
    assert value_keys("user42@example.com", whole=False) == [key(b"example")]
    assert value_keys("@example.", whole=False) == [key(b"example")]
    assert value_keys("@example", whole=False) == []
    assert value_keys("user42@example.com", whole=True) == sorted(
        {key(b"user42"), key(b"example"), key(b"com")}
    )
    assert value_keys("", whole=True) == []


@given(prefix=_TEXT, value=_TEXT, suffix=_TEXT)
@example(prefix="x", value="a b", suffix="y")
@example(prefix="", value=" é ", suffix="")
def test_a_text_containing_the_value_holds_its_keys(prefix: str, value: str, suffix: str) -> None:
    # Contains: whatever surrounds the value inside a field.
    assert set(value_keys(value, whole=False)) <= _keys_of(prefix + value + suffix)


@given(value=_TEXT, others=st.lists(_TEXT, max_size=3))
def test_a_field_equal_to_the_value_holds_all_its_keys(value: str, others: list[str]) -> None:
    # Exact match: the value is a whole field, next to the event's other fields.
    assert set(value_keys(value, whole=True)) <= _keys_of(value, *others)
    assert field_value_key("tenant_id", value) in _keys_of(value, *others)


@given(value=_TEXT)
def test_exact_keys_include_contains_keys(value: str) -> None:
    assert set(value_keys(value, whole=False)) <= set(value_keys(value, whole=True))


def test_block_keys_are_the_union_once_and_fit_an_integer() -> None:
    keys = block_keys([["a b"], ["b c b"]])
    expected = {key(b"a"), key(b"b"), key(b"c")}
    expected |= {field_value_key("tenant_id", "a b"), field_value_key("tenant_id", "b c b")}
    assert sorted(keys) == sorted(expected)
    assert all(0 <= k < 2**31 for k in keys)


def test_blocks_are_aligned_in_the_log_and_cover_the_seal() -> None:
    for first, count in itertools.product((0, 1, 63, 64, 65, 1000), (0, 1, 63, 64, 65, 300)):
        spans = blocks(first, count)
        assert sum(length for _, length in spans) == count
        offset = 0
        for start, length in spans:
            assert start == offset and 1 <= length <= BLOCK_SIZE
            # No block crosses a multiple of BLOCK_SIZE in the log.
            assert (first + start) // BLOCK_SIZE == (first + start + length - 1) // BLOCK_SIZE
            offset += length


# An event's searchable values: the short fields first, then longer text; None and non-strings
# where real events have them (a missing field, event_time).
_VALUES = st.lists(st.one_of(st.none(), _TEXT, st.integers()), max_size=len(TEXT_COLUMNS) + 1)


@given(events=st.lists(_VALUES, max_size=8))
@example(events=[["a", "b"], ["b", "a"]])  # the same text in another field is another mark
@example(events=[["\ud800"], ["\udc00"]])  # lone surrogates never pair across events
def test_block_keys_are_the_keys_of_every_events_tokens(events: list[list[object]]) -> None:
    # The block-at-once computation against the per-event definition.
    expected = {key(t) for values in events for t in tokens(values)}
    assert set(block_keys(events)) == expected
