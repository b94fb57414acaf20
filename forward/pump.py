"""One destination's loop: follow every log of the topic in index order, deliver, advance.

Each round visits every log once: claim (or renew) the cursor, read up to ``batch_size`` sealed
entries from it, drop those the filters pass over, deliver the rest and wait for the
acknowledgement, then advance the cursor past the whole batch (and record the dead letters)
in one transaction. A delivery that fails is retried, the same batch, with exponential backoff
and jitter, for as long as it takes: nothing behind it in the log goes first. A batch the
destination refuses for good is halved until the refused events are alone; those become dead
letters and the rest goes on. A paused destination reads nothing; its events wait in
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence

import asyncpg
import structlog

from auditlog.runtime.eventloop import pause
from forward import cursors
from forward.config import Destination
from forward.cursors import Claim
from forward.health import (
    BATCH_SECONDS,
    DELIVERED,
    FILTERED,
    LAG,
    PAUSED,
    PROGRESS,
    REJECTED,
    RETRIED,
    ForwardHealth,
)
from forward.membership import Membership
from forward.receipts import with_receipts
from forward.records import Record, read_batch
from forward.settings import Settings
from forward.sinks.base import DeliveryError, Rejected, Sink

log = structlog.get_logger("forward")

Dead = list[tuple[Record, str]]


class _LostClaim(Exception):  # noqa: N818 - control flow: the cursor is no longer ours
    pass


class Pump:
    def __init__(
        self,
        destination: Destination,
        sink: Sink,
        pool: asyncpg.Pool,
        settings: Settings,
        owner: str,
        stopping: asyncio.Event,
        health: ForwardHealth,
        membership: Membership,
    ) -> None:
        self.destination = destination
        self.name = destination.name
        self.sink = sink
        self.pool = pool
        self.settings = settings
        self.owner = owner
        self.stopping = stopping
        self.health = health
        self.membership = membership
        self.claims: dict[str, tuple[Claim, float]] = {}  # log -> (claim, renew after)

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                worked = await self.round()
                self.health.beat(self.name)
                if not worked:
                    await pause(self.stopping, self.settings.poll_interval)
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await cursors.release(self.pool, self.name, self.owner)
            await self.sink.close()

    async def round(self) -> bool:
        """One visit of every log; True when something was delivered or passed over."""
        try:
            paused = await cursors.paused(self.pool, self.name)
            if paused is None:
                # Forgotten while still configured here: it starts again, as new.
                log.warning("destination_forgotten", destination=self.name)
                await cursors.register(self.pool, [self.destination])
                self.claims.clear()
                return False
            if paused:
                PAUSED.labels(self.name).set(1)
                return False
            PAUSED.labels(self.name).set(0)
            worked = False
            for position, (log_id, size) in enumerate(
                await cursors.logs(self.pool, self.settings.topic)
            ):
                if self.stopping.is_set():
                    break
                if not self.membership.mine(self.name, position):
                    await self._let_go(log_id)
                    continue
                worked |= await self._visit(log_id, size)
                self.health.beat(self.name)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # PostgreSQL away: nothing moves, nothing is lost; look again next round.
            log.warning("database_unavailable", destination=self.name, error=repr(exc))
            return False
        return worked

    async def _let_go(self, log_id: str) -> None:
        """Another member's pair: release the cursor if we held it, report it no more."""
        if self.claims.pop(log_id, None) is not None:
            await cursors.release(self.pool, self.name, self.owner, log_id)
            log.info("handed_over", destination=self.name, log=log_id)
        self._forget(log_id)

    def _forget(self, log_id: str) -> None:
        for gauge in (LAG, PROGRESS):
            with contextlib.suppress(KeyError):
                gauge.remove(self.name, log_id)

    async def _claim(self, log_id: str) -> Claim | None:
        held = self.claims.get(log_id)
        if held is not None and time.monotonic() < held[1]:
            return held[0]
        claim = await cursors.claim(
            self.pool, self.destination, log_id, self.owner, self.settings.lease
        )
        if claim is None:
            self.claims.pop(log_id, None)
            self._forget(log_id)  # another process reports this one
            return None
        self._hold(claim)
        return claim

    def _hold(self, claim: Claim) -> None:
        # Renewed well inside the lease, so a busy or retrying forwarder never loses it.
        self.claims[claim.log_id] = (claim, time.monotonic() + self.settings.lease / 3)

    async def _visit(self, log_id: str, size: int) -> bool:
        claim = await self._claim(log_id)
        if claim is None:
            return False
        LAG.labels(self.name, log_id).set(max(0, size - claim.next_idx))
        if claim.next_idx >= size:
            PROGRESS.labels(self.name, log_id).set(time.time())
            return False
        records, size = await read_batch(
            self.pool, log_id, claim.next_idx, self.destination.batch_size
        )
        if not records:
            if size > claim.next_idx:
                # Every entry from the cursor to the head is gone (retention, told to drop
                # them): nothing to deliver, and nothing to wait for.
                log.warning("entries_gone", destination=self.name, log=log_id,
                            first=claim.next_idx, size=size)  # fmt: skip
                moved = await cursors.advance(
                    self.pool, self.name, claim, self.owner, self.settings.lease, size
                )
                if moved is not None:
                    self._hold(moved)
            return False
        admitted = [r for r in records if self.destination.filter.admits(r)]
        if self.destination.receipts:
            admitted = await with_receipts(self.pool, log_id, admitted)
        started = time.perf_counter()
        try:
            dead = await self._deliver(claim, admitted)
        except _LostClaim:
            self.claims.pop(log_id, None)
            return False
        if dead is None:
            return False  # stopping: the batch goes again after a restart
        held = self.claims.get(log_id, (claim, 0.0))[0]
        after = records[-1].index + 1
        moved = await cursors.advance(
            self.pool, self.name, held, self.owner, self.settings.lease, after, dead
        )
        if moved is None:
            log.info("cursor_moved_elsewhere", destination=self.name, log=log_id)
            self.claims.pop(log_id, None)
            return False
        self._hold(moved)
        elapsed = time.perf_counter() - started
        delivered = len(admitted) - len(dead)
        DELIVERED.labels(self.name).inc(delivered)
        FILTERED.labels(self.name).inc(len(records) - len(admitted))
        REJECTED.labels(self.name).inc(len(dead))
        BATCH_SECONDS.labels(self.name).observe(elapsed)
        LAG.labels(self.name, log_id).set(max(0, size - after))
        PROGRESS.labels(self.name, log_id).set(time.time())
        log.info(
            "delivered",
            destination=self.name,
            log=log_id,
            first=records[0].index,
            last=records[-1].index,
            delivered=delivered,
            filtered=len(records) - len(admitted),
            rejected=len(dead),
            ms=round(elapsed * 1000, 3),
        )
        return True

    async def _deliver(self, claim: Claim, records: Sequence[Record]) -> Dead | None:
        """Deliver until acknowledged; the refused events with their reasons, or None when the
        forwarder stops first. Raises :class:`_LostClaim` when the cursor is no longer ours."""
        if not records:
            return []
        failures = 0
        while True:
            try:
                async with asyncio.timeout(self.sink.deadline):
                    await self.sink.deliver(records)
            except Rejected as exc:
                if len(records) == 1:
                    record = records[0]
                    log.warning(
                        "rejected",
                        destination=self.name,
                        log=record.log_id,
                        index=record.index,
                        hash=record.hash_hex,
                        reason=str(exc),
                    )
                    return [(record, str(exc))]
                half = len(records) // 2
                first = await self._deliver(claim, records[:half])
                rest = None if first is None else await self._deliver(claim, records[half:])
                return None if first is None or rest is None else first + rest
            except (DeliveryError, TimeoutError) as exc:
                failures += 1
                RETRIED.labels(self.name).inc()
                delay = self._backoff(failures)
                log.warning(
                    "delivery_failed",
                    destination=self.name,
                    log=claim.log_id,
                    first=records[0].index,
                    events=len(records),
                    attempt=failures,
                    retry_in=round(delay, 3),
                    error=str(exc) or type(exc).__name__,
                )
                self.health.beat(self.name)
                if await pause(self.stopping, delay):
                    return None
                await self._renew(claim)
            else:
                return []

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.settings.retry_max, self.settings.retry_min * 2 ** (failures - 1))
        return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret

    async def _renew(self, claim: Claim) -> None:
        """Keep the lease through a long outage; give up when the cursor was taken or moved."""
        held = self.claims.get(claim.log_id)
        if held is not None and time.monotonic() < held[1]:
            return
        try:
            renewed = await cursors.claim(
                self.pool, self.destination, claim.log_id, self.owner, self.settings.lease
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # the database is away too: keep trying the destination
        if renewed != claim:
            raise _LostClaim
        self._hold(renewed)
