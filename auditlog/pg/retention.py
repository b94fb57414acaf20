"""Retention: which months of each log have expired, and pruning them (docs/retention.md).

A log prunes by dropping its own leaf of each expired month (``events_YYYY_MM`` split by log,
as the sealer creates them), oldest first, and stops at the first month it cannot drop (not
expired, held by a tenant's longer policy, or a month stored as one plain table): the pruned
entries are always a prefix of the log's months. The new pruned bound is one past the highest
index dropped; the few entries below it that were received later (a batch straddling the month's
end, events in a default partition) stay, and the audit still checks them where present.

A tenant whose policy is *shorter* than its log's cannot have months dropped (they hold other
tenants' events): its expired events are erased one by one, each under a signed erasure record
(:mod:`auditlog.pg.erasure`), after the log's months are dropped.

Apply is ordered so that a crash at any point leaves a log the audit passes: the signed
statement is committed first (entries below it may then be absent, and still are present),
then the leaves are dropped, then the entry bundles, search blocks and idempotency keys of the
pruned entries are deleted (and the search blocks' generations left empty dropped). Every step
can be run again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.log_statements import PrunedBound, sign_statement
from auditlog.core.note import NoteSigner, parse_note
from auditlog.core.tiles import TILE_WIDTH
from auditlog.pg import search_generations
from auditlog.pg.erasure import erase_tenant_before
from auditlog.pg.forward_holds import undelivered_from

__all__ = [
    "LateEntries",
    "LogPlan",
    "Policy",
    "apply_plan",
    "archived_below",
    "plan_retention",
    "policies",
    "set_policy",
]

_MONTH: Final = re.compile(r"^events_(\d{4})_(\d{2})$")
# Dropping a leaf locks its month (and, for a month, the events table) exclusively: wait a
# little, never long, so that seals and searches queue behind it at most this long.
LOCK_TIMEOUT: Final = "2s"
LOCK_ATTEMPTS: Final = 5
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True, slots=True)
class Policy:
    """Keep ``keep_months`` whole months before the current one; scope default, log or tenant."""

    scope: str
    name: str
    keep_months: int
    require_archive: bool


@dataclass(slots=True)
class LogPlan:
    """What retention would do to one log."""

    log_id: str
    origin: str
    keep_months: int
    require_archive: bool
    bound: int  # the pruned bound stated now
    new_bound: int  # after dropping ``drops``
    drops: list[tuple[str, str]] = field(default_factory=list)  # (month table, log leaf)
    held: list[str] = field(default_factory=list)  # why pruning stops where it does
    archived: int | None = None  # with require_archive: archives cover entries below this
    # Tenants kept shorter than the log: (tenant, erase its events received before, how many
    # are stored now, its months).
    erase: list[tuple[str, datetime, int, int]] = field(default_factory=list)


async def policies(conn: Conn) -> list[Policy]:
    rows = await conn.fetch(
        "SELECT scope, name, keep_months, require_archive FROM retention_policies"
        " ORDER BY scope, name"
    )
    return [Policy(r["scope"], r["name"], r["keep_months"], r["require_archive"]) for r in rows]


async def set_policy(
    conn: Conn, scope: str, name: str, keep_months: int | None, require_archive: bool
) -> None:
    """Create or replace a policy; ``keep_months`` None removes it."""
    if keep_months is None:
        await conn.execute(
            "DELETE FROM retention_policies WHERE scope = $1 AND name = $2", scope, name
        )
        return
    await conn.execute(
        "INSERT INTO retention_policies (scope, name, keep_months, require_archive)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (scope, name) DO UPDATE SET"
        " keep_months = excluded.keep_months, require_archive = excluded.require_archive,"
        " updated_at = now()",
        scope,
        name,
        keep_months,
        require_archive,
    )


def _expired(year: int, month: int, keep: int, now: datetime) -> bool:
    # The month ends when month number k+1 starts; it is kept through ``keep`` more months.
    return year * 12 + month - 1 + keep < now.year * 12 + now.month - 1


def _kept_from(keep: int, now: datetime) -> datetime:
    """The first instant a policy of ``keep`` months keeps: every month before it expired."""
    first = now.year * 12 + now.month - 1 - keep
    return datetime(first // 12, first % 12 + 1, 1, tzinfo=UTC)


async def _months(conn: Conn) -> list[tuple[int, int, str, bool]]:
    """(year, month, table, split by log) of every monthly partition of events, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind = 'p' AS split FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    )
    out = []
    for r in rows:
        match = _MONTH.match(r["relname"])
        if match:
            out.append((int(match[1]), int(match[2]), r["relname"], bool(r["split"])))
    return sorted(out)


async def _leaf(conn: Conn, month_table: str, log_id: str) -> str | None:
    """The month's leaf partition holding ``log_id`` (by its bound, not by its name)."""
    name: str | None = await conn.fetchval(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass"
        " AND pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (%L)', $2::text)",
        month_table,
        log_id,
    )
    return name


async def _stated_bound(conn: Conn, log_id: str) -> int:
    bound: int | None = await conn.fetchval(
        "SELECT max(below) FROM pruned_bounds WHERE log_id = $1", log_id
    )
    return bound or 0


async def archived_below(conn: Conn, log_id: str, start: int) -> int:
    """How far archives cover the log contiguously from ``start`` (``start`` when they do not)."""
    covered = start
    for r in await conn.fetch(
        "SELECT first_idx, end_idx FROM archives WHERE log_id = $1 ORDER BY first_idx", log_id
    ):
        if r["first_idx"] <= covered:
            covered = max(covered, r["end_idx"])
    return covered


def _policy_for(log_id: str, rules: Sequence[Policy]) -> Policy | None:
    by_log = [p for p in rules if p.scope == "log" and p.name == log_id]
    default = [p for p in rules if p.scope == "default"]
    chosen = by_log or default
    return chosen[0] if chosen else None


async def _tenant_hold(conn: Conn, leaf: str, tenants: list[str]) -> bool:
    if not tenants:
        return False
    # The leaf's name comes from the catalog, never from input.
    held: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {leaf} WHERE tenant_id = ANY($1::text[]))",  # noqa: S608
        tenants,
    )
    return held


async def _plan_drops(
    conn: Conn,
    plan: LogPlan,
    months: list[tuple[int, int, str, bool]],
    longer: list[Policy],
    now: datetime,
    undelivered: int | None = None,
) -> None:
    """The log's expired month leaves, oldest first, up to the first it cannot drop (one that
    holds entries from ``undelivered`` on, which a forward destination has not received)."""
    for year, mon, table, split in months:
        if not _expired(year, mon, plan.keep_months, now):
            return
        if not split:
            plan.held.append(f"{table} is one plain table for every log: drop it by hand")
            return
        leaf = await _leaf(conn, table, plan.log_id)
        if leaf is None:
            continue  # this log has no rows of its own that month
        holders = [p.name for p in longer if not _expired(year, mon, p.keep_months, now)]
        if await _tenant_hold(conn, leaf, holders):
            plan.held.append(f"{leaf} holds events of tenants kept longer: {holders}")
            return
        top: int | None = await conn.fetchval(
            f"SELECT max(idx) FROM {leaf} WHERE log_id = $1",  # noqa: S608
            plan.log_id,
        )
        if top is not None and undelivered is not None and top >= undelivered:
            plan.held.append(
                f"{leaf} holds entries from {undelivered} on that a forward destination has not"
                " received (auditlog forward status; forget a destination gone for good)"
            )
            return
        plan.drops.append((table, leaf))
        if top is not None:
            plan.new_bound = max(plan.new_bound, top + 1)


async def _plan_erasures(conn: Conn, plan: LogPlan, shorter: list[Policy], now: datetime) -> None:
    for tenant in shorter:
        before = _kept_from(tenant.keep_months, now)
        stored: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE log_id = $1 AND tenant_id = $2 AND received_at < $3",
            plan.log_id,
            tenant.name,
            before,
        )
        if stored:
            plan.erase.append((tenant.name, before, stored, tenant.keep_months))


async def plan_retention(
    conn: Conn, now: datetime | None = None, log_ids: Sequence[str] | None = None
) -> list[LogPlan]:
    """What retention would drop (and erase) now, per log (logs without a policy are left
    out)."""
    now = now or datetime.now(UTC)
    rules = await policies(conn)
    months = await _months(conn)
    undelivered = await undelivered_from(conn)
    plans = []
    for log in await conn.fetch("SELECT log_id, origin FROM logs ORDER BY log_id"):
        log_id = log["log_id"]
        policy = _policy_for(log_id, rules)
        if (log_ids and log_id not in log_ids) or policy is None:
            continue
        keep = policy.keep_months
        bound = await _stated_bound(conn, log_id)
        plan = LogPlan(log_id, log["origin"], keep, policy.require_archive, bound, bound)
        # A tenant's longer policy holds back the months that hold its events; a shorter one
        # cannot drop them (months are shared by tenants): its expired events are erased.
        tenants = [p for p in rules if p.scope == "tenant"]
        longer = [p for p in tenants if p.keep_months > keep]
        await _plan_drops(conn, plan, months, longer, now, undelivered.get(log_id))
        await _plan_erasures(conn, plan, [p for p in tenants if p.keep_months < keep], now)
        if policy.require_archive:
            plan.archived = await archived_below(conn, log_id, plan.bound)
            if plan.archived < plan.new_bound:
                plan.held.append(
                    f"archives cover entries below {plan.archived} only; the drop needs"
                    f" {plan.new_bound} (auditlog archive first)"
                )
        plans.append(plan)
    return plans


async def _state_bound(conn: Conn, plan: LogPlan, signer: NoteSigner) -> None:
    """Sign and store the new bound against the log's latest checkpoint (first: see module)."""
    note_text: str | None = await conn.fetchval(
        "SELECT checkpoint FROM logs WHERE log_id = $1", plan.log_id
    )
    if note_text is None:
        raise ValueError(f"{plan.log_id} has no checkpoint yet")
    cp = Checkpoint.from_text(parse_note(note_text).text)
    bound = PrunedBound(
        plan.origin,
        plan.new_bound,
        cp.size,
        cp.root,
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),  # signed now, whatever the plan's day
    )
    await conn.execute(
        "INSERT INTO pruned_bounds (log_id, below, size, note) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (log_id, below) DO NOTHING",
        plan.log_id,
        bound.below,
        bound.size,
        sign_statement(bound, signer),
    )


class LateEntries(Exception):  # noqa: N818 - reads as what was found
    """A leaf gained entries at or above the stated bound since the plan: plan again."""


async def _drop(conn: Conn, table: str, log_id: str | None = None, bound: int = 0) -> None:
    """Drop ``table``; with ``log_id``, only if it holds no entry of it at or above ``bound``
    (checked under the drop's own lock, so a late seal into an old month is never dropped)."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                if log_id is not None:
                    await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                    top = await conn.fetchval(
                        f"SELECT max(idx) FROM {table} WHERE log_id = $1",  # noqa: S608
                        log_id,
                    )
                    if top is not None and top >= bound:
                        raise LateEntries(
                            f"{table} holds entry {top} of {log_id}, at or above the pruned"
                            f" bound {bound}: run the plan again"
                        )
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
        except asyncpg.LockNotAvailableError:
            if attempt == LOCK_ATTEMPTS - 1:
                raise
        else:
            return


async def _drop_empty_month(conn: Conn, table: str) -> bool:
    """Drop a month whose log leaves are all gone and whose default leaf is empty."""
    children = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS dflt"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass",
        table,
    )
    if any(not r["dflt"] for r in children):
        return False
    for r in children:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {r['relname']})"):  # noqa: S608
            return False
    await _drop(conn, table)
    return True


async def _delete_copies(conn: Conn, log_id: str, bound: int) -> None:
    """Entry bundles of whole chunks below the bound, and the search blocks and idempotency
    keys of entries below the first one still stored."""
    first: int | None = await conn.fetchval("SELECT min(idx) FROM events WHERE log_id = $1", log_id)
    kept = bound if first is None else min(bound, first)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM bundles WHERE log_id = $1 AND idx < $2", log_id, bound // TILE_WIDTH
        )
        await conn.execute(
            "DELETE FROM search_blocks WHERE log_id = $1 AND last_idx < $2", log_id, kept
        )
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE log_id = $1 AND idx < $2", log_id, kept
        )


async def apply_plan(
    conn: Conn,
    plan: LogPlan,
    signer: NoteSigner,
    report: Callable[[str], None] = print,
) -> None:
    """Prune one log as planned; ValueError when the plan needs an archive it lacks."""
    if plan.archived is not None and plan.archived < plan.new_bound:
        raise ValueError(f"{plan.log_id}: {plan.held[-1]}")
    if plan.new_bound > plan.bound:
        await _state_bound(conn, plan, signer)
        report(f"{plan.log_id}: pruned bound {plan.bound} -> {plan.new_bound} (signed)")
    months = []
    bound = max(plan.new_bound, plan.bound)
    for table, leaf in plan.drops:
        if await _leaf(conn, table, plan.log_id) != leaf:
            continue  # dropped by an earlier run
        await _drop(conn, leaf, plan.log_id, bound)
        report(f"{plan.log_id}: dropped {leaf} ({table})")
        months.append(table)
    for table in months:
        if await _drop_empty_month(conn, table):
            report(f"dropped {table}: no log has rows there any more")
    await _delete_copies(conn, plan.log_id, bound)
    for generation in await search_generations.drop_empty(conn):
        report(f"dropped search blocks generation {generation}: no blocks left")
    for tenant, before, _, kept in plan.erase:
        reason = f"retention policy of tenant {tenant}: keep-months {kept}"
        erased = await erase_tenant_before(conn, signer, plan.log_id, tenant, before, reason)
        report(f"{plan.log_id}: erased {erased} events of tenant {tenant} before {before:%Y-%m-%d}")
