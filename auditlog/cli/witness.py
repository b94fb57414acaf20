"""``auditlog witness``: run a C2SP tlog-witness that cosigns the logs it is told to follow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from auditlog.cli.args import EXIT_OK, Subparsers, UsageError, hasher, read_arg_file, vkeys
from auditlog.cli.services import run_uvicorn


def witnessed_logs(specs: list[str], lists: list[str]) -> dict[str, list[Any]]:
    """Origin -> the verifier keys of each log to witness, from ``--log`` and ``--log-list``.

    ``--log VKEY`` (or a file of vkeys) names its log by the key name, the C2SP way;
    ``--log ORIGIN=VKEY`` pairs an origin with a key named otherwise (a deployment-wide vkey).
    """
    from auditlog.core.errors import NoteError
    from auditlog.core.log_list import parse_log_list
    from auditlog.core.note import NoteVerifier

    logs: dict[str, list[Any]] = {}
    for spec in specs:
        # A vkey has no "=" (base64 of 33 bytes needs no padding): VKEY alone names its log.
        origin, sep, vkey = spec.partition("=")
        if not sep:
            for key in vkeys([spec]):
                logs.setdefault(key.name, []).append(key)
            continue
        if not origin:
            raise UsageError(f"--log wants VKEY or ORIGIN=VKEY, got {spec!r}")
        logs.setdefault(origin, []).extend(vkeys([vkey]))
    for path in lists:
        try:
            listed = parse_log_list(read_arg_file(path, "log list"))
        except NoteError as exc:
            raise UsageError(f"log list {path}: {exc}") from exc
        for entry in listed:
            logs.setdefault(entry.origin, []).append(NoteVerifier.from_vkey(entry.vkey))
    return logs


def cmd_witness(args: argparse.Namespace) -> int:
    from auditlog.core.cosignature import Cosigner
    from auditlog.core.errors import NoteError
    from auditlog.verify.witness_server import WitnessState, create_app

    try:
        cosigner = Cosigner.from_skey(read_arg_file(args.key, "witness key"))
    except NoteError as exc:
        raise UsageError(f"witness key: {exc}") from exc
    if args.print_vkey:
        print(cosigner.vkey())
        return EXIT_OK
    logs = witnessed_logs(args.log or [], args.log_list or [])
    if not logs:
        raise UsageError("give at least one --log VKEY (or ORIGIN=VKEY) or --log-list FILE")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--listen wants HOST:PORT, got {args.listen!r}")
    state = WitnessState(Path(args.state))
    print(f"witness {cosigner.name} listening on {args.listen}; cosignature key:", flush=True)
    print(cosigner.vkey(), flush=True)
    app = create_app(state, logs, hasher(args.hash_scheme), cosigner)
    return run_uvicorn(app, host, int(port))


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    wit = sub.add_parser("witness", help="run a C2SP tlog-witness (POST /add-checkpoint)")
    wit.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT")
    wit.add_argument("--key", required=True, help="witness signing key file (auditlog keygen)")
    wit.add_argument("--state", default=".auditlog/witness.sqlite3", help="witness state file")
    wit.add_argument(
        "--log",
        action="append",
        help="a log to witness: its VKEY (the key name is its origin), or ORIGIN=VKEY; a vkey file"
        " names one log a line (repeatable)",
    )
    wit.add_argument(
        "--log-list",
        action="append",
        metavar="FILE",
        help="the logs of a witness-network log list (logs/v0, `auditlog logs --format log-list`)",
    )
    wit.add_argument("--hash-scheme", default="rfc6962-sha256")
    wit.add_argument("--print-vkey", action="store_true", help="print the cosignature vkey, exit")
    wit.set_defaults(func=cmd_witness)
