"""``auditlog stack``: start, stop or inspect the local Kafka and PostgreSQL (auditlog.devstack)."""

from __future__ import annotations

import argparse

from auditlog.cli.args import Subparsers


def cmd_stack(args: argparse.Namespace) -> int:
    from auditlog.devstack import stack

    return stack.main([args.action])


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("stack", help="the local Kafka and PostgreSQL only")
    st.add_argument("action", choices=["start", "stop", "status"])
    st.set_defaults(func=cmd_stack)
