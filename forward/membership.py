"""How several forwarder processes share the work: each (destination, log) pair has one process
it belongs to, worked out alike by every process from the list of those alive.

Every process renews its row of ``forward_workers`` a few times per lease; the processes seen
within the last lease, sorted, are the members. The pair of log position ``p`` (in partition
order) and destination ``d`` belongs to member ``(p + crc32(d)) mod n``: the logs of one
destination spread over the members, and destinations start at different members. A process
delivers only its own pairs and lets go of the others, so when a member comes or goes the pairs
move within a lease. The cursor leases keep this safe while members disagree for a moment
(two processes never deliver one pair at once); every process must read the same destinations.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import asyncpg
import structlog

from auditlog.runtime.eventloop import pause
from forward import cursors

log = structlog.get_logger("forward")


def belongs_to(members: list[str], destination: str, position: int) -> str:
    return members[(position + zlib.crc32(destination.encode())) % len(members)]


class Membership:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.members = [owner]

    def mine(self, destination: str, position: int) -> bool:
        return belongs_to(self.members, destination, position) == self.owner

    async def keep(self, pool: asyncpg.Pool, lease: float, stopping: asyncio.Event) -> None:
        """Renew this process's row until ``stopping``, then remove it."""
        while not stopping.is_set():
            try:
                members = await cursors.heartbeat(pool, self.owner, lease)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("heartbeat_failed", error=repr(exc))
            else:
                if self.owner not in members:
                    members = sorted([*members, self.owner])
                if members != self.members:
                    log.info("members", members=members)
                self.members = members
            await pause(stopping, lease / 3)
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await cursors.leave(pool, self.owner)
