"""The pure parts of ``auditlog loadtest``: histogram, load plan, thresholds and the report."""

from __future__ import annotations

import math
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditlog.loadtest.histogram import Histogram, bucket_bounds, bucket_of
from auditlog.loadtest.outcome import Outcome
from auditlog.loadtest.pacing import Plan, PlanError, Stage, parse_duration, parse_stages
from auditlog.loadtest.report import html, verdict
from auditlog.loadtest.results import generator_figures
from auditlog.loadtest.tally import Tally
from auditlog.loadtest.thresholds import evaluate, parse_rate


@given(st.integers(min_value=0, max_value=10**12))
def test_every_value_falls_in_a_bucket_that_bounds_it_within_one_128th(value: int) -> None:
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value <= high
    assert high - low <= max(0, low) / 128


def test_buckets_tile_the_integers_without_gaps() -> None:
    previous_high = -1
    for index in range(5000):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        previous_high = high


def test_percentiles_are_within_one_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(9, 1.4)) for _ in range(50_000))
    h = Histogram()
    for v in values:
        h.record(v)
    for p in (50, 90, 99, 99.9):
        exact = values[math.ceil(p / 100 * len(values)) - 1]
        assert exact <= h.percentile(p) <= exact * 1.01, p
    assert h.percentile(100) == values[-1]
    assert h.percentile(0) == values[0]
    assert h.count == len(values)


def test_merge_equals_recording_everything_in_one() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(1, 3000, 7):
        (a if i % 2 else b).record(i * 13)
        both.record(i * 13)
    a.merge(b)
    assert (a.counts, a.count, a.min, a.max, a.total) == (
        both.counts,
        both.count,
        both.min,
        both.max,
        both.total,
    )


def test_a_constant_plan_spaces_requests_evenly() -> None:
    times = list(Plan.constant(20, 3).due_times())
    assert len(times) == 60
    assert times[:3] == pytest.approx([0, 0.05, 0.1])


def test_a_ramp_sends_as_many_requests_each_second_as_its_rate_says() -> None:
    plan = Plan(tuple(parse_stages("10s:100,5s:100,10s:0")))
    per_second = [0] * 25
    for t in plan.due_times():
        per_second[int(t)] += 1
    # Up: 10/s more each second (5, 15, 25... at mid-second); flat at 100; then down.
    assert per_second[0] == pytest.approx(5, abs=1)
    assert per_second[9] == pytest.approx(95, abs=1)
    assert per_second[10:15] == [100] * 5
    assert per_second[24] == pytest.approx(5, abs=1)
    assert sum(per_second) == pytest.approx((10 * 100 / 2) + 500 + (10 * 100 / 2), abs=1)
    assert plan.seconds == 25
    assert plan.rate_at(5) == 50
    assert plan.rate_at(20) == 50


@pytest.mark.parametrize(
    "stages", ["3s:10", "2.5s:7", "10s:100,5s:100,10s:0", "1s:3,1s:0,1s:5", "0.7s:13,1.3s:2"]
)
@pytest.mark.parametrize("start", [0.0, 4.0])
def test_the_planned_count_is_what_the_schedule_yields(stages: str, start: float) -> None:
    plan = Plan(tuple(parse_stages(stages)), start_rate=start)
    times = list(plan.due_times())
    assert plan.planned_requests == len(times)
    assert times == sorted(times)
    assert all(0 <= t <= plan.seconds for t in times)


def test_max_requests_bounds_a_plan() -> None:
    plan = Plan((Stage(60, 1000),), start_rate=1000, max_requests=42)
    assert plan.planned_requests == 42


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600), ("7", 7)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("stages", ["10s", "x:10", "10s:fast", "0s:10", "10s:-1", "5s:0"])
def test_bad_plans_are_refused(stages: str) -> None:
    with pytest.raises(PlanError):
        Plan(tuple(parse_stages(stages)))


def test_thresholds_pass_fail_and_refuse_what_was_not_measured() -> None:
    figures = {
        "latency_p99_ms": 120.0,
        "error_rate": 0.02,
        "ok_requests_per_s": 95.0,
        "sealed_p99_ms": None,
    }
    bounds = {
        "--max-p99": 100.0,
        "--max-error-rate": parse_rate("5%"),
        "--min-rate": 90.0,
        "--max-sealed-p99": 1000.0,
    }
    checks = {c.option: c for c in evaluate(bounds, figures)}
    assert not checks["--max-p99"].passed
    assert checks["--max-error-rate"].passed
    assert checks["--min-rate"].passed
    assert not checks["--max-sealed-p99"].passed
    assert checks["--max-sealed-p99"].actual is None
    assert verdict(list(checks.values()))["passed"] is False
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_rate("150%")


def _result() -> dict[str, object]:
    h = Histogram()
    for v in (900, 1200, 5000, 250_000):
        h.record(v)
    timeline = [
        {"second": 0, "offered": 10, "requests": 10, "ok": 9, "events": 9, "late": 0,
         "errors": {"HTTP 503 ServiceNotAvailable": 1}, "p50_ms": 1.2, "p99_ms": 250.0},
        {"second": 1, "offered": 10, "requests": 10, "ok": 10, "events": 10, "late": 0,
         "errors": {}, "p50_ms": 1.0, "p99_ms": 5.0},
    ]  # fmt: skip
    return {
        "scenario": "single",
        "started_at": "2026-01-01T00:00:00Z",
        "config": {"url": "http://127.0.0.1:1 <x>"},
        "plan": {"mode": "open", "start_rate": 10, "stages": [{"seconds": 2, "target_rate": 10}]},
        "stopped_early": False,
        "duration_s": 2.0,
        "requests": 20,
        "ok": 19,
        "failed": 1,
        "events": 19,
        "errors": {"HTTP 503 ServiceNotAvailable": 1},
        "error_rate": 0.05,
        "ok_requests_per_s": 9.5,
        "events_per_s": 9.5,
        "latency_ms": h.summary_ms(),
        "operations": {"log": {"requests": 20, "failed": 1, "events": 19,
                               "latency_ms": h.summary_ms()}},
        "sealed": None,
        "generator": {"cpu_s": 0.1, "cpu_share": 0.05, "ceiling_requests_per_s": 200,
                      "late_requests": 0, "late_after_ms": 10, "max_lag_ms": 1.0,
                      "warnings": ["a <warning>"]},
        "timeline": timeline,
        "histogram": h.to_json(),
        "thresholds": [{"option": "--max-p99", "bound": 100, "actual": 250.0, "passed": False}],
        "passed": False,
    }  # fmt: skip


def test_the_html_report_is_self_contained_and_escaped() -> None:
    page = html(_result())
    assert page.count("<svg") == 4  # throughput, latency, histogram, errors
    assert "<script" not in page
    # Nothing is fetched: the only URLs are the SVG namespace and the target's, as text.
    urls = set(re.findall(r"https?://[^\s\"'<]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://127.0.0.1:1"}
    assert "a &lt;warning&gt;" in page
    assert "&lt;x&gt;" in page
    assert "FAILED" in page
    assert "HTTP 503 ServiceNotAvailable" in page


def _tally(late: int, waited: int, requests: int = 100) -> Tally:
    t = Tally()
    for i in range(requests):
        t.due(i / 100)
        t.started(i / 100, 0.05 if i < late else 0.001)
        t.record("log", i / 100 + 0.01, 0.01, Outcome(events=1))
    t.waited_for_slot = waited
    return t


def test_late_sends_are_blamed_on_the_service_the_generator_or_the_machine() -> None:
    slow_service = generator_figures(_tally(late=10, waited=10), 64, duration=1, cpu=0.1)
    assert "--max-in-flight" in slow_service["warnings"][0]
    assert slow_service["late_requests"] == 10
    cpu_bound = generator_figures(_tally(late=10, waited=0), 64, duration=1, cpu=0.95)
    assert "CPU-bound" in cpu_bound["warnings"][0]
    assert cpu_bound["ceiling_requests_per_s"] == round(100 / 0.95)
    busy_machine = generator_figures(_tally(late=10, waited=0), 64, duration=1, cpu=0.1)
    assert "other processes" in busy_machine["warnings"][0]
    # A few late sends are noise.
    assert generator_figures(_tally(late=4, waited=0), 64, duration=1, cpu=0.1)["warnings"] == []
