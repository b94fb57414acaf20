"""The sealer's PostgreSQL side: log heads, and one transaction per sealed batch.

Fencing: a sealer holds the head it loaded (size, root, next offset). Sealing locks the log row,
checks that the stored head is still that one, and only then writes; a sealer whose partition
moved to another worker finds a head it did not write and gets :class:`Fenced`, so two sealers
can never publish disagreeing checkpoints for one log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

import asyncpg
import structlog

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.errors import AuditLogError
from auditlog.core.hashing import LogHasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.log_keys import checkpoint_signers
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.policy import Policy
from auditlog.core.proof import consistency_proof, consistency_tiles
from auditlog.core.tiles import TILE_WIDTH, TileID, encode_bundle
from auditlog.kafka.clients import log_id as make_log_id
from auditlog.pg import db
from auditlog.pg.db import fetch_tiles
from auditlog.pg.search_blocks import copy_blocks
from auditlog.verify.witness_client import Witness, cosign_checkpoint
from sealer import faults, timestamps
from sealer.claims import Conflict, claim
from sealer.partitions import Partitions, partition_name
from sealer.records import Sealable
from sealer.rows import EVENT_COLUMNS, block_rows, prepared

# Partitions and partition_name live in sealer/partitions.py; named here too, where tests and
# benchmarks have always found them.
__all__ = [
    "DEFAULT_IDEMPOTENCY_WINDOW", "Conflict", "Fenced", "LogHead", "NotWitnessed", "OnConflict",
    "Partitions", "SealResult", "Witnessing", "connect_pool", "forget_expired_keys", "load_head",
    "partition_name", "seal", "sign_checkpoint",
]  # fmt: skip

DEFAULT_IDEMPOTENCY_WINDOW = timedelta(hours=24)

log = structlog.get_logger("sealer")


class NotWitnessed(AuditLogError):  # noqa: N818 - reads as a verdict, like the core tree
    """The witnesses' quorum did not cosign the batch's checkpoint: nothing was sealed."""

    retriable = True


@dataclass(slots=True)
class Witnessing:
    """Cosigning before publication: the policy, and per log the witnesses' known sizes."""

    policy: Policy
    timeout: float = 1.0
    _witnesses: dict[str, list[Witness]] = field(default_factory=dict)

    def witnesses(self, log_id: str) -> list[Witness]:
        if log_id not in self._witnesses:
            self._witnesses[log_id] = [
                Witness(name, url) for name, url in sorted(self.policy.witness_urls.items())
            ]
        return self._witnesses[log_id]


class Fenced(AuditLogError):  # noqa: N818 - reads as a verdict, like the core tree
    """The log head changed under this sealer: another worker owns the partition now."""


@dataclass(frozen=True, slots=True)
class LogHead:
    log_id: str
    origin: str
    hash_scheme: str
    size: int
    root: bytes
    next_offset: int
    # The right-edge tiles at ``size``, as this sealer's last seal wrote them; None when the
    # head was loaded from the database. Only the head a seal returns carries them: it is
    # what the fencing check compares with the stored head before they are used.
    edge: Mapping[TileID, bytes] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SealResult:
    head: LogHead
    checkpoint: str | None  # None when nothing was appended (dead letters or duplicates only)
    duplicates: int = 0  # records skipped: their idempotency key sealed the same event already
    # Records whose idempotency key sealed another event: not appended, dead letters.
    conflicts: tuple[Conflict, ...] = ()


# Dead-letters a seal's conflicts; awaited inside the seal's transaction, before it commits.
OnConflict = Callable[[Sequence[Conflict]], Awaitable[None]]


async def connect_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections :func:`seal` can use: it sends received times as integers,
    which needs their ``timestamptz`` codec (sealer/timestamps.py). The sealer changes no
    session state (its one setting is ``SET LOCAL``), so connections come back without a reset
    query: one round trip less per seal."""
    return await db.connect_pool(
        url, max_size=max_size, init=timestamps.register, reset_session=False
    )


# A log's birth: its row and, in the same statement, its signed checkpoint of size 0.
# $1 log id, $2 origin, $3 topic, $4 partition, $5 hash scheme, $6 the empty root, $7 the note.
_CREATE_LOG = (
    "WITH created AS (INSERT INTO logs"
    " (log_id, origin, topic, kafka_partition, hash_scheme, root, checkpoint)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (log_id) DO NOTHING RETURNING log_id)"
    " INSERT INTO checkpoints (log_id, size, root, note) SELECT log_id, 0, $6, $7 FROM created"
)


def sign_checkpoint(signer: NoteSigner, checkpoint: Checkpoint, *, legacy_name: bool) -> str:
    """The signed note of ``checkpoint``: under the log's origin as key name (docs/verification.md,
    the key-name rule), and with ``legacy_name`` under the signing key's own name too, for
    verifiers that still pin the deployment-wide name (a key-name rotation's overlap)."""
    signers = checkpoint_signers(signer, checkpoint.origin, legacy_name=legacy_name)
    return sign_note(checkpoint.to_text(), signers)


async def load_head(
    pool: asyncpg.Pool,
    topic: str,
    partition: int,
    origin_base: str,
    hasher: LogHasher,
    *,
    signer: NoteSigner | None = None,
    witnessing: Witnessing | None = None,
    legacy_name: bool = True,
) -> LogHead:
    """The stored head of a partition's log, creating the log on first sight.

    A log is born with a signed checkpoint of size 0 and the empty tree's root (as Tessera's
    logs are), published as its head and kept in its checkpoint history: an audit of a log that
    nothing was sealed in yet then verifies what it signed instead of finding no checkpoint. It
    is signed only at birth, never for a log found empty later. With ``witnessing`` it is
    published only once the witnesses' quorum cosigned it, like every checkpoint; without the
    quorum (or without ``signer``: some tests and benchmarks) the log is born without one, and
    its first seal publishes its first checkpoint.
    """
    log_id = make_log_id(topic, partition)
    origin = f"{origin_base}/{topic}/{partition}"
    root = hasher.empty_root()
    note = None
    if signer is not None:
        note = sign_checkpoint(signer, Checkpoint(origin, 0, root), legacy_name=legacy_name)
        if witnessing is not None:
            note = await _witnessed_birth(pool, log_id, note, witnessing)
    if note is None:
        await pool.execute(
            "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, root)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (log_id) DO NOTHING",
            log_id, origin, topic, partition, hasher.name, root,
        )  # fmt: skip
    else:
        await pool.execute(_CREATE_LOG, log_id, origin, topic, partition, hasher.name, root, note)
    row = await pool.fetchrow(
        "SELECT origin, hash_scheme, size, root, next_offset FROM logs WHERE log_id = $1", log_id
    )
    assert row is not None
    if row["hash_scheme"] != hasher.name:
        raise AuditLogError(
            f"log {log_id} uses {row['hash_scheme']}, this sealer is configured for {hasher.name}"
        )
    return LogHead(
        log_id,
        row["origin"],
        row["hash_scheme"],
        row["size"],
        bytes(row["root"]),
        row["next_offset"],
    )


async def _witnessed_birth(
    pool: asyncpg.Pool, log_id: str, note: str, witnessing: Witnessing
) -> str | None:
    """The birth checkpoint cosigned by the witnesses' quorum; None when the log exists already
    (only a new log is shown to them at size 0) or the quorum was not met."""
    if await pool.fetchval("SELECT true FROM logs WHERE log_id = $1", log_id):
        return None

    async def no_proof(old: int, new: int) -> list[bytes]:
        return []  # from size 0 there is nothing to prove (never asked: old is always 0)

    cosigned = await cosign_checkpoint(
        note,
        0,
        witnessing.witnesses(log_id),
        witnessing.policy,
        no_proof,
        seconds=witnessing.timeout,
    )
    if cosigned is None:
        log.warning("birth_not_witnessed", log=log_id)
    return cosigned


# What a seal writes after the event rows. Each tile and bundle appears once per seal, as one
# statement's ON CONFLICT DO UPDATE requires. Bundles only grow, so a seal appends its
# length-prefixed entries in SQL instead of reading the partial bundle back. Parameters: $1 the
# log id, then the tile and bundle columns from ``$first`` on.
def _tiles_and_bundles(first: int) -> str:
    level, index, data, bundle, entries = (f"${first + i}" for i in range(5))
    return (
        "t AS (INSERT INTO tiles (log_id, level, idx, data)"  # noqa: S608 - numbers, no input
        f" SELECT $1, * FROM unnest({level}::int[], {index}::bigint[], {data}::bytea[])"
        " ON CONFLICT (log_id, level, idx) DO UPDATE SET data = EXCLUDED.data),"
        " b AS (INSERT INTO bundles (log_id, idx, data)"
        f" SELECT $1, * FROM unnest({bundle}::bigint[], {entries}::bytea[])"
        " ON CONFLICT (log_id, idx) DO UPDATE SET data = bundles.data || EXCLUDED.data)"
    )


# The checkpoint and the head: $1 log id, $2 size, $3 root, $4 note, $5 next offset.
_CHECKPOINT_AND_HEAD = (
    "c AS (INSERT INTO checkpoints (log_id, size, root, note) VALUES ($1, $2, $3, $4))"
    " UPDATE logs SET size = $2, root = $3, next_offset = $5, checkpoint = $4,"
    " updated_at = now() WHERE log_id = $1"
)
# Built from the constants above only, never from input.
_WRITE_TILES = f"WITH {_tiles_and_bundles(2)} SELECT 1"
_PUBLISH = f"WITH {_CHECKPOINT_AND_HEAD}"
_SEAL_REST = f"WITH {_tiles_and_bundles(6)}, {_CHECKPOINT_AND_HEAD}"


def _tile_columns(
    tiles: Sequence[tuple[TileID, bytes]],
) -> tuple[list[int], list[int], list[bytes]]:
    return [t.level for t, _ in tiles], [t.index for t, _ in tiles], [data for _, data in tiles]


def _bundle_columns(bundles: Sequence[tuple[int, bytes]]) -> tuple[list[int], list[bytes]]:
    return [index for index, _ in bundles], [data for _, data in bundles]


def _bundle_rows(start: int, entries: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """(bundle index, encoded entries) of ``entries`` appended from log index ``start``."""
    rows = []
    i = 0
    while i < len(entries):
        index = start + i
        bundle = index // TILE_WIDTH
        take = min(len(entries) - i, (bundle + 1) * TILE_WIDTH - index)
        rows.append((bundle, encode_bundle(entries[i : i + take])))
        i += take
    return rows


async def seal(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    head: LogHead,
    hasher: LogHasher,
    signer: NoteSigner,
    items: Sequence[Sealable],
    next_offset: int,
    idempotency_window: timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
    witnessing: Witnessing | None = None,
    on_conflict: OnConflict | None = None,
    *,
    legacy_name: bool = True,
) -> SealResult:
    """Append ``items`` to the log and move its offset to ``next_offset``, atomically.

    ``conn`` comes from :func:`connect_pool`.

    Idempotency keys are claimed in the same transaction (sealer/claims.py): an item whose
    (principal, tenant, key) sealed the same event within ``idempotency_window`` (or earlier in
    the batch) is skipped, a producer's retry is not logged twice; one whose key sealed another
    event is a conflict, not appended either: ``on_conflict`` gets them before the transaction
    commits (the worker dead-letters them there), and the result lists them.

    The checkpoint is signed by :func:`sign_checkpoint` (``legacy_name`` as there).
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT size, root, next_offset FROM logs WHERE log_id = $1 FOR UPDATE", head.log_id
        )
        if row is None or (row["size"], bytes(row["root"]), row["next_offset"]) != (
            head.size,
            head.root,
            head.next_offset,
        ):
            raise Fenced(f"log {head.log_id} head moved; this sealer no longer owns it")
        claimed = await claim(conn, head.log_id, head.size, items, idempotency_window)
        items, duplicates, conflicts = claimed.kept, claimed.duplicates, tuple(claimed.conflicts)
        if conflicts and on_conflict is not None:
            await on_conflict(conflicts)
        if not items:
            await conn.execute(
                "UPDATE logs SET next_offset = $2, updated_at = now() WHERE log_id = $1",
                head.log_id,
                next_offset,
            )
            return SealResult(replace(head, next_offset=next_offset), None, duplicates, conflicts)

        wanted = tiles_to_fetch(head.size)
        edge = head.edge
        if edge is None or not all(tile in edge for tile in wanted):
            edge = await fetch_tiles(conn, head.log_id, wanted)
        ready = [prepared(item, hasher) for item in items]
        result = integrate(hasher, head.size, edge, [p.leaf for p in ready])

        log_id, size = head.log_id, head.size
        # Each row built here from its preparation: no call per event (sealer/rows.py).
        await conn.copy_records_to_table(
            "events",
            columns=EVENT_COLUMNS,
            records=[(log_id, size + i, *p.tail) for i, p in enumerate(ready)],
        )
        await copy_blocks(conn, block_rows(log_id, size, ready))
        if faults.armed is not None:
            faults.armed.reach("events-copied")
        tiles = list(result.tiles.items())
        bundles = _bundle_rows(size, [p.entry for p in ready])
        checkpoint = Checkpoint(head.origin, result.size, result.root)
        note = sign_checkpoint(signer, checkpoint, legacy_name=legacy_name)
        if witnessing is None:
            # Tiles, bundles, checkpoint and head in one statement: one round trip, not four.
            await conn.execute(
                _SEAL_REST,
                head.log_id,
                result.size,
                result.root,
                note,
                next_offset,
                *_tile_columns(tiles),
                *_bundle_columns(bundles),
            )
        else:
            await conn.execute(
                _WRITE_TILES, head.log_id, *_tile_columns(tiles), *_bundle_columns(bundles)
            )
            if faults.armed is not None:
                faults.armed.reach("tiles-written")
            # Inside the transaction, after the tiles are written: the witnesses get proofs from
            # them, and a checkpoint they did not cosign is never stored. Should the commit fail
            # after they cosigned, the batch is sealed again from the same offsets, which gives
            # the same leaves in the same order, so the log they saw stays a prefix of ours.
            note = await _cosign(conn, head, hasher, note, result.size, witnessing)
            await conn.execute(_PUBLISH, head.log_id, result.size, result.root, note, next_offset)
        if faults.armed is not None:
            faults.armed.reach("before-commit")
    if faults.armed is not None:
        faults.armed.reach("committed")
    # The next seal extends the log from the tiles just written, without reading them back.
    after = {
        tile: result.tiles[tile] if tile in result.tiles else edge[tile]
        for tile in tiles_to_fetch(result.size)
    }
    return SealResult(
        replace(head, size=result.size, root=result.root, next_offset=next_offset, edge=after),
        note,
        duplicates,
        conflicts,
    )


async def _cosign(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    head: LogHead,
    hasher: LogHasher,
    note: str,
    size: int,
    witnessing: Witnessing,
) -> str:
    async def proofs(old: int, new: int) -> list[bytes]:
        tiles = await fetch_tiles(conn, head.log_id, consistency_tiles(old, new))
        return consistency_proof(hasher, old, new, tiles)

    cosigned = await cosign_checkpoint(
        note,
        size,
        witnessing.witnesses(head.log_id),
        witnessing.policy,
        proofs,
        seconds=witnessing.timeout,
    )
    if cosigned is None:
        raise NotWitnessed(f"log {head.log_id}: witness quorum not met for size {size}")
    return cosigned


async def forget_expired_keys(pool: asyncpg.Pool, window: timedelta) -> int:
    """Drop idempotency keys older than the window; returns how many.

    Keys a seal holds locked are skipped (a seal re-claiming an expired key may have it): this
    statement never waits for a seal, so it never deadlocks with one; the next sweep takes them.
    """
    status = await pool.execute(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys"
        " WHERE sealed_at <= now() - $1::interval FOR UPDATE SKIP LOCKED))",
        window,
    )
    return int(status.split()[-1])
