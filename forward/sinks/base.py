"""What every destination is to the forwarder, and the two ways a delivery fails.

A sink's :meth:`Sink.deliver` returns only once the destination acknowledged the whole batch
(what counts as acknowledged is each kind's own: an HTTP 2xx, a HEC ack, a TCP ack of every
byte, a file fsynced); only then does the forwarder advance its cursor. It raises
:class:`DeliveryError` for what may pass (the destination down, slow, overloaded or refusing
our credentials: retried with backoff, forever) and :class:`Rejected` when the destination
refused the batch's contents for good (the forwarder then halves the batch until it finds the
events at fault, and dead-letters those alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from forward.records import Record


class DeliveryError(Exception):
    """The batch was not acknowledged and may be tomorrow: retry it."""


class Rejected(Exception):  # noqa: N818 - a verdict, like the core's error tree
    """The destination refused the batch's contents for good (its reason is the message)."""


class Sink(Protocol):
    """One destination; used by one task at a time."""

    # Seconds one delivery attempt may take, acknowledgement included; past it the attempt
    # counts as failed and is retried.
    deadline: float

    async def deliver(self, records: Sequence[Record]) -> None:
        """Deliver ``records`` (one log's, in index order) and wait for the acknowledgement."""

    async def close(self) -> None:
        """Release connections and files; delivered data stays delivered."""
