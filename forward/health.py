"""The forwarder's metrics, health and readiness, for its metrics listener.

Per destination and log: the lag (entries of the log not yet acknowledged) and the last time
the cursor moved or had nothing to move past (``progress``): a destination whose progress
stands still while the lag is positive is stuck (deploy/prometheus's
``AuditlogForwardDestinationStuck``). Per destination: events delivered, filtered out,
rejected (dead-lettered) and delivery attempts retried, and whether it is paused.

Healthy while every destination's loop has gone round in the last ``LOOP_STALL_SECONDS`` (a
destination retrying is still going round); ready once each has gone round once. A destination
that is down does not make the forwarder unready: another process would fare no better.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

from auditlog.runtime.listener import Verdict

LAG = Gauge(
    "auditlog_forward_lag_events",
    "Entries of the log the destination has not yet acknowledged",
    ["destination", "log"],
)
PROGRESS = Gauge(
    "auditlog_forward_progress_timestamp_seconds",
    "Unix time the destination's cursor in the log last moved or was caught up",
    ["destination", "log"],
)
DELIVERED = Counter(
    "auditlog_forward_delivered_events", "Events the destination acknowledged", ["destination"]
)
FILTERED = Counter(
    "auditlog_forward_filtered_events",
    "Events passed over by the destination's filters",
    ["destination"],
)
REJECTED = Counter(
    "auditlog_forward_rejected_events",
    "Events the destination refused for good (dead letters)",
    ["destination"],
)
RETRIED = Counter(
    "auditlog_forward_retries", "Delivery attempts that failed and were retried", ["destination"]
)
PAUSED = Gauge("auditlog_forward_paused", "1 while the destination is paused", ["destination"])
BATCH_SECONDS = Histogram(
    "auditlog_forward_batch_seconds",
    "Time to deliver one batch, retries included",
    ["destination"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

LOOP_STALL_SECONDS = 120.0


class ForwardHealth:
    """Heartbeats of the destinations' loops, read by the listener's thread."""

    def __init__(
        self, destinations: Iterable[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self._beats: dict[str, float | None] = dict.fromkeys(destinations)
        self.stopping = False

    def beat(self, destination: str) -> None:
        self._beats[destination] = self.clock()

    def healthz(self) -> Verdict:
        now = self.clock()
        silent = sorted(
            name
            for name, beat in self._beats.items()
            if beat is not None and now - beat > LOOP_STALL_SECONDS
        )
        if silent and not self.stopping:
            return Verdict(False, f"no round for {LOOP_STALL_SECONDS:g} s: {', '.join(silent)}")
        return Verdict(True, "alive")

    def readyz(self) -> Verdict:
        if self.stopping:
            return Verdict(False, "stopping")
        waiting = sorted(name for name, beat in self._beats.items() if beat is None)
        if waiting:
            return Verdict(False, f"starting: {', '.join(waiting)}")
        return Verdict(True, f"ready: {len(self._beats)} destinations")
