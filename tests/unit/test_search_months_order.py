"""The merge of a month walk sorts as the statements' ORDER BY does
(query.search_months.first_in_order): by value in code-point order (PostgreSQL's "C" on UTF-8),
NULLs last in either direction, then received_at, log_id, idx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from query.search_months import first_in_order

AT = datetime(2031, 1, 1, tzinfo=UTC)


def _row(idx: int, value: str | None, seconds: int = 0, log: str = "l-0") -> dict[str, Any]:
    return {
        "log_id": log,
        "idx": idx,
        "received_at": AT + timedelta(seconds=seconds),
        "value": value,
    }


ROWS = [
    _row(0, "b"),
    _row(1, None, 5),
    _row(2, "é"),
    _row(3, "Z"),
    _row(4, "b", 1),
    _row(5, None, 2),
    _row(6, "b", 1, "l-1"),
    _row(7, "a"),
]


def test_ascending_values_then_nulls() -> None:
    found = [r["idx"] for r in first_in_order(ROWS, False, 100)]
    assert found == [3, 7, 0, 4, 6, 2, 5, 1]


def test_descending_values_then_nulls() -> None:
    found = [r["idx"] for r in first_in_order(ROWS, True, 100)]
    assert found == [2, 6, 4, 0, 7, 3, 1, 5]


def test_cut_at_most() -> None:
    assert [r["idx"] for r in first_in_order(ROWS, False, 3)] == [3, 7, 0]
    assert first_in_order([], True, 3) == []
