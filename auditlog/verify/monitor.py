"""``auditlog monitor``: follow each log's checkpoints and prove every step append-only.

For each log the read API lists, the monitor fetches the latest checkpoint, verifies its
signature, and checks it against the last checkpoint it trusted (kept in a local state file,
:mod:`auditlog.verify.trust_state`, since the API only ever serves the latest one): a larger
size must come with a consistency proof (``/v1/proofs/consistency``, or built from tiles when the
server does not offer it), an equal size must have the same root, and a smaller size is a rollback.
Only a checkpoint that passes replaces the trusted one. Anything else is an :class:`Alert`:
printed as a JSON line on stderr and, if configured, POSTed as JSON to a webhook.

The first checkpoint seen for a log is trusted on first use, as a witness does; pin an earlier
one by writing it into the state file.
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
from typing import Any

from auditlog.core.consistency import Rollback, open_checkpoint, verify_checkpoints
from auditlog.core.errors import AuditLogError, NoteError, ProofError
from auditlog.core.hashing import LogHasher, get_hasher
from auditlog.core.note import NoteVerifier
from auditlog.core.policy import Policy
from auditlog.core.proof import consistency_proof, consistency_tiles
from auditlog.core.tiles import TILE_WIDTH, TileID, tiles_for_size
from auditlog.verify.read_api import ReadApi, ReadApiError
from auditlog.verify.trust_state import load_state, save_state

__all__ = ["Alert", "check_log", "monitor_once", "proof_from_tiles", "run_monitor"]


@dataclass(frozen=True, slots=True)
class Alert:
    log: str
    origin: str
    kind: str  # checkpoint-signature, rollback, fork, inconsistent, unreachable
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
    listed: dict[str, Any],
    verifiers: Sequence[NoteVerifier],
    trusted: str | None,
    policy: Policy | None = None,
) -> tuple[str | None, Alert | None]:
    """One look at one log: (the note to trust from now on, or None to keep; an alert)."""
    log, origin = str(listed["log"]), str(listed["origin"])
    hasher = get_hasher(str(listed["hash_scheme"]))

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
        new = open_checkpoint(note, verifiers, policy)
    except AuditLogError as exc:
        return alert("checkpoint-signature", f"{type(exc).__name__}: {exc}", None, None)
    if new.origin != origin:
        return alert("checkpoint-signature", f"checkpoint names origin {new.origin!r}", None, None)
    if trusted is None:
        return note, None
    old = open_checkpoint(trusted, verifiers)
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


def monitor_once(
    api: ReadApi,
    verifiers: Sequence[NoteVerifier],
    state_path: Path,
    *,
    log_ids: Sequence[str] | None = None,
    policy: Policy | None = None,
    emit: Callable[[Alert], None],
) -> tuple[int, list[Alert]]:
    """Check every log once, persisting what is newly trusted; (logs checked, alerts)."""
    state = load_state(state_path)
    alerts: list[Alert] = []
    checked = 0
    for listed in api.logs():
        if log_ids and listed.get("log") not in log_ids:
            continue
        origin = str(listed["origin"])
        try:
            trust, alert = check_log(api, listed, verifiers, state.get(origin), policy)
        except ReadApiError as exc:
            alert, trust = (
                Alert(str(listed["log"]), origin, "unreachable", str(exc), None, None),
                None,
            )
        checked += 1
        if alert is not None:
            alerts.append(alert)
            emit(alert)
        if trust is not None:
            state[origin] = trust
    save_state(state_path, state)
    return checked, alerts


def run_monitor(
    api: ReadApi,
    verifiers: Sequence[NoteVerifier],
    state_path: Path,
    *,
    log_ids: Sequence[str] | None = None,
    policy: Policy | None = None,
    webhook: str | None = None,
    interval: float = 10.0,
    once: bool = False,
) -> int:
    """Loop until an inconsistency (exit 1) or, with ``once``, after one round (0 or 1).

    An unreachable server is alerted but not fatal in a loop: the next round tries again.
    """

    def emit(alert: Alert) -> None:
        print(json.dumps({"alert": asdict(alert)}), file=sys.stderr, flush=True)
        if webhook:
            _post_webhook(webhook, alert)

    while True:
        try:
            checked, alerts = monitor_once(
                api, verifiers, state_path, log_ids=log_ids, policy=policy, emit=emit
            )
        except ReadApiError as exc:
            emit(Alert("*", "*", "unreachable", str(exc), None, None))
            checked, alerts = 0, []
            if once:
                return 2
        fatal = [a for a in alerts if a.kind != "unreachable"]
        print(f"checked {checked} logs, {len(fatal)} inconsistencies", flush=True)
        if fatal:
            return 1
        if once:
            return 2 if alerts else 0
        time.sleep(interval)
