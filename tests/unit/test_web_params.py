"""URL integers: what reaches PostgreSQL is a bigint or nothing."""

from __future__ import annotations

import pytest

from auditlog.web.params import INT64_MAX, non_negative_int


@pytest.mark.parametrize("text", ["0", "7", "0042", str(INT64_MAX)])
def test_digits_within_bigint_are_numbers(text: str) -> None:
    assert non_negative_int(text) == int(text)


@pytest.mark.parametrize(
    "text",
    [None, "", "-1", "+1", " 1", "1 ", "1_000", "1.0", "١٢", "0x10", str(INT64_MAX + 1), "9" * 400],
)
def test_anything_else_is_none(text: str | None) -> None:
    assert non_negative_int(text) is None
