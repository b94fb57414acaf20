"""Injected crashes, a testing aid: ``AUDITLOG_SEALER_FAULT=<step>:<nth>`` kills the sealer
(``os._exit``, as a kill -9 would: no cleanup, no shutdown, the open transaction lost) the
``nth`` time it reaches ``step`` of a seal. Off unless the variable is set; the crash drills
(tests/integration/test_sealer_faults.py) use it to show that a crash at each step of the seal
either sealed the whole batch or nothing of it.

The steps, in the order a seal reaches them (sealer/worker.py, then sealer/store.py):

* ``dead-letters-sent``: the batch's dead letters are acknowledged by Kafka, no transaction yet;
* ``events-copied``: the event rows are written (``COPY``) in the open transaction;
* ``tiles-written``: with witnesses only, the tiles and bundles are written, the checkpoint not;
* ``before-commit``: tiles, bundles, checkpoint and head are written, ``COMMIT`` not sent;
* ``committed``: the transaction is committed, the offset not yet committed to Kafka.

Disabled, a fault point costs one module attribute read and a comparison with None.
"""

from __future__ import annotations

import os
from typing import Final, NamedTuple

STEPS: Final = ("dead-letters-sent", "events-copied", "tiles-written", "before-commit", "committed")
EXIT_CODE: Final = 86  # what a sealer killed by its fault exits with


class Fault(NamedTuple):
    step: str
    nth: int  # crash the nth time the step is reached (from 1)


def parse(text: str) -> Fault:
    """``<step>:<nth>`` (``:<nth>`` may be left out: the first time); ValueError when bad."""
    step, _, nth = text.strip().partition(":")
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    count = int(nth) if nth else 1
    if count < 1:
        raise ValueError(f"the count must be at least 1, got {count}")
    return Fault(step, count)


class _Armed:
    """The armed fault of this process, and how often its step was reached so far."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.reached = 0

    def reach(self, step: str) -> None:
        if step != self.fault.step:
            return
        self.reached += 1
        if self.reached >= self.fault.nth:
            # Straight to the file descriptor: os._exit flushes no Python buffer.
            os.write(2, f'{{"event": "fault_injected", "step": "{step}"}}\n'.encode())
            os._exit(EXIT_CODE)


# None in production: each fault point is `if faults.armed is not None: faults.armed.reach(...)`.
armed: _Armed | None = None


def arm(fault: Fault | None) -> None:
    """Arm ``fault`` for this process (sealer/main.py, from the settings); None disarms."""
    global armed  # noqa: PLW0603 - one process-wide switch, read at each fault point
    armed = None if fault is None else _Armed(fault)
