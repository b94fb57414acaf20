"""Pass/fail limits on a run's figures: what makes ``auditlog loadtest`` exit 1 in CI.

Each limit compares one figure of the result (see :func:`figures`) with a bound given on the
command line; the report lists every limit with its actual value, and the run fails when any
is not met. A figure the run could not measure (no sealed sample, say) fails its limit: a CI job
should not pass on a number that was never taken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Limit:
    option: str  # the command-line option, as the report names it
    figure: str  # the key in figures()
    upper: bool  # True: the figure must not exceed the bound; False: must reach it
    unit: str


LIMITS: Final = (
    Limit("--max-p50", "latency_p50_ms", upper=True, unit="ms"),
    Limit("--max-p99", "latency_p99_ms", upper=True, unit="ms"),
    Limit("--max-error-rate", "error_rate", upper=True, unit=""),
    Limit("--min-rate", "ok_requests_per_s", upper=False, unit="requests/s"),
    Limit("--min-events-rate", "events_per_s", upper=False, unit="events/s"),
    Limit("--max-sealed-p99", "sealed_p99_ms", upper=True, unit="ms"),
)


@dataclass(frozen=True, slots=True)
class Check:
    option: str
    bound: float
    actual: float | None
    passed: bool
    unit: str

    def describe(self) -> str:
        shown = "not measured" if self.actual is None else f"{self.actual:,.4g}"
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.option} {self.bound:g}: {shown} {self.unit} {verdict}".replace("  ", " ")


def parse_rate(text: str) -> float:
    """An error rate as a fraction (``0.01``) or a percentage (``1%``)."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"an error rate is between 0 and 1 (or 0% and 100%), got {text!r}")
    return value


def evaluate(bounds: Mapping[str, float], figures: Mapping[str, float | None]) -> list[Check]:
    """One check per bound given (keyed by option name)."""
    checks = []
    for limit in LIMITS:
        if limit.option not in bounds:
            continue
        bound = bounds[limit.option]
        actual = figures.get(limit.figure)
        if actual is None or math.isnan(actual):
            checks.append(Check(limit.option, bound, None, passed=False, unit=limit.unit))
            continue
        passed = actual <= bound if limit.upper else actual >= bound
        checks.append(Check(limit.option, bound, actual, passed=passed, unit=limit.unit))
    return checks
