"""Is a newer signed checkpoint an extension of an older one? (Verifiers and monitors.)

Both checkpoints must be signed by a trusted key (or satisfy a tlog-policy), name the same log
(the pinned ``origin`` when one is given), and the RFC 9162 consistency proof must lead from the
old root to the new one. A smaller new size is a rollback and an equal size with another root a
fork: no proof can excuse either. A cosignature freshness bound applies to the new checkpoint
only: the old one is history, its witnesses vouched for it when it was new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.cosignature import Freshness
from auditlog.core.errors import OriginMismatch, ProofError, RootMismatch
from auditlog.core.hashing import LogHasher
from auditlog.core.log_keys import open_checkpoint_note
from auditlog.core.note import NoteVerifier
from auditlog.core.policy import Policy
from auditlog.core.proof import verify_consistency

__all__ = ["Rollback", "VerifiedConsistency", "open_checkpoint", "verify_checkpoints"]


class Rollback(ProofError):  # noqa: N818 - reads as a verdict, like the core tree
    """The newer checkpoint is smaller than one already signed."""


@dataclass(frozen=True, slots=True)
class VerifiedConsistency:
    old: Checkpoint
    new: Checkpoint


def open_checkpoint(
    note: str,
    verifiers: Sequence[NoteVerifier],
    policy: Policy | None = None,
    *,
    origin: str | None = None,
    freshness: Freshness | None = None,
) -> Checkpoint:
    """A checkpoint from a note signed by a trusted key (and meeting ``policy`` when given).

    ``origin`` pins the log (OriginMismatch otherwise); ``freshness`` bounds the age of the
    cosignatures the policy's quorum counts (it needs a policy: without one nothing is counted).
    """
    if policy is not None:
        return policy.verify(note, verifiers, origin, freshness).checkpoint
    checkpoint = Checkpoint.from_text(open_checkpoint_note(note, verifiers).text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint


def verify_checkpoints(
    old_note: str,
    new_note: str,
    proof: Sequence[bytes],
    verifiers: Sequence[NoteVerifier],
    hasher: LogHasher,
    policy: Policy | None = None,
    *,
    origin: str | None = None,
    freshness: Freshness | None = None,
) -> VerifiedConsistency:
    """Check that ``new_note`` extends ``old_note``.

    Raises SignatureError / QuorumNotMet / MalformedNote for either note, OriginMismatch (the
    two differ, or differ from ``origin``), StaleCosignatures (the new note's witnesses, under
    ``freshness``), Rollback, RootMismatch (a fork, or a proof leading elsewhere) or
    MalformedProof.
    """
    old = open_checkpoint(old_note, verifiers, policy, origin=origin)
    new = open_checkpoint(new_note, verifiers, policy, origin=origin, freshness=freshness)
    if old.origin != new.origin:
        raise OriginMismatch(f"checkpoints are for {old.origin!r} and {new.origin!r}")
    if new.size < old.size:
        raise Rollback(f"log {old.origin} went back from size {old.size} to {new.size}")
    if new.size == old.size and new.root != old.root:
        raise RootMismatch(old.root, new.root, f"fork at size {old.size}: root")
    verify_consistency(hasher, old.size, new.size, old.root, new.root, proof)
    return VerifiedConsistency(old, new)
