"""The ``auditlog`` command: one entry point for operators, developers and verifiers.

``build_parser`` gathers the subcommands each command-group module registers; ``main`` runs the
chosen one and maps a UsageError to exit code 2 (the exit codes live in ``auditlog.cli.args``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from auditlog.cli import (
    archive,
    audit,
    database,
    forward,
    keys,
    loadtest,
    logs,
    monitor,
    retention,
    services,
    stack,
    up,
    verify,
    witness,
)
from auditlog.cli.args import EXIT_FAILED, EXIT_USAGE, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditlog", description="One entry point for operators, developers and verifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # Registration order is the order `auditlog --help` lists the commands in.
    groups = (up, stack, services, keys, logs, database, loadtest, verify, audit, monitor, witness)
    for group in groups:
        group.register(sub)
    retention.register(sub)
    archive.register(sub)
    forward.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"auditlog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
