"""``auditlog retention policy|plan|apply`` and ``auditlog erase``: deleting what the log says.

Both sign what they delete with the log's checkpoint key (``--signing-key``, default
``AUDITLOG_SIGNING_KEY_FILE``), so they run where the sealer's key is, as an operator with
database access: a pruned-bound statement per pruned log, an erasure record per erased event
(docs/retention.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, Subparsers, UsageError, database_url


def _signer(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from auditlog.core.errors import NoteError
    from auditlog.runtime.settings import Env
    from sealer.main import load_signer
    from sealer.settings import DEFAULT_SIGNING_KEY_FILE

    path = Path(args.signing_key or Env().text("SIGNING_KEY_FILE", DEFAULT_SIGNING_KEY_FILE))
    try:
        return load_signer(path)
    except OSError as exc:
        raise UsageError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    except NoteError as exc:
        raise UsageError(f"{path} is not a signing key: {exc}") from exc
    except ValueError as exc:  # SettingsError: the key's file mode
        raise UsageError(str(exc)) from exc


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise UsageError(f"--as-of {value!r} is not YYYY-MM-DD") from exc


async def _connect(args: argparse.Namespace) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(database_url(args))
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"cannot connect to the database: {exc}") from exc


async def _policy(args: argparse.Namespace) -> int:
    from auditlog.pg import retention

    conn = await _connect(args)
    try:
        if args.policy_cmd == "list":
            for p in await retention.policies(conn):
                archive = " require-archive" if p.require_archive else ""
                print(f"{p.scope}\t{p.name or '-'}\t{p.keep_months} months{archive}")
            return EXIT_OK
        scope, name = (
            ("log", args.log)
            if args.log
            else ("tenant", args.tenant)
            if args.tenant
            else ("default", "")
        )
        keep = args.keep_months if args.policy_cmd == "set" else None
        if args.policy_cmd == "set" and (keep is None or keep < 1):
            raise UsageError("--keep-months must be at least 1")
        await retention.set_policy(conn, scope, name, keep, args.require_archive)
        print(f"{scope} {name or '-'}: " + (f"keep {keep} months" if keep else "removed"))
        return EXIT_OK
    finally:
        await conn.close()


def _plan_dict(plan: Any) -> dict[str, Any]:
    return {
        "log": plan.log_id,
        "keep_months": plan.keep_months,
        "pruned_below": plan.bound,
        "new_pruned_below": plan.new_bound,
        "drop": [leaf for _, leaf in plan.drops],
        "held": plan.held,
        "archived_below": plan.archived,
        "erase": [
            {"tenant": tenant, "received_before": f"{before:%Y-%m-%d}", "events": count}
            for tenant, before, count, _ in plan.erase
        ],
    }


def _print_plan(plan: Any) -> None:
    what = ", ".join(leaf for _, leaf in plan.drops) or "nothing"
    print(
        f"{plan.log_id}: keep {plan.keep_months} months; pruned below {plan.bound}"
        f" -> {plan.new_bound}; drop {what}"
    )
    for reason in plan.held:
        print(f"{plan.log_id}: held: {reason}")
    for tenant, before, count, months in plan.erase:
        print(
            f"{plan.log_id}: erase tenant {tenant}'s events received before {before:%Y-%m-%d}"
            f" (kept {months} months): {count} stored now"
        )


async def _retention(args: argparse.Namespace) -> int:
    import asyncpg

    from auditlog.pg import retention
    from auditlog.pg.erasure import EraseRefused

    signer = _signer(args) if args.retention_cmd == "apply" else None
    now = _as_of(args.as_of)
    conn = await _connect(args)
    try:
        plans = await retention.plan_retention(conn, now, args.log or None)
        if args.retention_cmd == "plan":
            if args.json:
                print(json.dumps([_plan_dict(p) for p in plans], indent=1))
            else:
                for plan in plans:
                    _print_plan(plan)
                if not plans:
                    print("no log has a retention policy (auditlog retention policy set)")
            return EXIT_OK
        failed = False
        assert signer is not None  # apply loaded it above
        for plan in plans:
            try:
                await retention.apply_plan(conn, plan, signer)
            except (ValueError, retention.LateEntries, EraseRefused) as exc:
                print(f"{plan.log_id}: not pruned: {exc}")
                failed = True
            except asyncpg.LockNotAvailableError:
                # A long search or audit holds the month; what was done stays done.
                print(f"{plan.log_id}: not finished: a partition stayed locked; run apply again")
                failed = True
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        await conn.close()


def cmd_policy(args: argparse.Namespace) -> int:
    return asyncio.run(_policy(args))


def cmd_retention(args: argparse.Namespace) -> int:
    return asyncio.run(_retention(args))


async def _erase(args: argparse.Namespace) -> int:
    from auditlog.pg.erasure import EraseRefused, erase_event

    try:
        digest = bytes.fromhex(args.hash)
    except ValueError as exc:
        raise UsageError("--hash is the event hash in hex") from exc
    signer = _signer(args)
    conn = await _connect(args)
    try:
        done = await erase_event(conn, signer, digest, args.reason, log_id=args.log)
    except EraseRefused as exc:
        print(f"not erased: {exc}")
        return EXIT_FAILED
    except ValueError as exc:  # MalformedNote: a reason that cannot be a record line
        raise UsageError(str(exc)) from exc
    finally:
        await conn.close()
    r = done.record
    state = "already erased" if done.already else "erased"
    print(f"{state}: {done.log_id} index {r.index} hash {r.event_hash.hex()} ({r.reason})")
    print(done.note, end="")
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    return asyncio.run(_erase(args))


def _common(p: argparse.ArgumentParser, *, signing: bool) -> None:
    p.add_argument("--database-url", help="default AUDITLOG_DATABASE_URL")
    if signing:
        p.add_argument(
            "--signing-key",
            help="the logs' checkpoint signing key (default AUDITLOG_SIGNING_KEY_FILE)",
        )


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    ret = sub.add_parser(
        "retention", help="retention policies; drop expired months under a signed pruned bound"
    )
    rsub = ret.add_subparsers(dest="retention_cmd", required=True)
    pol = rsub.add_parser("policy", help="set, remove or list retention policies")
    psub = pol.add_subparsers(dest="policy_cmd", required=True)
    for name in ("set", "remove"):
        p = psub.add_parser(name, help=f"{name} the default, a log's or a tenant's policy")
        who = p.add_mutually_exclusive_group()
        who.add_argument("--log", help="a log id (default: the default policy)")
        who.add_argument("--tenant", help="a tenant id: may only keep longer than its logs")
        if name == "set":
            p.add_argument("--keep-months", type=int, required=True)
            p.add_argument(
                "--require-archive",
                action="store_true",
                help="prune only entries an `auditlog archive` holds",
            )
        else:
            p.set_defaults(keep_months=None, require_archive=False)
        _common(p, signing=False)
        p.set_defaults(func=cmd_policy)
    lst = psub.add_parser("list", help="list the policies")
    _common(lst, signing=False)
    lst.set_defaults(func=cmd_policy)
    for name, text in (
        ("plan", "show what apply would drop, per log"),
        ("apply", "sign each log's new pruned bound, then drop its expired months"),
    ):
        p = rsub.add_parser(name, help=text)
        p.add_argument("--log", action="append", help="only this log id (repeatable)")
        p.add_argument(
            "--as-of", metavar="YYYY-MM-DD", help="judge expiry as of this day (default now)"
        )
        if name == "plan":
            p.add_argument("--json", action="store_true")
        _common(p, signing=name == "apply")
        p.set_defaults(func=cmd_retention)

    era = sub.add_parser(
        "erase", help="erase one event's content under a signed erasure record (admin)"
    )
    era.add_argument("--hash", required=True, help="the event hash (hex)")
    era.add_argument("--reason", required=True, help="why, one line: recorded and signed")
    era.add_argument("--log", help="the log id, when several logs hold this hash")
    _common(era, signing=True)
    era.set_defaults(func=cmd_erase)
