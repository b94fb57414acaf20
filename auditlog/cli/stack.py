"""``auditlog stack``: start, stop or inspect the local Kafka and PostgreSQL (auditlog.devstack)."""

from __future__ import annotations

import argparse

from auditlog.cli.args import Subparsers


def cmd_stack(args: argparse.Namespace) -> int:
    from auditlog.devstack import stack

    return stack.main(
        [args.action],
        sasl_ssl_port=args.sasl_ssl_port,
        brokers=args.brokers,
        pg_replica_port=args.pg_replica_port,
        pg_synchronous=args.pg_synchronous,
    )


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("stack", help="the local Kafka and PostgreSQL only")
    st.add_argument("action", choices=["start", "stop", "status"])
    st.add_argument(
        "--sasl-ssl-port",
        type=int,
        default=None,
        metavar="PORT",
        help="start: Kafka also listens with SASL_SSL on PORT (docs/kafka-security.md)",
    )
    st.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=None,
        help="Kafka nodes: 3 is a cluster with replication factor 3, min.insync.replicas 2",
    )
    st.add_argument(
        "--pg-replica-port",
        type=int,
        default=None,
        metavar="PORT",
        help="start: also a streaming replica of PostgreSQL on PORT (docs/local-stack.md)",
    )
    st.add_argument(
        "--pg-synchronous",
        action="store_true",
        help="with --pg-replica-port: every commit waits for the replica",
    )
    st.set_defaults(func=cmd_stack)
