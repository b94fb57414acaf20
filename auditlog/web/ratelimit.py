"""Rate limits per API token and per tenant: token buckets in process memory.

Each bucket holds up to ``burst`` units and refills at ``per_second`` units a second; a request
costs units (ingest: one per event it carries; query: a weight per endpoint, see the services).
A request is admitted when its bucket holds at least its cost, and then the cost is taken. A
request costing more than the whole burst is admitted from a full bucket and leaves it in
debt, so that the next requests wait as long as the cost took to earn: no request is refused
for ever, and none gets more than the rate over time.

:class:`Limits` keeps two kinds of bucket: one per token and one per tenant (for tokens bound
to a tenant, so a tenant's many tokens share one budget). A request is charged to both only
when both admit it; the refusal names which one refused and how long until it would admit the
request, which the HTTP layer sends as ``Retry-After``.

The buckets live in this process's memory: every service process limits on its own, so the
effective limit of a deployment is the setting times the number of processes a client's
requests are spread over. At most ``max_buckets`` buckets of each kind are kept; the least
recently used one is forgotten first (a forgotten bucket comes back full, which only ever
favours a client that has been idle the longest).

Nothing here reads a clock but through ``clock`` (monotonic seconds) and nothing does I/O, so the
unit tests drive time by hand.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from auditlog.runtime.settings import Env

__all__ = ["DEFAULT_MAX_BUCKETS", "Limits", "Rate", "RateLimiter", "RateSettings", "Refusal"]

DEFAULT_MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` units refilled a second, ``burst`` at most saved up; 0 a second: no limit."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second < 0 or self.burst < 0:
            raise ValueError("a rate and its burst cannot be negative")
        if self.per_second > 0 and self.burst <= 0:
            raise ValueError("a limited rate needs a positive burst")

    @property
    def limited(self) -> bool:
        return self.per_second > 0


UNLIMITED = Rate(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which limit refused (``token`` or ``tenant``) and the whole seconds to wait (at least 1)."""

    scope: str
    retry_after: int


class RateLimiter:
    """Token buckets keyed by a string, at most ``max_buckets`` of them (least recently used go)."""

    def __init__(
        self,
        rate: Rate,
        *,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be positive")
        self.rate = rate
        self._max = max_buckets
        self._clock = clock
        # key -> (units in the bucket, when that was so); units below 0 are debt.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.rate.burst
        units, at = bucket
        return min(self.rate.burst, units + max(0.0, now - at) * self.rate.per_second)

    def wait(self, key: str, cost: float) -> float:
        """Seconds until ``key``'s bucket admits ``cost`` (0.0: now); takes nothing."""
        if not self.rate.limited:
            return 0.0
        needed = min(cost, self.rate.burst)
        level = self._level(key, self._clock())
        if level >= needed:
            return 0.0
        return (needed - level) / self.rate.per_second

    def take(self, key: str, cost: float) -> None:
        """Charge ``cost`` to ``key``'s bucket, admitted or not (it may go into debt)."""
        if not self.rate.limited:
            return
        now = self._clock()
        self._buckets[key] = (self._level(key, now) - cost, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


class Limits:
    """The per-token and per-tenant limits of one service process."""

    def __init__(
        self,
        per_token: Rate,
        per_tenant: Rate = UNLIMITED,
        *,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = RateLimiter(per_token, max_buckets=max_buckets, clock=clock)
        self.tenants = RateLimiter(per_tenant, max_buckets=max_buckets, clock=clock)

    @classmethod
    def unlimited(cls) -> Limits:
        return cls(UNLIMITED, UNLIMITED)

    @classmethod
    def of(cls, settings: RateSettings) -> Limits:
        return cls(
            Rate(settings.token_rate, settings.token_burst),
            Rate(settings.tenant_rate, settings.tenant_burst),
        )

    def check(self, token_id: str, tenant_id: str | None, cost: float) -> Refusal | None:
        """Would a request of ``cost`` be admitted now? Charges nothing."""
        waits = [("token", self.tokens.wait(token_id, cost))]
        if tenant_id is not None:
            waits.append(("tenant", self.tenants.wait(tenant_id, cost)))
        scope, wait = max(waits, key=lambda w: w[1])
        if wait <= 0:
            return None
        return Refusal(scope, max(1, math.ceil(wait)))

    def admit(self, token_id: str, tenant_id: str | None, cost: float) -> Refusal | None:
        """Admit and charge a request of ``cost``, or say why not (then nothing is charged)."""
        refusal = self.check(token_id, tenant_id, cost)
        if refusal is None:
            self.tokens.take(token_id, cost)
            if tenant_id is not None:
                self.tenants.take(tenant_id, cost)
        return refusal


@dataclass(frozen=True, slots=True)
class RateSettings:
    """A service's limits: units a second per token and per tenant (0: no limit), and bursts."""

    token_rate: int
    token_burst: int
    tenant_rate: int
    tenant_burst: int

    @classmethod
    def defaults(cls, rate: int) -> RateSettings:
        return cls(rate, 2 * rate, rate, 2 * rate)

    @classmethod
    def from_env(cls, env: Env, service: str, default: int) -> RateSettings:
        """``AUDITLOG_<service>_RATE_PER_TOKEN`` and ``_RATE_PER_TENANT`` (0: no limit), each
        with a burst (``_BURST_PER_TOKEN``, ``_BURST_PER_TENANT``) of two seconds' worth unless
        set."""
        values: list[int] = []
        for who in ("TOKEN", "TENANT"):
            rate = env.integer(f"{service}_RATE_PER_{who}", default, minimum=0)
            burst = env.integer(f"{service}_BURST_PER_{who}", 2 * rate, minimum=1 if rate else 0)
            values += (rate, burst)
        return cls(*values)
