"""A verifier's memory: every log it has seen, with its hash scheme and largest verified checkpoint.

The read API serves only the latest checkpoint, and a database can be rolled back wholesale, so
the one defence against a log that shrinks, forks, disappears or changes its hash scheme between
two looks is for the verifier to remember what it saw. The file (version 2) is JSON::

    {"version": 2,
     "logs": {"<origin>": {"log": "<log id>", "hash_scheme": "<scheme>",
                           "checkpoint": "<signed note>" | null}}}

keyed by origin, the log's identity in its checkpoints. ``log`` is the id the server listed it
under, ``hash_scheme`` the scheme it is verified with from then on (never the server's word
again), ``checkpoint`` the largest signed checkpoint that passed (null until the log signed one).
``log`` and ``hash_scheme`` are null only for a log migrated from version 1 that has not been
listed since.
Version 1 files (``{"version": 1, "logs": {origin: signed note}}``) are still read: their logs
have no id or scheme yet, which the next run learns from the server as on first use, and the
file is saved as version 2. The file is written to a temporary file and renamed over the old one,
so a crash never leaves half a state. Notes are kept verbatim and re-verified by whoever uses them.

:func:`reconcile` holds a server's listing against the state: a remembered log that is no longer
listed (``missing-log``), listed under another id or whose id now serves another origin
(``renamed-log``), or listed with another hash scheme (``scheme-changed``) is a finding.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.errors import AuditLogError
from auditlog.core.hashing import HASH_SCHEMES
from auditlog.core.note import parse_note

__all__ = [
    "STATE_KINDS",
    "STATE_VERSION",
    "ListedLog",
    "Reconciled",
    "RememberedLog",
    "StateError",
    "StateFinding",
    "TrustState",
    "default_state_path",
    "load_state",
    "reconcile",
    "save_state",
]

STATE_VERSION: Final = 2
# What a listing can do wrong against the state; each is a failed audit and a monitor alert.
STATE_KINDS: Final = ("missing-log", "renamed-log", "scheme-changed")


class StateError(Exception):
    """The state file exists but cannot be read as a state file."""


@dataclass(frozen=True, slots=True)
class RememberedLog:
    """What the verifier knows about one origin."""

    log: str | None  # the log id it was listed under; None only when read from a v1 file
    hash_scheme: str | None  # the scheme it is verified with; None only when read from a v1 file
    checkpoint: str | None  # the largest verified signed checkpoint; None before the first
    pruned: str | None = None  # the highest verified pruned-bound statement (retention)

    def size(self) -> int | None:
        """The remembered checkpoint's size, unverified (for messages only), or None."""
        if self.checkpoint is None:
            return None
        try:
            return Checkpoint.from_text(parse_note(self.checkpoint).text).size
        except AuditLogError:
            return None

    def to_json(self) -> dict[str, Any]:
        out = {"log": self.log, "hash_scheme": self.hash_scheme, "checkpoint": self.checkpoint}
        if self.pruned is not None:
            out["pruned"] = self.pruned
        return out


@dataclass(slots=True)
class TrustState:
    """origin -> what is remembered of it; ``version`` is the format the file was read in."""

    logs: dict[str, RememberedLog] = field(default_factory=dict)
    version: int = STATE_VERSION

    def checkpoints(self) -> dict[str, str]:
        """origin -> remembered signed checkpoint, for the logs that have one."""
        return {o: r.checkpoint for o, r in self.logs.items() if r.checkpoint is not None}

    def learn(
        self,
        origin: str,
        log: str,
        hash_scheme: str,
        checkpoint: str | None,
        pruned: str | None = None,
    ) -> None:
        """Remember ``origin`` as served and verified now; a None checkpoint (or pruned-bound
        statement) keeps the old one.

        Callers learn only what passed: an origin first seen, or a log whose check was clean.
        """
        old = self.logs.get(origin)
        keep = old.checkpoint if old is not None else None
        kept_pruned = old.pruned if old is not None else None
        self.logs[origin] = RememberedLog(
            log, hash_scheme, checkpoint or keep, pruned or kept_pruned
        )

    def forget(self, origins: Iterable[str]) -> list[str]:
        """Drop these origins (a log retired on purpose); returns those that were remembered."""
        return [o for o in origins if self.logs.pop(o, None) is not None]


def _entry(origin: str, value: object, path: Path) -> RememberedLog:
    keys = set(value) if isinstance(value, dict) else set()
    if not isinstance(value, dict) or keys - {"pruned"} != {"log", "hash_scheme", "checkpoint"}:
        raise StateError(f"{path}: log {origin!r} is not {{log, hash_scheme, checkpoint}}")
    log, scheme, note = value["log"], value["hash_scheme"], value["checkpoint"]
    if not isinstance(log, str | None) or not isinstance(scheme, str | None):
        raise StateError(f"{path}: log {origin!r} has a log id or hash scheme that is no string")
    if scheme is not None and scheme not in HASH_SCHEMES:
        raise StateError(f"{path}: log {origin!r} has an unknown hash scheme {scheme!r}")
    if note is not None and not isinstance(note, str):
        raise StateError(f"{path}: log {origin!r} has a checkpoint that is not a string")
    pruned = value.get("pruned")
    if pruned is not None and not isinstance(pruned, str):
        raise StateError(f"{path}: log {origin!r} has a pruned statement that is not a string")
    return RememberedLog(log, scheme, note, pruned)


def load_state(path: Path) -> TrustState:
    """The state in ``path`` (version 1 or 2); an empty state when the file does not exist yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return TrustState()
    except OSError as exc:
        raise StateError(f"cannot read state file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{path} is not JSON: {exc}") from exc
    logs = data.get("logs") if isinstance(data, dict) else None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(logs, dict) or not all(isinstance(k, str) for k in logs):
        raise StateError(f"{path} is not an auditlog state file")
    if version == 1:
        if not all(isinstance(v, str) for v in logs.values()):
            raise StateError(f"{path} is not an auditlog state file (version 1)")
        return TrustState({o: RememberedLog(None, None, note) for o, note in logs.items()}, 1)
    if version != STATE_VERSION:
        raise StateError(f"{path}: state file version {version!r}, this verifier reads 1 and 2")
    return TrustState({o: _entry(o, v, path) for o, v in logs.items()})


def save_state(path: Path, state: TrustState) -> None:
    """Replace the state file atomically (write, fsync, rename), always as version 2.

    An entry still missing its id or scheme (a v1 entry whose log was not listed) is written
    with nulls in their place; such an entry reads back as version 1 did, so nothing is lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    logs = {o: r.to_json() for o, r in sorted(state.logs.items())}
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": STATE_VERSION, "logs": logs}, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    state.version = STATE_VERSION


# -- a listing held against the state ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListedLog:
    """One log as a server lists it (``/v1/logs`` or the ``logs`` table): untrusted."""

    log: str
    origin: str
    hash_scheme: str
    size: int | None = None  # the size the listing claims, when it says one


@dataclass(frozen=True, slots=True)
class StateFinding:
    """A remembered log the listing lost, moved or re-schemed; ``log`` is the id to name."""

    log: str
    origin: str
    kind: str  # one of STATE_KINDS
    detail: str


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The outcome of :func:`reconcile`."""

    listed: tuple[ListedLog, ...]  # the listed logs selected for checking
    schemes: dict[str, str]  # origin of each selected log -> the hash scheme to verify it with
    findings: tuple[StateFinding, ...]

    def findings_for(self, log: str) -> list[StateFinding]:
        return [f for f in self.findings if f.log == log]

    def unlisted(self) -> list[StateFinding]:
        """Findings that belong to no selected listed log (the log is gone, or not selected)."""
        ids = {entry.log for entry in self.listed}
        return [f for f in self.findings if f.log not in ids]

    def flagged(self, log: str) -> bool:
        return any(f.log == log for f in self.findings)


def _size_text(remembered: RememberedLog) -> str:
    size = remembered.size()
    return "no checkpoint yet" if size is None else f"last verified at size {size}"


def reconcile(
    state: TrustState, listing: Sequence[ListedLog], log_ids: Collection[str] | None = None
) -> Reconciled:
    """Hold a server's listing against the remembered logs.

    ``log_ids`` restricts both sides: the listed logs with those ids, and the remembered logs
    that were listed under one of them or whose origin a selected log carries. A remembered
    log's hash scheme is the one to verify it with, whatever the listing says now; only a log
    seen for the first time (or migrated from a version 1 file) takes the listed one.
    """
    selected = tuple(e for e in listing if not log_ids or e.log in log_ids)
    by_origin: dict[str, list[ListedLog]] = {}
    for entry in listing:
        by_origin.setdefault(entry.origin, []).append(entry)
    by_id = {entry.log: entry for entry in listing}
    selected_origins = {e.origin for e in selected}
    findings: list[StateFinding] = []
    for origin, known in sorted(state.logs.items()):
        if log_ids and known.log not in log_ids and origin not in selected_origins:
            continue
        where = known.log or "?"
        listed_as = by_origin.get(origin, [])
        for entry in listed_as:
            if known.log is not None and entry.log != known.log:
                findings.append(StateFinding(entry.log, origin, "renamed-log", (
                    f"origin {origin} was log {known.log}; it is now listed as {entry.log}"
                )))  # fmt: skip
            if known.hash_scheme is not None and entry.hash_scheme != known.hash_scheme:
                findings.append(StateFinding(entry.log, origin, "scheme-changed", (
                    f"origin {origin} is remembered with hash scheme {known.hash_scheme}; it is"
                    f" now listed with {entry.hash_scheme} (verified with {known.hash_scheme})"
                )))  # fmt: skip
        if listed_as:
            continue
        now = by_id.get(where)
        if now is not None:
            findings.append(StateFinding(where, origin, "renamed-log", (
                f"log {where} was origin {origin} ({_size_text(known)}); it now serves"
                f" origin {now.origin}, and {origin} is listed nowhere"
            )))  # fmt: skip
        else:
            findings.append(StateFinding(where, origin, "missing-log", (
                f"remembered origin {origin} ({_size_text(known)}) is not listed any more"
            )))  # fmt: skip
    schemes = {}
    for entry in selected:
        remembered = state.logs.get(entry.origin)
        pinned = remembered.hash_scheme if remembered is not None else None
        schemes[entry.origin] = pinned or entry.hash_scheme
    return Reconciled(selected, schemes, tuple(findings))


# -- where the state lives by default ---------------------------------------------------------
def _without_password(url: str) -> urllib.parse.SplitResult | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{port}" if port else "")
    return parts._replace(netloc=netloc, fragment="")


def default_state_path(
    command: str, source: str, keys: Sequence[str], env: Mapping[str, str] | None = None
) -> Path:
    """The per-user state file of ``command`` for one source and set of verifier keys.

    ``$XDG_STATE_HOME/auditlog/`` (``~/.local/state/auditlog/`` when unset or not absolute),
    named ``<command>-<host, port, path>-<16 hex digits>.json``; the digits hash the command,
    the source URL without its password, and the keys, so two sources or two keys never share
    a memory, and no secret ends up in a file name.
    """
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    parts = _without_password(source)
    identity = source if parts is None else urllib.parse.urlunsplit(parts).rstrip("/")
    digest = hashlib.sha256(
        "\n".join(["auditlog-state", command, identity, *sorted(keys)]).encode()
    ).hexdigest()[:16]
    label = "" if parts is None else f"{parts.hostname or ''}-{parts.port or ''}-{parts.path}"
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", label).strip("-.")[:48] or "source"
    return root / "auditlog" / f"{command}-{slug}-{digest}.json"
