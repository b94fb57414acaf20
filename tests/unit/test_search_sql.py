"""How search values are looked up in the search-text index (the SQL itself runs in
tests/integration/test_query_search_sql.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query.search_sql import _index_key


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("user1234@example.com", "user1234"),  # the domain is in every actor
        ("res/12345", "12345"),
        ("3f2a9c1e-77aa-4b1d-9e2f-0c1d2e3f4a5b", "0c1d2e3f4a5b"),
        ("a3f9c81b2d", "a3f9c81b2d"),
        ("failed", "failed"),
        ("password reset", "password reset"),  # words without digits: all of them narrow
        ("ab", None),  # no trigram to look up: scan
        ("", None),
        ("x-1-y", "x-1-y"),  # no word of three: the whole value
        ("--/--", None),  # no word at all
    ],
)
def test_index_key(value: str, key: str | None) -> None:
    assert _index_key(value) == key


@given(st.text())
def test_the_key_is_always_part_of_the_value(value: str) -> None:
    # Exactness depends on it: events containing the value contain any part of it.
    key = _index_key(value)
    assert key is None or (key in value and len(key) >= 3 and any(c.isalnum() for c in key))
