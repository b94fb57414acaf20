"""The two shapes of load, both bounded in time and in count, so a run always stops by itself.

* **Open loop** (the default, and what a service's clients do): requests are due at the times
  :class:`~auditlog.loadtest.pacing.Plan` gives, whatever the answers. Each starts at its due
  time unless ``max_in_flight`` requests are already out, in which case it waits for a slot;
  its latency is measured from the due time either way (:mod:`auditlog.loadtest.tally`).
* **Closed loop** (``--concurrency``): that many clients, each sending its next request when the
  previous one was answered. It finds how much a service takes, not what its clients wait; the
  latency is then the service time of each request.

Each request runs one :class:`Operation`, drawn by weight (a mixed scenario). Ctrl-C stops
sending, as does ``--stop-on-errors`` when the last seconds' error rate passes its bound;
requests already out are awaited and the report is written from what was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from auditlog.loadtest.outcome import Outcome
from auditlog.loadtest.pacing import Plan
from auditlog.loadtest.sealing import SealSampler
from auditlog.loadtest.tally import Tally

# How many due requests are started back to back, without yielding to the event loop, when the
# dispatcher is behind its schedule: enough to catch up, few enough that answers are still read.
_CATCH_UP = 64


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    weight: float
    call: Callable[[bool], Awaitable[Outcome]]  # argument: follow this request's event to its seal
    logs_events: bool


class Picker:
    def __init__(self, operations: Sequence[Operation], rng: random.Random) -> None:
        self.operations = list(operations)
        self.weights = [op.weight for op in self.operations]
        self.rng = rng

    def pick(self) -> Operation:
        if len(self.operations) == 1:
            return self.operations[0]
        return self.rng.choices(self.operations, self.weights)[0]


class Run:
    """One load: operations, the tally, the seal sampler and a stop flag (set by Ctrl-C)."""

    def __init__(self, picker: Picker, sampler: SealSampler | None) -> None:
        self.picker = picker
        self.sampler = sampler
        self.tally = Tally()
        self.began = time.perf_counter()
        self.stopped_early: str | None = None  # why, when the run stopped before its plan
        self.failing = False
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def stop(self, why: str = "interrupted (Ctrl-C)", *, failing: bool = False) -> None:
        """Stop sending; ``failing``: the run fails whatever its thresholds say."""
        if self.stopped_early is None:
            self.stopped_early = why
            self.failing = failing
        self._stop.set()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.stop)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def _one(self, op: Operation, due: float, slots: asyncio.Semaphore | None) -> None:
        if slots is not None:
            if slots.locked():
                self.tally.waited_for_slot += 1
            await slots.acquire()
        try:
            began = time.perf_counter()
            self.tally.started(due - self.began, began - due)
            sample = op.logs_events and self.sampler is not None and self.sampler.should_sample()
            outcome = await op.call(sample)
            ended = time.perf_counter()
        finally:
            if slots is not None:
                slots.release()
        self.tally.record(op.name, ended - self.began, ended - due, outcome)
        if sample and self.sampler is not None and outcome.error is None:
            self.sampler.follow(outcome, ended)

    async def open_loop(self, plan: Plan, max_in_flight: int) -> None:
        slots = asyncio.Semaphore(max_in_flight)
        self.began = time.perf_counter()
        behind = 0
        for offset in plan.due_times():
            if self._stop.is_set():
                break
            due = self.began + offset
            delay = due - time.perf_counter()
            if delay > 0:
                behind = 0
                # A plain sleep: waiting on the stop event with a timeout costs a task per
                # request, and Ctrl-C is seen at the next due time anyway.
                await asyncio.sleep(delay)
                if self._stop.is_set():
                    break
            else:
                behind += 1
                if behind % _CATCH_UP == 0:
                    await asyncio.sleep(0)
            self.tally.due(offset)
            task = asyncio.create_task(self._one(self.picker.pick(), due, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def closed_loop(self, concurrency: int, seconds: float, max_requests: int | None) -> None:
        self.began = time.perf_counter()
        deadline = self.began + seconds
        budget = [max_requests if max_requests is not None else -1]

        async def client() -> None:
            while time.perf_counter() < deadline and not self._stop.is_set() and budget[0] != 0:
                budget[0] -= 1
                now = time.perf_counter()
                self.tally.due(now - self.began)
                await self._one(self.picker.pick(), now, None)

        await asyncio.gather(*(client() for _ in range(concurrency)))
