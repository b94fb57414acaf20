"""What an audit does with the verifier's memory (:mod:`auditlog.verify.trust_state`).

Both audit edges (:mod:`auditlog.verify.audit_db`, :mod:`auditlog.verify.audit_http`) read the
server's listing once, hold it against the state (:func:`~auditlog.verify.trust_state.reconcile`),
audit each selected log with the hash scheme the state pins and the checkpoint it remembers as
signed history, and hand back an :class:`AuditRun`: every result with the state's findings in it,
and a result of its own for each remembered log that is gone. :meth:`AuditRun.learn` then
updates the state with what passed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from auditlog.core.audit import AuditedLog, Finding, StoredCheckpoint
from auditlog.verify.trust_state import ListedLog, Reconciled, StateFinding, TrustState

__all__ = [
    "AuditRun",
    "audit_run",
    "check_requested",
    "remembered_history",
    "remembered_pruned",
]


def _finding(f: StateFinding) -> Finding:
    return Finding(f.log, f.kind, None, None, f.detail)


def remembered_history(state: TrustState | None, origin: str) -> list[StoredCheckpoint]:
    """The remembered checkpoint of ``origin`` as signed history for the auditor (or none)."""
    known = state.logs.get(origin) if state is not None else None
    if known is None or known.checkpoint is None:
        return []
    return [StoredCheckpoint(known.checkpoint, source="state")]


def remembered_pruned(state: TrustState | None, origin: str) -> str | None:
    """The pruned-bound statement remembered for ``origin``: the bound must not go below it."""
    known = state.logs.get(origin) if state is not None else None
    return known.pruned if known is not None else None


def check_requested(
    log_ids: Collection[str] | None, listing: Sequence[ListedLog], state: TrustState | None
) -> None:
    """LookupError for a requested log id that is neither listed nor remembered.

    A remembered id that is no longer listed is not a usage error but a finding.
    """
    known = {entry.log for entry in listing}
    if state is not None:
        known |= {r.log for r in state.logs.values() if r.log is not None}
    missing = set(log_ids or ()) - known
    if missing:
        raise LookupError(f"no such log: {', '.join(sorted(missing))}")


@dataclass(frozen=True, slots=True)
class AuditRun:
    """The results of one audit, state findings included, and the reconciled listing."""

    logs: list[AuditedLog]
    reconciled: Reconciled

    def learn(self, state: TrustState) -> None:
        """Remember what passed.

        A clean log: its origin, id, the scheme it was verified with and its largest verified
        checkpoint. A log seen for the first time that is not clean: its origin, id and scheme
        only, so that it cannot later vanish unseen. A remembered log that is not clean keeps
        what was remembered (its last good checkpoint, its old id and scheme).
        """
        results = {r.log: r for r in self.logs}
        for entry in self.reconciled.listed:
            result = results.get(entry.log)
            if result is None:
                continue
            scheme = self.reconciled.schemes[entry.origin]
            clean = not result.findings and not result.suppressed
            if clean:
                state.learn(entry.origin, entry.log, scheme, result.head_note, result.pruned_note)
            elif entry.origin not in state.logs:
                state.learn(entry.origin, entry.log, scheme, None)


def audit_run(results: Sequence[AuditedLog], reconciled: Reconciled) -> AuditRun:
    """Put the state's findings into the results they name; a gone log gets its own result."""
    logs = []
    for result in results:
        extra = tuple(_finding(f) for f in reconciled.findings_for(result.log))
        logs.append(replace(result, findings=extra + result.findings) if extra else result)
    logs.extend(
        AuditedLog(f.log, f.origin, 0, 0, 0, (_finding(f),), 0, None) for f in reconciled.unlisted()
    )
    return AuditRun(logs, reconciled)
