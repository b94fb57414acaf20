"""The auditor's HTTP edge: audit logs from the public read API alone, no database access.

What the API exposes bounds what can be checked. With a token that may read entry bundles the
tree is rebuilt from the entries, and entries, tiles and the latest signed checkpoint are
checked against each other, as from the database. Without one, the level-0 tiles stand in for
the entries: the tile hierarchy and the root are still checked, the entries are not. Searchable
columns and event rows never leave the server, so ``column-mismatch`` and row-level findings are
database-only; and the API serves only the latest checkpoint, so history comes from the state
file (see :mod:`auditlog.verify.trust_state`) that `auditlog audit` and `auditlog monitor` keep,
which also pins each remembered log's hash scheme (``/v1/logs`` is not asked twice).
"""

from __future__ import annotations

from collections.abc import Sequence

from auditlog.core.audit import (
    AuditedLog,
    LogAuditor,
    StoredCheckpoint,
    StoredHead,
    StoredStatements,
)
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.errors import AuditLogError
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteVerifier, parse_note
from auditlog.core.tiles import TILE_WIDTH, TileID, tiles_for_size
from auditlog.verify.audit_db import Progress
from auditlog.verify.audit_state import (
    AuditRun,
    audit_run,
    check_requested,
    remembered_history,
    remembered_pruned,
)
from auditlog.verify.read_api import ReadApi, ReadApiError
from auditlog.verify.trust_state import ListedLog, TrustState, reconcile

__all__ = ["audit_api"]

_PROGRESS_EVERY = 64  # chunks


def _signed_size(note: str | None) -> int | None:
    # Only to size the fetches; the auditor verifies the note before trusting anything in it.
    if note is None:
        return None
    try:
        return Checkpoint.from_text(parse_note(note).text).size
    except AuditLogError:
        return None


def _audit_log(
    api: ReadApi,
    listed: ListedLog,
    hash_scheme: str,
    verifiers: Sequence[NoteVerifier],
    extra: Sequence[StoredCheckpoint],
    remembered: str | None,
    progress: Progress | None,
    max_findings: int,
) -> AuditedLog:
    log_id = listed.log
    pruned = api.pruned(log_id)
    # Without a token only tiles are read: no entry is missing, no erasure record is needed.
    statements = StoredStatements(
        [pruned] if pruned is not None else [],
        api.erasures(log_id) if api.has_token else [],
        remembered,
    )
    note = api.checkpoint(log_id)
    size = _signed_size(note)
    if size is None:
        size = listed.size or 0
    head = StoredHead(log_id, listed.origin, hash_scheme, size, None, note)
    auditor = LogAuditor(
        head,
        get_hasher(head.hash_scheme),
        verifiers,
        extra,
        entries_from="bundles" if api.has_token else "tiles",
        max_findings=max_findings,
        statements=statements,
    )
    total = auditor.expected_size
    partial = dict(tiles_for_size(total))

    def width(tile: TileID) -> int:
        return partial.get(tile, TILE_WIDTH)

    def answer() -> None:
        while wanted := auditor.wanted_tiles():
            auditor.add_tiles({t: api.tile(log_id, t.level, t.index, width(t)) for t in wanted})

    chunks = -(-total // TILE_WIDTH)
    for chunk in range(chunks):
        w = width(TileID(0, chunk))
        tile = api.tile(log_id, 0, chunk, w)
        bundle = api.bundle(log_id, chunk, w) if api.has_token else None
        auditor.add_chunk(chunk, [], tile, bundle)
        answer()
        if progress is not None and (chunk % _PROGRESS_EVERY == 0 or chunk == chunks - 1):
            progress(log_id, min((chunk + 1) * TILE_WIDTH, total), total)
    auditor.end_of_entries()
    answer()
    return auditor.finish()


def audit_api(
    api: ReadApi,
    verifiers: Sequence[NoteVerifier],
    *,
    log_ids: Sequence[str] | None = None,
    state: TrustState | None = None,
    progress: Progress | None = None,
    max_findings: int = 10_000,
) -> AuditRun:
    """Audit every log the API lists (or ``log_ids``), as :func:`audit_database` does.

    The listing is read once; a remembered log's hash scheme comes from ``state``, never from
    ``/v1/logs``. LookupError for a log id that is neither listed nor remembered.
    """
    listing = []
    for entry in api.logs():
        try:
            log, origin, scheme = str(entry["log"]), str(entry["origin"]), str(entry["hash_scheme"])
        except (KeyError, TypeError) as exc:
            raise ReadApiError(f"GET /v1/logs: a log without {exc}") from exc
        size = entry.get("size")
        listing.append(ListedLog(log, origin, scheme, size if isinstance(size, int) else None))
    check_requested(log_ids, listing, state)
    reconciled = reconcile(state or TrustState(), listing, log_ids)
    results = [
        _audit_log(
            api,
            entry,
            reconciled.schemes[entry.origin],
            verifiers,
            remembered_history(state, entry.origin),
            remembered_pruned(state, entry.origin),
            progress,
            max_findings,
        )
        for entry in reconciled.listed
    ]
    return audit_run(results, reconciled)
