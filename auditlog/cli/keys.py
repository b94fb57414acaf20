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


def write_log_vkeys(path: Path, vkey: str, origins: list[str]) -> list[str]:
    """Write the vkey of each log in ``origins`` (``vkey`` under the log's origin, the key-name
    rule) to ``path``, one a line, a file verifiers take with ``--key``; returns them."""
    from auditlog.core.log_keys import log_vkey
    from auditlog.core.note import NoteVerifier

    key = NoteVerifier.from_vkey(vkey)
    lines = [log_vkey(key, origin) for origin in origins]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return lines


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists():
        raise UsageError(f"{path} exists; refusing to overwrite a signing key")
    if args.partitions is not None and args.partitions < 1:
        raise UsageError("--partitions must be at least 1")
    vkey = write_signing_key(path, args.name)
    print(f"signing key: {path}\ndeployment verifier key ({path.with_suffix('.vkey')}):\n{vkey}")
    if args.partitions is not None:
        origins = [f"{args.name}/{args.topic}/{p}" for p in range(args.partitions)]
        vkeys_file = path.with_suffix(".vkeys")
        lines = write_log_vkeys(vkeys_file, vkey, origins)
        print(f"each log's verifier key ({vkeys_file}):")
        print("\n".join(lines))
    print(
        "Each log signs its checkpoints under its origin as key name: publish each log's vkey"
        f" (`auditlog logs --key {path.with_suffix('.vkey')} --format vkeys`, or GET /v1/logs)."
    )
    return EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    from auditlog.runtime.settings import DEFAULT_TOPIC

    kg = sub.add_parser("keygen", help="create an Ed25519 checkpoint signing key")
    kg.add_argument(
        "--name", required=True, help="key name: the deployment's origin prefix (AUDITLOG_ORIGIN)"
    )
    kg.add_argument("--out", required=True, help="file for the signing key (.vkey written beside)")
    kg.add_argument(
        "--partitions",
        type=int,
        help="also write FILE.vkeys with the vkey of the logs <name>/<topic>/0..N-1",
    )
    kg.add_argument(
        "--topic", default=DEFAULT_TOPIC, help="with --partitions (default %(default)s)"
    )
    kg.set_defaults(func=cmd_keygen)
