"""``auditlog witness``: run a C2SP tlog-witness that cosigns the logs it is told to follow."""

from __future__ import annotations

import argparse
from pathlib import Path

from auditlog.cli.args import EXIT_OK, Subparsers, UsageError, hasher, read_arg_file, vkeys
from auditlog.cli.services import run_uvicorn


def cmd_witness(args: argparse.Namespace) -> int:
    from auditlog.core.cosignature import Cosigner
    from auditlog.core.errors import NoteError
    from auditlog.core.note import NoteVerifier
    from auditlog.verify.witness_server import WitnessState, create_app

    try:
        cosigner = Cosigner.from_skey(read_arg_file(args.key, "witness key"))
    except NoteError as exc:
        raise UsageError(f"witness key: {exc}") from exc
    if args.print_vkey:
        print(cosigner.vkey())
        return EXIT_OK
    logs: dict[str, list[NoteVerifier]] = {}
    for spec in args.log or []:
        origin, sep, vkey = spec.partition("=")
        if not sep or not origin:
            raise UsageError(f"--log wants ORIGIN=VKEY, got {spec!r}")
        logs.setdefault(origin, []).extend(vkeys([vkey]))
    if not logs:
        raise UsageError("give at least one --log ORIGIN=VKEY")
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
    wit.add_argument("--log", action="append", help="ORIGIN=VKEY of a log to witness (repeatable)")
    wit.add_argument("--hash-scheme", default="rfc6962-sha256")
    wit.add_argument("--print-vkey", action="store_true", help="print the cosignature vkey, exit")
    wit.set_defaults(func=cmd_witness)
