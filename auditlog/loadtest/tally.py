"""What a load test saw, second by second and operation by operation.

Every request is recorded when it completes, successful or not, with its latency measured from
its *intended* send time (the schedule's, in an open loop): if the system under test, a full
connection pool or a busy generator held a request back, that wait is part of what a client
would have seen, and leaving it out is the "coordinated omission" that makes overloaded
systems look fast. How late each request actually started is recorded too (``late``), so the
report can say whether the generator kept to its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from auditlog.loadtest.histogram import Histogram
from auditlog.loadtest.outcome import Outcome

LATE_SECONDS: Final = 0.010  # a send that starts later than this after its due time is late


@dataclass(slots=True)
class Counts:
    """Requests, their events and errors, and the latency of every one of them."""

    requests: int = 0
    ok: int = 0
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)

    def add(self, latency: float, outcome: Outcome) -> None:
        self.requests += 1
        self.latency.record_seconds(latency)
        if outcome.error is None:
            self.ok += 1
            self.events += outcome.events
        else:
            self.errors[outcome.error] = self.errors.get(outcome.error, 0) + 1

    @property
    def failed(self) -> int:
        return self.requests - self.ok


@dataclass(slots=True)
class Tally:
    """The whole run (``total``), each operation, and each second by completion time."""

    total: Counts = field(default_factory=Counts)
    operations: dict[str, Counts] = field(default_factory=dict)
    seconds: list[Counts] = field(default_factory=list)
    offered: list[int] = field(default_factory=list)  # requests due in each second
    late_by_second: list[int] = field(default_factory=list)  # by due second
    late: int = 0
    max_lag: float = 0.0
    in_flight: int = 0
    waited_for_slot: int = 0  # requests that found max_in_flight requests already out

    def due(self, at: float) -> None:
        """A request is due ``at`` seconds into the run (counted whether or not it starts)."""
        second = int(at)
        while len(self.offered) <= second:
            self.offered.append(0)
        self.offered[second] += 1

    def started(self, due_at: float, lag: float) -> None:
        """A request due ``due_at`` seconds into the run started ``lag`` seconds after that."""
        self.in_flight += 1
        if lag > LATE_SECONDS:
            self.late += 1
            second = int(due_at)
            while len(self.late_by_second) <= second:
                self.late_by_second.append(0)
            self.late_by_second[second] += 1
        self.max_lag = max(self.max_lag, lag)

    def record(self, operation: str, completed_at: float, latency: float, outcome: Outcome) -> None:
        """A request of ``operation`` completed ``completed_at`` seconds into the run."""
        self.in_flight -= 1
        self.total.add(latency, outcome)
        self.operations.setdefault(operation, Counts()).add(latency, outcome)
        second = int(completed_at)
        while len(self.seconds) <= second:
            self.seconds.append(Counts())
        self.seconds[second].add(latency, outcome)
