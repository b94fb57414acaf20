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

Log keys are not matched to the checkpoint origin by name: this project names its log key after
the origin *prefix* (one key signs every partition's log), so the key and the origin line are
checked separately (``origin`` argument of :meth:`Policy.verify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.cosignature import CosignatureVerifier, verified_cosigners
from auditlog.core.errors import NoteError, OriginMismatch, SignatureError
from auditlog.core.note import NoteVerifier, open_note

__all__ = ["Policy", "PolicyError", "QuorumNotMet", "VerifiedCheckpoint", "parse_policy"]

NONE = "none"


class PolicyError(NoteError):
    """A policy file that does not follow the tlog-policy syntax."""


class QuorumNotMet(SignatureError):  # noqa: N818 - reads as a verdict, like the core tree
    """The checkpoint is signed by a listed log but not cosigned by a quorum of witnesses."""


@dataclass(frozen=True, slots=True)
class _Group:
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    cosigners: dict[str, int]  # witness name -> cosignature timestamp


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
    ) -> VerifiedCheckpoint:
        """Check ``note`` against the policy; raises SignatureError / QuorumNotMet / NoteError."""
        logs = [*self.logs, *extra_logs]
        if not logs:
            raise SignatureError("the policy lists no log key and none was given")
        opened = open_note(note, logs)
        checkpoint = Checkpoint.from_text(opened.text)
        if origin is not None and checkpoint.origin != origin:
            raise OriginMismatch(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
        cosigners = verified_cosigners(note, self.witnesses)
        if not self.satisfied(cosigners):
            have = ", ".join(sorted(cosigners)) or "none"
            raise QuorumNotMet(
                f"witness quorum {self.quorum!r} not met (valid cosignatures from: {have})"
            )
        return VerifiedCheckpoint(checkpoint, cosigners)


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
