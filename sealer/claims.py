"""Idempotency keys: each (principal, tenant, key) is claimed by one sealed event, exactly once.

A record's key lives in the namespace of who produced it (its ``principal`` header:
``token:<token_id>`` from ingest, ``kafka`` for any other Kafka writer) and of its event's tenant
(``''`` without one). The seal transaction claims the keys of its batch (:func:`claim`) before
it writes any event, in the same transaction, so a crash never leaves a claim without its event
or an event without its claim:

* one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired> RETURNING`` statement claims them
  all, in sorted order: two seals (of two partitions) that hold keys in common take their locks
  in the same order, so one waits for the other's commit instead of both waiting on each other
  (the ``DeadlockDetectedError`` of issue 21). A key whose claim returns nothing is held by an
  event sealed within the window (or by a seal that committed while this one waited);
* an item whose key is held by an event of the same content (:func:`content_digest`: its
  envelope without ``received_at``, which differs per attempt) is a duplicate, skipped; one of
  other content is a :class:`Conflict`, which the sealer dead-letters as ``idempotency-conflict``
  before the seal commits, never skipped silently. Within a batch, the first item of a key
  claims it and the others are judged against it the same way.

A claim records where its event was sealed (log, index): the query service's
``GET /v1/receipts?idempotency_key=`` leads a deduplicated retry's client there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

import asyncpg

from auditlog.core.envelope import Envelope, canonical_json
from sealer.records import (
    CONFIG_ID,
    IDEMPOTENCY_CONFLICT,
    IDEMPOTENCY_KEY,
    PRINCIPAL,
    Rejected,
    Sealable,
)

__all__ = ["IDEMPOTENCY_CONFLICT", "Claimed", "Conflict", "claim", "content_digest", "namespace"]

Namespace = tuple[str, str, str]  # (principal, tenant, key)

# $1..$3 the namespaces, $4 digests, $5 the log, $6 indexes, $7 the window. Rows are inserted in
# the arrays' order (sorted by the caller): that order is the order the locks are taken in.
_CLAIM = (
    "INSERT INTO idempotency_keys (principal, tenant_id, key, digest, log_id, idx)"
    " SELECT p, t, k, d, $5, i FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[],"
    " $6::bigint[]) WITH ORDINALITY AS c(p, t, k, d, i, n) ORDER BY n"
    " ON CONFLICT (principal, tenant_id, key) DO UPDATE SET digest = EXCLUDED.digest,"
    " log_id = EXCLUDED.log_id, idx = EXCLUDED.idx, sealed_at = now()"
    " WHERE idempotency_keys.sealed_at <= now() - $7::interval"
    " RETURNING principal, tenant_id, key"
)
# The claims this seal lost: locked by the statement above, so committed and current.
_HELD = (
    "SELECT principal, tenant_id, key, digest, log_id, idx FROM idempotency_keys"
    " WHERE (principal, tenant_id, key) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
)
# When some claims were lost, the indexes of the ones won move down.
_RENUMBER = (
    "UPDATE idempotency_keys SET idx = c.i FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::bigint[]) AS c(p, t, k, i)"
    " WHERE (principal, tenant_id, key) = (c.p, c.t, c.k) AND idx <> c.i"
)


def content_digest(envelope: Envelope) -> bytes:
    """SHA-256 of the envelope's canonical JSON without ``received_at``: what makes a retry the
    same event (its event, and its signature and public key when signed)."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in envelope.to_dict().items() if k != "received_at"})
    ).digest()


def namespace(item: Sealable) -> Namespace | None:
    """The (principal, tenant, key) ``item`` claims; None without an idempotency key."""
    if item.idempotency_key is None:
        return None
    tenant = item.envelope.event.get("tenant_id")
    return (item.principal, tenant if isinstance(tenant, str) else "", item.idempotency_key)


class KeptRecord(NamedTuple):
    """A conflicting record, as the sealer kept it: its envelope and the headers it read (the
    record itself stays on the events topic, at the dead letter's ``dlq-offset``)."""

    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int = -1
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """An item whose key is held by an event of other content."""

    item: Sealable
    detail: str

    def rejected(self) -> Rejected:
        item = self.item
        headers = [
            (name, value.encode())
            for name, value in (
                (IDEMPOTENCY_KEY, item.idempotency_key),
                (PRINCIPAL, item.principal),
                (CONFIG_ID, item.config_id),
            )
            if value is not None
        ]
        record = KeptRecord(item.offset, item.envelope.canonical, tuple(headers))
        return Rejected(item.offset, IDEMPOTENCY_CONFLICT, record, self.detail)


@dataclass(slots=True)
class Claimed:
    """A batch after its claims: what to append, in order, and what not."""

    kept: list[Sealable]
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


class _Holder(NamedTuple):
    digest: bytes | None  # None: claimed before digests were kept (taken as the same event)
    where: str


def _judge(item: Sealable, holder: _Holder, claimed: Claimed) -> None:
    if holder.digest is None or holder.digest == content_digest(item.envelope):
        claimed.duplicates += 1
    else:
        claimed.conflicts.append(
            Conflict(item, f"idempotency key already sealed with other content: {holder.where}")
        )


async def claim(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    log_id: str,
    size: int,
    items: Sequence[Sealable],
    window: timedelta,
) -> Claimed:
    """Claim the keys of ``items``, to be appended to ``log_id`` from index ``size``, inside the
    seal's transaction; what to append and what not (see the module's docs)."""
    first: dict[Namespace, Sealable] = {}
    later: list[tuple[Sealable, Namespace]] = []
    for item in items:
        if item.idempotency_key is None:  # most records: no call per record (the hot path)
            continue
        ns = namespace(item)
        assert ns is not None
        if ns in first:
            later.append((item, ns))
        else:
            first[ns] = item
    if not first:
        return Claimed(list(items))
    claimed = Claimed([])
    skip = {id(item) for item, _ in later}
    index = _indexes(items, skip, size)
    order = sorted(first)
    digests = {ns: content_digest(first[ns].envelope) for ns in order}
    won = {
        (r["principal"], r["tenant_id"], r["key"])
        for r in await conn.fetch(
            _CLAIM,
            [p for p, _, _ in order],
            [t for _, t, _ in order],
            [k for _, _, k in order],
            [digests[ns] for ns in order],
            log_id,
            [index[id(first[ns])] for ns in order],
            window,
        )
    }
    holders = {
        ns: _Holder(digests[ns], f"the record at offset {first[ns].offset} of this partition")
        for ns in won
    }
    lost = [ns for ns in order if ns not in won]
    if lost:
        rows = await conn.fetch(
            _HELD, [p for p, _, _ in lost], [t for _, t, _ in lost], [k for _, _, k in lost]
        )
        for r in rows:
            digest = None if r["digest"] is None else bytes(r["digest"])
            holders[(r["principal"], r["tenant_id"], r["key"])] = _Holder(
                digest, f"log {r['log_id']} index {r['idx']}"
            )
        for ns in lost:
            _judge(first[ns], holders[ns], claimed)
            skip.add(id(first[ns]))
    for item, ns in later:
        _judge(item, holders[ns], claimed)
    claimed.kept = [item for item in items if id(item) not in skip]
    if lost:
        moved = _indexes(items, skip, size)
        renumbered = [
            ns for ns in order if ns in won and moved[id(first[ns])] != index[id(first[ns])]
        ]
        if renumbered:
            await conn.execute(
                _RENUMBER,
                [p for p, _, _ in renumbered],
                [t for _, t, _ in renumbered],
                [k for _, _, k in renumbered],
                [moved[id(first[ns])] for ns in renumbered],
            )
    return claimed


def _indexes(items: Sequence[Sealable], skip: set[int], size: int) -> dict[int, int]:
    """The log index of each item kept (by ``id``), appended in order from ``size``."""
    kept = (item for item in items if id(item) not in skip)
    return {id(item): size + i for i, item in enumerate(kept)}
