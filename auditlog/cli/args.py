"""What every command group shares: exit codes, UsageError, and readers for argument values.

Exit codes follow one rule everywhere: 0 success (verified), 1 verification failed (the reason
and the record are printed), 2 usage, configuration or I/O error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditlog.core.hashing import LogHasher

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# What ``add_subparsers()`` returns; argparse has no public name for it.
Subparsers = argparse._SubParsersAction


class UsageError(Exception):
    """Bad arguments or unreadable input: exit code 2."""


def read_arg_file(value: str, what: str) -> str:
    """Read ``value`` as a path ('-' for stdin)."""
    if value == "-":
        return sys.stdin.read()
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {value!r}: {exc.strerror}") from exc


def vkeys(values: Sequence[str]) -> list[Any]:
    """Verifier keys given inline (``name+hash+key``) or as key files.

    A key file holds one vkey a line (``auditlog logs --format vkeys`` writes one per log);
    blank lines and lines starting with ``#`` are skipped.
    """
    from auditlog.core.errors import NoteError
    from auditlog.core.note import NoteVerifier

    out = []
    for value in values:
        texts = [value]
        if "+" not in value or Path(value).exists():
            lines = [line.strip() for line in read_arg_file(value, "key").splitlines()]
            texts = [line for line in lines if line and not line.startswith("#")]
            if not texts:
                raise UsageError(f"key file {value!r} holds no verifier key")
        for text in texts:
            try:
                out.append(NoteVerifier.from_vkey(text))
            except NoteError as exc:
                raise UsageError(f"not a verifier key: {exc}") from exc
    return out


def policy(path: str | None) -> Any:
    """The C2SP tlog-policy in ``path``, or None without one."""
    from auditlog.core.policy import PolicyError, parse_policy

    if path is None:
        return None
    try:
        return parse_policy(read_arg_file(path, "policy"))
    except PolicyError as exc:
        raise UsageError(f"policy {path}: {exc}") from exc


def max_cosignature_age(args: argparse.Namespace, log_policy: Any) -> int | None:
    """--max-cosignature-age in seconds, checked: it bounds a policy's witnesses, so needs one."""
    value = getattr(args, "max_cosignature_age", None)
    if value is None:
        return None
    if value < 0:
        raise UsageError("--max-cosignature-age must not be negative")
    if log_policy is None:
        raise UsageError("--max-cosignature-age bounds a policy's witnesses: give --policy")
    return int(value)


def freshness(args: argparse.Namespace, log_policy: Any) -> Any:
    """The cosignature freshness bound as of now (this machine's clock), or None."""
    import time

    from auditlog.core.cosignature import Freshness

    max_age = max_cosignature_age(args, log_policy)
    return None if max_age is None else Freshness(int(time.time()), max_age)


def hasher(name: str) -> LogHasher:
    from auditlog.core.errors import UnknownHashScheme
    from auditlog.core.hashing import get_hasher

    try:
        return get_hasher(name)
    except UnknownHashScheme as exc:
        raise UsageError(str(exc)) from exc


def database_url(args: argparse.Namespace) -> str:
    """--database-url when given, else AUDITLOG_DATABASE_URL, else the local default."""
    from auditlog.runtime.settings import DEFAULT_DATABASE_URL, Env

    return str(
        getattr(args, "database_url", None) or Env().text("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
