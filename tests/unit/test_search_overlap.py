"""Overlap.everything: a search names its generations only when that leaves some out."""

from __future__ import annotations

from auditlog.pg.search_generations import Overlap


def test_everything_when_nothing_is_left_out() -> None:
    assert Overlap(None, None, None).everything  # no generation without a span: no restriction
    assert Overlap(None, None, 0, lowest=0).everything  # only unbounded ones, from the oldest
    assert Overlap(0, 3, 4, lowest=0).everything  # 0-3 spanned, 4 on unbounded
    assert Overlap(2, 5, 4, lowest=2).everything  # the two ranges overlap
    assert Overlap(None, None, 0).everything is False  # the oldest unknown: say so


def test_not_everything_when_some_are_left_out() -> None:
    assert not Overlap(None, None, 5, lowest=0).everything  # 0-4 outside the range
    assert not Overlap(1, 3, 4, lowest=0).everything  # 0 outside
    assert not Overlap(0, 2, 4, lowest=0).everything  # 3 outside
