"""Token buckets per token and tenant (auditlog/web/ratelimit.py), on a clock driven by hand."""

from __future__ import annotations

import pytest

from auditlog.runtime.settings import Env, SettingsError
from auditlog.web.ratelimit import Limits, Rate, RateLimiter, RateSettings, Refusal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(per_second: float, burst: float, max_buckets: int = 100) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(Rate(per_second, burst), max_buckets=max_buckets, clock=clock), clock


def test_a_new_bucket_admits_its_burst_then_refills_at_the_rate() -> None:
    bucket, clock = limiter(10, 20)
    for _ in range(20):
        assert bucket.wait("a", 1) == 0.0
        bucket.take("a", 1)
    assert bucket.wait("a", 1) == pytest.approx(0.1)
    assert bucket.wait("a", 5) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.wait("a", 5) == 0.0
    assert bucket.wait("a", 6) == pytest.approx(0.1)
    # Refilling stops at the burst, however long the bucket was idle.
    clock.advance(3600)
    bucket.take("a", 20)
    assert bucket.wait("a", 1) == pytest.approx(0.1)


def test_buckets_are_per_key() -> None:
    bucket, _ = limiter(1, 2)
    bucket.take("a", 2)
    assert bucket.wait("a", 1) > 0
    assert bucket.wait("b", 2) == 0.0


def test_a_cost_above_the_burst_passes_a_full_bucket_and_leaves_a_debt() -> None:
    bucket, clock = limiter(100, 500)
    # 1,000 events against a burst of 500: admitted when the bucket is full…
    assert bucket.wait("a", 1000) == 0.0
    bucket.take("a", 1000)
    # …and the debt of 500 units must be earned back (5 s) before anything passes, then 5 s
    # more before the next 1,000 (capped at the burst, 500 units).
    assert bucket.wait("a", 1) == pytest.approx(5.01)
    assert bucket.wait("a", 1000) == pytest.approx(10.0)
    clock.advance(10)
    assert bucket.wait("a", 1000) == 0.0


def test_rate_zero_limits_nothing_and_keeps_no_buckets() -> None:
    bucket, _ = limiter(0, 0)
    for _ in range(1000):
        assert bucket.wait("a", 10**9) == 0.0
        bucket.take("a", 10**9)
    assert len(bucket) == 0


def test_at_most_max_buckets_are_kept_and_the_least_recently_used_goes() -> None:
    bucket, _ = limiter(1, 5, max_buckets=2)
    bucket.take("a", 5)
    bucket.take("b", 5)
    bucket.take("a", 0)  # a is used again: b is now the oldest
    bucket.take("c", 5)
    assert len(bucket) == 2
    assert bucket.wait("a", 1) > 0  # kept, still empty
    assert bucket.wait("c", 1) > 0
    assert bucket.wait("b", 5) == 0.0  # forgotten: full again


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="negative"):
        Rate(-1, 10)
    with pytest.raises(ValueError, match="burst"):
        Rate(10, 0)
    with pytest.raises(ValueError, match="max_buckets"):
        RateLimiter(Rate(1, 1), max_buckets=0)


def limits(token: Rate, tenant: Rate) -> tuple[Limits, Clock]:
    clock = Clock()
    return Limits(token, tenant, clock=clock), clock


def test_a_refusal_names_the_limit_and_rounds_the_wait_up_to_whole_seconds() -> None:
    lim, clock = limits(Rate(10, 10), Rate(1000, 1000))
    assert lim.admit("tok", None, 10) is None
    assert lim.admit("tok", None, 1) == Refusal("token", 1)  # 0.1 s: at least 1
    assert lim.admit("tok", None, 10) == Refusal("token", 1)
    assert lim.check("tok", None, 10) == Refusal("token", 1)
    clock.advance(0.5)
    assert lim.admit("tok", None, 10) == Refusal("token", 1)  # 0.5 s more
    clock.advance(0.5)
    assert lim.admit("tok", None, 10) is None
    slow, _ = limits(Rate(1, 25), Rate(0, 0))
    assert slow.admit("tok", None, 25) is None
    assert slow.admit("tok", None, 20) == Refusal("token", 20)


def test_a_tenant_shares_one_budget_among_its_tokens() -> None:
    lim, clock = limits(Rate(100, 100), Rate(10, 10))
    assert lim.admit("t1", "acme", 6) is None
    refusal = lim.admit("t2", "acme", 6)
    assert refusal == Refusal("tenant", 1)
    # Another tenant, and tokens without one, are not held up by acme.
    assert lim.admit("t3", "other", 10) is None
    assert lim.admit("t4", None, 100) is None
    clock.advance(0.2)
    assert lim.admit("t2", "acme", 6) is None


def test_a_refused_request_is_charged_nowhere() -> None:
    lim, _ = limits(Rate(10, 10), Rate(10, 10))
    assert lim.admit("busy", "acme", 10) is None  # acme's bucket is now empty
    # t2 is refused by its tenant: its own bucket stays full…
    assert lim.admit("t2", "acme", 10) == Refusal("tenant", 1)
    assert lim.admit("t2", None, 10) is None
    # …and a token refused by its own bucket does not drain its tenant's.
    lim2, _ = limits(Rate(10, 10), Rate(100, 100))
    assert lim2.admit("t1", "acme", 10) is None
    assert lim2.admit("t1", "acme", 10) == Refusal("token", 1)
    assert lim2.admit("t1", "acme", 10) == Refusal("token", 1)
    assert lim2.tenants.wait("acme", 90) == 0.0
    # check() never charges.
    for _ in range(100):
        assert lim2.check("t9", "acme", 10) is None
    assert lim2.tokens.wait("t9", 10) == 0.0


def test_unlimited_limits_admit_everything() -> None:
    lim = Limits.unlimited()
    for _ in range(100):
        assert lim.admit("tok", "acme", 10**6) is None


def test_settings_default_the_burst_to_two_seconds_and_zero_disables() -> None:
    env = Env({})
    assert RateSettings.from_env(env, "QUERY", 500) == RateSettings(500, 1000, 500, 1000)
    assert RateSettings.defaults(7) == RateSettings(7, 14, 7, 14)
    env = Env(
        {
            "AUDITLOG_INGEST_RATE_PER_TOKEN": "10",
            "AUDITLOG_INGEST_BURST_PER_TOKEN": "1000",
            "AUDITLOG_INGEST_RATE_PER_TENANT": "0",
        }
    )
    settings = RateSettings.from_env(env, "INGEST", 500)
    assert settings == RateSettings(10, 1000, 0, 0)
    lim = Limits.of(settings)
    assert lim.tokens.rate == Rate(10, 1000)
    assert not lim.tenants.rate.limited
    with pytest.raises(SettingsError, match="AUDITLOG_INGEST_BURST_PER_TOKEN"):
        RateSettings.from_env(Env({"AUDITLOG_INGEST_BURST_PER_TOKEN": "0"}), "INGEST", 5)
    with pytest.raises(SettingsError, match="AUDITLOG_QUERY_RATE_PER_TENANT"):
        RateSettings.from_env(Env({"AUDITLOG_QUERY_RATE_PER_TENANT": "-1"}), "QUERY", 5)
