"""C2SP tlog-policy: which logs and witnesses a verifier trusts, and the cosigning quorum.

::

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>|none

Names are defined before use (so groups cannot be circular), each name is a member at most
once per group, exactly one quorum line. Verification fails closed: a checkpoint counts only if
a listed log signed it *and* the quorum of valid cosignatures is met; a cosignature line that
claims a listed witness but does not verify fails the whole checkpoint.

**What a log line pins.** The spec says a log vkey's key name "MUST correspond to the log's
origin line". Each log signs under a key name equal to its origin, so a log's own vkey pins
exactly that log; the deployment-wide vkey (named after the origin *prefix*, the name every log
was signed under before) pins every log below it, ``<name>/<topic>/<partition>``. A ``log``
line's key is accepted only for checkpoints whose origin is its key name or starts with its key
name and ``/``, signed under a name that covers the origin too (the key-name rule,
:mod:`auditlog.core.log_keys`). A single origin is pinned by the caller (``origin`` argument of
:meth:`Policy.verify`, ``--origin``); the format has no line for it, and an unknown keyword
would make the file unreadable to other verifiers. Keys a caller adds outside the policy
(``extra_logs``) are not pinned by name.

**Freshness.** The format has no line for it either: a bound on cosignature age is the caller's
(:class:`~auditlog.core.cosignature.Freshness`); stale cosignatures do not count toward the quorum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.cosignature import (
    CosignatureVerifier,
    Freshness,
    split_fresh,
    verified_cosigners,
)
from auditlog.core.errors import NoteError, OriginMismatch, SignatureError
from auditlog.core.log_keys import checkpoint_verifiers, key_covers_origin
from auditlog.core.note import Note, NoteVerifier, open_note, parse_note

__all__ = [
    "Policy",
    "PolicyError",
    "QuorumNotMet",
    "StaleCosignatures",
    "VerifiedCheckpoint",
    "key_covers_origin",
    "parse_policy",
]

NONE = "none"


class PolicyError(NoteError):
    """A policy file that does not follow the tlog-policy syntax."""


class QuorumNotMet(SignatureError):  # noqa: N818 - reads as a verdict, like the core tree
    """The checkpoint is signed by a listed log but not cosigned by a quorum of witnesses."""


class StaleCosignatures(QuorumNotMet):
    """The quorum is met only by counting cosignatures outside the freshness bound."""


@dataclass(frozen=True, slots=True)
class _Group:
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    cosigners: dict[str, int]  # witness name -> timestamp, the cosignatures that counted
    stale: dict[str, str] = field(default_factory=dict)  # witness name -> why it did not count


@dataclass(slots=True)
class Policy:
    logs: list[NoteVerifier] = field(default_factory=list)
    log_urls: dict[str, str] = field(default_factory=dict)
    witnesses: dict[str, CosignatureVerifier] = field(default_factory=dict)
    witness_urls: dict[str, str] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    quorum: str = NONE

    def satisfied(self, cosigners: set[str] | dict[str, int], name: str | None = None) -> bool:
        """Whether ``cosigners`` (witness names with valid cosignatures) meet ``name``/quorum."""
        name = self.quorum if name is None else name
        if name == NONE:
            return True
        if name in self.witnesses:
            return name in cosigners
        group = self.groups[name]
        met = sum(1 for member in group.members if self.satisfied(cosigners, member))
        return met >= group.threshold

    def verify(
        self,
        note: str,
        extra_logs: Sequence[NoteVerifier] = (),
        origin: str | None = None,
        freshness: Freshness | None = None,
    ) -> VerifiedCheckpoint:
        """Check ``note`` against the policy.

        Raises SignatureError / MalformedNote for the note, OriginMismatch when ``origin`` is
        given and differs or when only policy log keys whose name does not cover the origin
        signed it, QuorumNotMet (StaleCosignatures when only stale cosignatures would meet it).
        """
        if not self.logs and not extra_logs:
            raise SignatureError("the policy lists no log key and none was given")
        parsed = parse_note(note)
        # The claimed origin picks the keys to try (the key-name rule); nothing is trusted
        # before the note is opened with them.
        claimed = Checkpoint.from_text(parsed.text).origin
        names = {sig.name for sig in parsed.signatures}
        pinned = checkpoint_verifiers(claimed, self.logs, names)
        opened = open_note(note, [*pinned, *checkpoint_verifiers(claimed, extra_logs, names)])
        checkpoint = Checkpoint.from_text(opened.text)
        if origin is not None and checkpoint.origin != origin:
            raise OriginMismatch(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
        self._check_signer_covers(opened, checkpoint.origin, pinned)
        cosigners = verified_cosigners(note, self.witnesses)
        stale: dict[str, str] = {}
        if freshness is not None:
            cosigners, stale = split_fresh(cosigners, freshness)
        if not self.satisfied(cosigners):
            have = ", ".join(sorted(cosigners)) or "none"
            why = "; ".join(f"{name} {problem}" for name, problem in sorted(stale.items()))
            if stale and self.satisfied({*cosigners, *stale}):
                raise StaleCosignatures(
                    f"witness quorum {self.quorum!r} is met only by stale cosignatures ({why})"
                )
            raise QuorumNotMet(
                f"witness quorum {self.quorum!r} not met (valid cosignatures from: {have}"
                + (f"; stale: {why})" if stale else ")")
            )
        return VerifiedCheckpoint(checkpoint, cosigners, stale)

    def _check_signer_covers(
        self, opened: Note, origin: str, pinned_keys: Sequence[NoteVerifier]
    ) -> None:
        """At least one good signature must be by a key allowed to sign ``origin``.

        A policy log key may sign only the origins its name covers; a key the caller added
        (not listed in the policy) is the caller's own pin and is not judged by name.
        """
        pinned = {(log.name, log.key_id) for log in pinned_keys}
        for sig in opened.signatures:
            if (sig.name, sig.key_id) not in pinned or key_covers_origin(sig.name, origin):
                return
        names = ", ".join(sorted({sig.name for sig in opened.signatures}))
        raise OriginMismatch(
            f"checkpoint for {origin!r} is signed only by policy log key {names}, which signs"
            " only its own name and the origins below it (<name>/...)"
        )


def _fields(line: str) -> list[str]:
    # Only ASCII space and tab separate items.
    return line.replace("\t", " ").split()


class _Parser:
    """One method per line kind; state is what earlier lines defined."""

    def __init__(self) -> None:
        self.policy = Policy()
        self.names: set[str] = set()
        self.keys: set[bytes] = set()
        self.quorum_seen = False

    def _key(self, public: bytes) -> None:
        # Duplicates are judged by the key itself, whatever name or key ID wraps it.
        if public in self.keys:
            raise PolicyError("duplicate key")
        self.keys.add(public)

    def _new_name(self, name: str) -> None:
        if name in self.names or name == NONE:
            raise PolicyError(f"name {name!r} already defined")

    def log(self, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise PolicyError("log <vkey> [<url>]")
        log = NoteVerifier.from_vkey(args[0])
        self._key(log.public_bytes)
        self.policy.logs.append(log)
        if len(args) == 2:
            self.policy.log_urls[log.name] = args[1]

    def witness(self, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise PolicyError("witness <name> <vkey> [<url>]")
        name = args[0]
        self._new_name(name)
        witness = CosignatureVerifier.from_vkey(args[1])
        self._key(witness.public_bytes)
        self.names.add(name)
        # Cosignature lines are matched by the vkey's own name; the policy name is local.
        self.policy.witnesses[name] = witness
        if len(args) == 3:
            self.policy.witness_urls[name] = args[2]

    def group(self, args: list[str]) -> None:
        if len(args) < 3:
            raise PolicyError("group <name> all|any|<k> <member>...")
        name, spec, members = args[0], args[1], tuple(args[2:])
        self._new_name(name)
        unknown = [m for m in members if m not in self.names]
        if unknown:
            raise PolicyError(f"undefined member {unknown[0]!r}")
        if len(set(members)) != len(members):
            raise PolicyError("a member is listed twice")
        if spec == "all":
            k = len(members)
        elif spec == "any":
            k = 1
        elif spec.isascii() and spec.isdigit() and not spec.startswith("0"):
            k = int(spec)
            if not 1 <= k <= len(members):
                raise PolicyError(f"threshold {k} outside 1..{len(members)}")
        else:
            raise PolicyError(f"bad threshold {spec!r}")
        self.names.add(name)
        self.policy.groups[name] = _Group(k, members)

    def quorum(self, args: list[str]) -> None:
        if len(args) != 1:
            raise PolicyError("quorum <name>")
        if self.quorum_seen:
            raise PolicyError("a second quorum line")
        if args[0] != NONE and args[0] not in self.names:
            raise PolicyError(f"undefined quorum {args[0]!r}")
        self.quorum_seen = True
        self.policy.quorum = args[0]


def parse_policy(text: str) -> Policy:
    """Parse a policy file; PolicyError with the line number on anything the spec forbids."""
    parser = _Parser()
    handlers = {
        "log": parser.log,
        "witness": parser.witness,
        "group": parser.group,
        "quorum": parser.quorum,
    }
    for number, raw in enumerate(text.split("\n"), start=1):
        if any(c < " " and c != "\t" for c in raw) or "\x7f" in raw:
            raise PolicyError(f"line {number}: control character")
        items = _fields(raw)
        if not items or items[0].startswith("#"):
            continue
        handler = handlers.get(items[0])
        if handler is None:
            raise PolicyError(f"line {number}: unknown keyword {items[0]!r}")
        try:
            handler(items[1:])
        except NoteError as exc:
            raise PolicyError(f"line {number}: {exc}") from exc
    if not parser.quorum_seen:
        raise PolicyError("the policy has no quorum line")
    return parser.policy
