"""Which closed generations a compaction rewrites together (auditlog.pg.search_compaction.plan)."""

from __future__ import annotations

from auditlog.pg.search_compaction import Closed, plan


def _closed(*entries: int, first: int = 0) -> list[Closed]:
    return [Closed(first + i, n // 64, n) for i, n in enumerate(entries)]


def test_adjacent_generations_are_grouped_up_to_the_entries() -> None:
    assert plan(_closed(100, 100, 100, 100, 100), 200) == [(0, 1), (2, 3)]
    assert plan(_closed(100, 100, 100, 100, 100), 300) == [(0, 1, 2), (3, 4)]
    assert plan(_closed(100, 100, 100, 100, 100), 10_000) == [(0, 1, 2, 3, 4)]


def test_a_generation_alone_is_left_as_it_is() -> None:
    assert plan(_closed(100, 100, 100), 199) == []
    assert plan(_closed(500, 100, 100, 500), 250) == [(1, 2)]
    assert plan(_closed(100), 1_000) == []
    assert plan([], 1_000) == []


def test_the_numbers_are_the_generations_there_are() -> None:
    # Numbers missing (dropped, or already inside a compacted one) do not stop a run.
    closed = [Closed(0, 3, 192), Closed(4, 1, 64), Closed(9, 0, 0), Closed(10, 2, 128)]
    assert plan(closed, 256) == [(0, 4, 9)]
    assert plan(closed, 400) == [(0, 4, 9, 10)]


def test_empty_generations_join_any_run() -> None:
    assert plan(_closed(0, 0, 0), 1) == [(0, 1, 2)]
    assert plan(_closed(200, 0, 200), 200) == [(0, 1)]
