"""When each request is due: stages of an open-loop load, and the arrival times they imply.

A load is a list of stages, as in k6's ``ramping-arrival-rate``: each runs for a duration and
moves the request rate linearly from where the previous stage ended (``start_rate`` for the
first) to its own target. ``--rate 100 --duration 30s`` is one flat stage; ``--stages
10s:50,1m:200,10s:0`` ramps up, holds and ramps down.

The n-th request is due when the integral of the rate reaches n, so a ramp's requests are spaced
exactly as its rate says, with no rounding to whole seconds. These due ("intended") times are
what the engine measures latency from: a request that could not start on time still owes the
wait to the system under test or to the generator, and the report says which (late sends).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class PlanError(ValueError):
    """A duration, a stage list or a rate that cannot be a load plan; the message says why."""


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``2m``, ``1h`` or a bare number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise PlanError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 2m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Stage:
    seconds: float
    target: float  # requests/s reached at the end of the stage


def parse_stages(text: str) -> list[Stage]:
    """``DURATION:RATE[,DURATION:RATE…]``, e.g. ``10s:50,1m:200,10s:0``."""
    stages = []
    for part in text.split(","):
        duration, sep, rate = part.partition(":")
        if not sep:
            raise PlanError(f"a stage is DURATION:RATE, got {part!r}")
        try:
            target = float(rate)
        except ValueError:
            raise PlanError(f"not a rate: {rate!r} in stage {part!r}") from None
        stages.append(Stage(parse_duration(duration), target))
    return stages


@dataclass(frozen=True, slots=True)
class Plan:
    """An open-loop load: stages from ``start_rate``, at most ``max_requests`` requests."""

    stages: tuple[Stage, ...]
    start_rate: float = 0.0
    max_requests: int | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise PlanError("a load needs at least one stage")
        for stage in self.stages:
            if stage.seconds <= 0 or not math.isfinite(stage.seconds):
                raise PlanError(f"a stage lasts more than 0 s, got {stage.seconds:g}")
            if stage.target < 0 or not math.isfinite(stage.target):
                raise PlanError(f"a rate is at least 0 requests/s, got {stage.target:g}")
        if self.start_rate < 0:
            raise PlanError("the start rate is at least 0 requests/s")
        if self.max_requests is not None and self.max_requests < 1:
            raise PlanError("--max-requests is at least 1")
        if self.peak_rate == 0:
            raise PlanError("every stage has a rate of 0: nothing would be sent")

    @classmethod
    def constant(cls, rate: float, seconds: float, max_requests: int | None = None) -> Plan:
        return cls((Stage(seconds, rate),), start_rate=rate, max_requests=max_requests)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def peak_rate(self) -> float:
        return max(self.start_rate, *(s.target for s in self.stages))

    @property
    def planned_requests(self) -> int:
        """How many requests the stages ask for, within ``max_requests`` (what
        :meth:`due_times` yields, without walking it: an hour at 10,000/s is 36M times)."""
        arrivals, rate = 0.0, self.start_rate
        for stage in self.stages:
            arrivals += (rate + stage.target) / 2 * stage.seconds
            rate = stage.target
        planned = max(0, math.ceil(arrivals - 1e-9))
        return planned if self.max_requests is None else min(planned, self.max_requests)

    def rate_at(self, t: float) -> float:
        """The planned rate ``t`` seconds into the run (0 after the end)."""
        begin, rate = 0.0, self.start_rate
        for stage in self.stages:
            if t < begin + stage.seconds:
                return rate + (stage.target - rate) * (t - begin) / stage.seconds
            begin, rate = begin + stage.seconds, stage.target
        return 0.0

    def due_times(self) -> Iterator[float]:
        """Seconds from the start at which each request is due, in order."""
        sent = 0
        begin, r0 = 0.0, self.start_rate
        arrivals = 0.0  # integral of the rate up to the start of this stage
        for stage in self.stages:
            r1, length = stage.target, stage.seconds
            stage_total = (r0 + r1) / 2 * length
            a = (r1 - r0) / (2 * length)
            # Request n is due where the integral of the rate since the run began reaches n.
            n = math.ceil(arrivals - 1e-9)
            while n - arrivals < stage_total - 1e-9:
                if self.max_requests is not None and sent >= self.max_requests:
                    return
                m = n - arrivals
                # Solve r0·t + a·t² = m for t (a = 0: a flat stage).
                t = m / r0 if a == 0 else (-r0 + math.sqrt(max(0.0, r0 * r0 + 4 * a * m))) / (2 * a)
                yield begin + min(t, length)
                sent += 1
                n += 1
            arrivals += stage_total
            begin, r0 = begin + length, r1
