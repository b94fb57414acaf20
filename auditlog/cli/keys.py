"""``auditlog keygen``, and the signing-key writer that ``auditlog up``, tests and benches share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from auditlog.cli.args import EXIT_OK, Subparsers, UsageError


def write_signing_key(path: Path, name: str) -> str:
    """Create an Ed25519 note key at ``path`` (mode 0600) and return its verifier key."""
    from auditlog.core.note import NoteSigner

    signer = NoteSigner.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(signer.skey() + "\n")
    path.with_suffix(".vkey").write_text(signer.vkey() + "\n", encoding="utf-8")
    return str(signer.vkey())


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists():
        raise UsageError(f"{path} exists; refusing to overwrite a signing key")
    vkey = write_signing_key(path, args.name)
    print(f"signing key: {path}\nverifier key ({path.with_suffix('.vkey')}):\n{vkey}")
    return EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    kg = sub.add_parser("keygen", help="create an Ed25519 checkpoint signing key")
    kg.add_argument("--name", required=True, help="key name, usually the log origin prefix")
    kg.add_argument("--out", required=True, help="file for the signing key (.vkey written beside)")
    kg.set_defaults(func=cmd_keygen)
