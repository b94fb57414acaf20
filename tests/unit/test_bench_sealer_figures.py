"""What bench_sealer reads from a sealer's metrics over a phase (bench/sealer_measure.py)."""

from __future__ import annotations

import pytest

from bench.sealer_measure import phase_figures, phase_report


def test_a_phase_is_the_difference_of_two_scrapes() -> None:
    before = {
        "auditlog_sealer_events_total": 1_000.0,
        "auditlog_sealer_seal_seconds_count": 10.0,
        "auditlog_sealer_seal_seconds_sum": 1.0,
        "auditlog_sealer_batch_events_sum": 1_000.0,
        "auditlog_sealer_batch_age_seconds_sum": 2.0,
        "auditlog_sealer_rebalances_requested_total": 1.0,
    }
    after = {
        "auditlog_sealer_events_total": 61_000.0,
        "auditlog_sealer_seal_seconds_count": 110.0,
        "auditlog_sealer_seal_seconds_sum": 11.0,
        "auditlog_sealer_batch_events_sum": 61_000.0,
        "auditlog_sealer_batch_age_seconds_sum": 32.0,
        "auditlog_sealer_rebalances_requested_total": 3.0,
    }
    figures = phase_figures(before, after)
    assert figures["events"] == 60_000
    assert figures["batches"] == 100
    assert figures["batch_events_mean"] == 600
    assert figures["seal_ms_mean"] == pytest.approx(100)
    assert figures["batch_age_ms_mean"] == pytest.approx(300)
    assert figures["rebalances_requested"] == 2
    report = phase_report(figures)
    assert report.startswith("60,000 events sealed; 100 batches of 600 events")
    assert report.endswith("2 rebalances asked for")


def test_a_quiet_phase_reports_nothing() -> None:
    same = {"auditlog_sealer_events_total": 5.0, "auditlog_sealer_rebalances_requested_total": 1.0}
    assert phase_figures(same, same) == {}
    assert phase_report({}) == "no batches and no event-loop ticks"
