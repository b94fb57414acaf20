"""``auditlog monitor``: follow each log's checkpoints and prove every step append-only.

For each log the read API lists, the monitor fetches the latest checkpoint, verifies its
signature, and checks it against the last checkpoint it trusted (kept in a local state file,
:mod:`auditlog.verify.trust_state`, since the API only ever serves the latest one): a larger
size must come with a consistency proof (``/v1/proofs/consistency``, or built from tiles when the
server does not offer it), an equal size must have the same root, and a smaller size is a rollback.
Only a checkpoint that passes replaces the trusted one. Anything else is an :class:`Alert`:
printed as a JSON line on stderr and, if configured, POSTed as JSON to a webhook.

The state remembers every origin it has seen with its hash scheme, so a log that drops out of
``/v1/logs``, moves to another log id, or is listed with another hash scheme is an alert too
(``missing-log``, ``renamed-log``, ``scheme-changed``), and a remembered log is always checked
with the scheme remembered for it, never the one the server lists now.

The first checkpoint (and scheme) seen for a log is trusted on first use, as a witness does;
pin an earlier one by writing it into the state file.

Retention (docs/retention.md) publishes a signed pruned bound per log
(``/v1/logs/{log}/pruned``); the monitor verifies it, remembers the highest, and alerts when
it does not verify (``pruned-statement-invalid``) or goes below the remembered one
(``pruned-bound-backwards``).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from auditlog.core.consistency import Rollback, open_checkpoint, verify_checkpoints
from auditlog.core.cosignature import Freshness
from auditlog.core.errors import AuditLogError, NoteError, ProofError
from auditlog.core.hashing import LogHasher, get_hasher
from auditlog.core.log_statements import open_pruned
from auditlog.core.note import NoteVerifier
from auditlog.core.policy import Policy
from auditlog.core.proof import consistency_proof, consistency_tiles
from auditlog.core.tiles import TILE_WIDTH, TileID, tiles_for_size
from auditlog.verify.read_api import ReadApi, ReadApiError
from auditlog.verify.trust_state import (
    ListedLog,
    StateFinding,
    TrustState,
    load_state,
    reconcile,
    save_state,
)

__all__ = [
    "Alert",
    "check_log",
    "check_pruned",
    "monitor_once",
    "proof_from_tiles",
    "run_monitor",
]


@dataclass(frozen=True, slots=True)
class Alert:
    log: str
    origin: str
    # checkpoint-signature, rollback, fork, inconsistent, missing-log, renamed-log,
    # scheme-changed, pruned-statement-invalid, pruned-bound-backwards; unreachable (the only
    # one that is not fatal)
    kind: str
    detail: str
    trusted_size: int | None
    seen_size: int | None


def proof_from_tiles(
    api: ReadApi, log: str, hasher: LogHasher, old_size: int, new_size: int
) -> list[bytes]:
    """Build the consistency proof from the log's tiles (for servers without the endpoint)."""
    partial = dict(tiles_for_size(new_size))
    tiles: dict[TileID, bytes] = {}
    for tile in consistency_tiles(old_size, new_size):
        data = api.tile(log, tile.level, tile.index, partial.get(tile, TILE_WIDTH))
        if data is None:
            raise ReadApiError(f"tile {tile.level}/{tile.index} of {log} is not served")
        tiles[tile] = data
    return consistency_proof(hasher, old_size, new_size, tiles)


def check_log(
    api: ReadApi,
    listed: ListedLog,
    hash_scheme: str,
    verifiers: Sequence[NoteVerifier],
    trusted: str | None,
    policy: Policy | None = None,
    freshness: Freshness | None = None,
) -> tuple[str | None, Alert | None]:
    """One look at one log: (the note to trust from now on, or None to keep; an alert).

    ``hash_scheme`` is the scheme to check it with: the remembered one, not the listed one.
    """
    log, origin = listed.log, listed.origin
    hasher = get_hasher(hash_scheme)

    def alert(kind: str, detail: str, old: int | None, new: int | None) -> tuple[None, Alert]:
        return None, Alert(log, origin, kind, detail, old, new)

    note = api.checkpoint(log)
    if note is None:
        return (
            (None, None)
            if trusted is None
            else alert("rollback", "the log no longer serves a checkpoint", None, None)
        )
    try:
        new = open_checkpoint(note, verifiers, policy, freshness=freshness)
    except AuditLogError as exc:
        return alert("checkpoint-signature", f"{type(exc).__name__}: {exc}", None, None)
    if new.origin != origin:
        return alert("checkpoint-signature", f"checkpoint names origin {new.origin!r}", None, None)
    if trusted is None:
        return note, None
    try:
        old = open_checkpoint(trusted, verifiers, origin=origin)
    except AuditLogError as exc:
        detail = f"the remembered checkpoint does not verify: {type(exc).__name__}: {exc}"
        return alert("checkpoint-signature", detail, None, new.size)
    proof: list[bytes] = []
    if new.size > old.size:
        answer = api.consistency(log, old.size, new.size)
        proof = (
            answer.proof
            if answer is not None
            else proof_from_tiles(api, log, hasher, old.size, new.size)
        )
    try:
        verify_checkpoints(trusted, note, proof, verifiers, hasher)
    except Rollback as exc:
        return alert("rollback", str(exc), old.size, new.size)
    except ProofError as exc:
        kind = "fork" if new.size == old.size else "inconsistent"
        return alert(kind, f"{type(exc).__name__}: {exc}", old.size, new.size)
    except NoteError as exc:
        return alert("checkpoint-signature", f"{type(exc).__name__}: {exc}", old.size, new.size)
    return (note if new.size > old.size else None), None


def check_pruned(
    api: ReadApi, listed: ListedLog, verifiers: Sequence[NoteVerifier], remembered: str | None
) -> tuple[str | None, Alert | None]:
    """The log's pruned bound: (the statement to remember, or None to keep; an alert)."""
    log, origin = listed.log, listed.origin
    note = api.pruned(log)
    old = 0
    if remembered is not None:
        try:
            old = open_pruned(remembered, verifiers).below
        except AuditLogError:
            remembered = None  # written by hand or under other keys: learn the served one
    if note is None:
        if old:
            detail = f"the log no longer states a pruned bound; this monitor saw {old}"
            return None, Alert(log, origin, "pruned-bound-backwards", detail, old, None)
        return None, None
    try:
        bound = open_pruned(note, verifiers)
    except AuditLogError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return None, Alert(log, origin, "pruned-statement-invalid", detail, old, None)
    if bound.origin != origin:
        detail = f"the pruned statement names origin {bound.origin!r}"
        return None, Alert(log, origin, "pruned-statement-invalid", detail, old, None)
    if bound.below < old:
        detail = f"the pruned bound went from {old} back to {bound.below}"
        return None, Alert(log, origin, "pruned-bound-backwards", detail, old, bound.below)
    return (note if bound.below > old or remembered is None else None), None


def _post_webhook(url: str, alert: Alert) -> None:
    body = json.dumps({"alert": asdict(alert)}).encode()
    request = urllib.request.Request(  # noqa: S310 - an operator-configured URL
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            resp.read(64 * 1024)  # drained for the connection's sake, never used
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({"webhook_failed": url, "error": str(exc)}), file=sys.stderr)


def _listing(api: ReadApi) -> list[ListedLog]:
    out = []
    for entry in api.logs():
        try:
            log, origin, scheme = str(entry["log"]), str(entry["origin"]), str(entry["hash_scheme"])
        except (KeyError, TypeError) as exc:
            raise ReadApiError(f"GET /v1/logs: a log without {exc}") from exc
        size = entry.get("size")
        out.append(ListedLog(log, origin, scheme, size if isinstance(size, int) else None))
    return out


def _state_alert(state: TrustState, listing: Sequence[ListedLog], f: StateFinding) -> Alert:
    known = state.logs.get(f.origin)
    seen = next((e.size for e in listing if e.log == f.log), None)
    return Alert(f.log, f.origin, f.kind, f.detail, known.size() if known else None, seen)


def monitor_once(
    api: ReadApi,
    verifiers: Sequence[NoteVerifier],
    state: TrustState,
    *,
    log_ids: Sequence[str] | None = None,
    policy: Policy | None = None,
    freshness: Freshness | None = None,
    emit: Callable[[Alert], None],
) -> tuple[int, list[Alert]]:
    """Check every log once, learning into ``state`` what is newly trusted; (logs, alerts).

    A remembered log the listing lost, moved or re-schemed is an alert; nothing is learned
    about a log with such an alert, and a remembered log is never forgotten here.
    """
    listing = _listing(api)
    reconciled = reconcile(state, listing, log_ids)
    alerts = [_state_alert(state, listing, f) for f in reconciled.findings]
    for alert in alerts:
        emit(alert)
    for listed in reconciled.listed:
        scheme = reconciled.schemes[listed.origin]
        known = state.logs.get(listed.origin)
        trusted = known.checkpoint if known is not None else None
        found: Alert | None
        pruned: str | None = None
        try:
            trust, found = check_log(
                api, listed, scheme, verifiers, trusted, policy, freshness=freshness
            )
            if found is None:
                remembered = known.pruned if known is not None else None
                pruned, found = check_pruned(api, listed, verifiers, remembered)
        except ReadApiError as exc:
            trust = None
            found = Alert(listed.log, listed.origin, "unreachable", str(exc), None, None)
        if found is not None:
            alerts.append(found)
            emit(found)
        if reconciled.flagged(listed.log):
            continue
        if found is None:
            state.learn(listed.origin, listed.log, scheme, trust, pruned)
        elif known is None:
            state.learn(listed.origin, listed.log, scheme, None)
    return len(reconciled.listed), alerts


def run_monitor(
    api: ReadApi,
    verifiers: Sequence[NoteVerifier],
    state_path: Path | None,
    *,
    log_ids: Sequence[str] | None = None,
    policy: Policy | None = None,
    max_cosignature_age: int | None = None,
    webhook: str | None = None,
    interval: float = 10.0,
    once: bool = False,
    on_round: Callable[[int, Sequence[Alert]], None] | None = None,
) -> int:
    """Loop until an inconsistency (exit 1) or, with ``once``, after one round (0 or 1).

    An unreachable server is alerted but not fatal in a loop: the next round tries again.
    The state is read from ``state_path`` before every round and written after it (with None,
    it lives in memory for this process only). ``max_cosignature_age`` (seconds, needs a
    ``policy``) is measured against this machine's clock each round: stale witness cosignatures
    do not count toward the quorum. ``on_round(logs checked, alerts)`` is called after each
    round, an unreachable server included.
    """

    def emit(alert: Alert) -> None:
        print(json.dumps({"alert": asdict(alert)}), file=sys.stderr, flush=True)
        if webhook:
            _post_webhook(webhook, alert)

    memory = TrustState()
    while True:
        try:
            freshness = (
                Freshness(int(time.time()), max_cosignature_age)
                if max_cosignature_age is not None
                else None
            )
            state = load_state(state_path) if state_path is not None else memory
            checked, alerts = monitor_once(
                api,
                verifiers,
                state,
                log_ids=log_ids,
                policy=policy,
                freshness=freshness,
                emit=emit,
            )
            if state_path is not None:
                save_state(state_path, state)
        except ReadApiError as exc:
            alerts = [Alert("*", "*", "unreachable", str(exc), None, None)]
            emit(alerts[0])
            checked = 0
        if on_round is not None:
            on_round(checked, alerts)
        fatal = [a for a in alerts if a.kind != "unreachable"]
        print(f"checked {checked} logs, {len(fatal)} inconsistencies", flush=True)
        if fatal:
            return 1
        if once:
            return 2 if alerts else 0
        time.sleep(interval)
