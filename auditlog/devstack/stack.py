"""The local development stack: one Kafka broker (KRaft) and one PostgreSQL cluster on loopback.

`auditlog stack start|stop|status`, ``python -m auditlog.devstack``, `auditlog up` and the test
fixtures use this module; its parts are :mod:`~auditlog.devstack.config` (settings and errors),
:mod:`~auditlog.devstack.host` (ports, processes, packages, locking),
:mod:`~auditlog.devstack.java`, :mod:`~auditlog.devstack.kafka` and
:mod:`~auditlog.devstack.postgres`. It installs what is missing (Java 17 and Maven, the Kafka jars
from Maven Central through ``deploy/local/pom.xml``, PostgreSQL from the distribution), keeps all
state under one home directory (``.auditlog`` by default), and is idempotent: `start` on a
running stack and `stop` on a stopped one only say so.

Kafka runs as the current user from the jars in ``<home>/kafka/libs``; PostgreSQL runs as the
``postgres`` OS user when we are root (the server refuses to run as root) and as the current user
otherwise. Nothing listens on anything but 127.0.0.1.

Errors: every failure a user can act on (a missing tool that cannot be installed, a port taken by
another process, a server that does not come up, a bad ``AUDITLOG_STACK_*`` value) raises
`StackError`, whose message says what happened and what to do. `OSError` from the file system
(an unwritable home, a full disk) propagates unchanged. `main` turns both into exit code 2 with
the message on stderr; anything else is a bug.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from auditlog.devstack import kafka, kafka_sasl, postgres, postgres_replica
from auditlog.devstack.config import (
    CONTROLLER_PORT_ENV,
    HOST,
    KAFKA_PORT_ENV,
    KAFKA_SASL_SSL_PORT_ENV,
    PG_PORT_ENV,
    ComponentStatus,
    Echo,
    StackConfig,
    StackError,
)
from auditlog.devstack.host import locked, require_free

# StackConfig is re-exported: the CLI reaches it as `stack.StackConfig`.
__all__ = [
    "StackConfig",
    "ensure_installed",
    "is_running",
    "main",
    "start",
    "start_kafka",
    "status",
    "stop",
    "stop_kafka",
]


@dataclass(frozen=True, slots=True)
class _Installed:
    java: str | None  # None when Kafka is already running and nothing needs a JVM
    pg_bin: Path
    pg: postgres.PgFiles


def _install(cfg: StackConfig, echo: Echo, *, kafka_running: bool, pg_running: bool) -> _Installed:
    java: str | None = None
    if kafka_running:
        if not kafka.jars_current(cfg):
            echo(kafka.POM_CHANGED)
    else:
        java = kafka.prepare(cfg, echo)
    pg_bin = postgres.ensure_bin(echo)
    pg = postgres.cluster_files(cfg) if pg_running else postgres.prepare(cfg, pg_bin, echo)
    return _Installed(java=java, pg_bin=pg_bin, pg=pg)


def ensure_installed(cfg: StackConfig, echo: Echo = print) -> None:
    """Install what the stack needs and prepare its state; idempotent and cheap once done."""
    with locked(cfg):
        _install(
            cfg,
            echo,
            kafka_running=all(kafka.running_pid(cfg, node) is not None for node in cfg.nodes),
            pg_running=postgres.running_pid(cfg) is not None,
        )


def start(cfg: StackConfig, echo: Echo = print) -> None:
    """Install, start what is not running, and return once Kafka answers requests and the
    auditlog role can log in to PostgreSQL. Idempotent."""
    with locked(cfg):
        *nodes_now, pg_now = status(cfg)
        if all(component.running for component in (*nodes_now, pg_now)):
            pids = ", ".join(str(node.pid) for node in nodes_now)
            echo(
                f"already running: kafka pid {pids} on {cfg.kafka_bootstrap}, "
                f"postgres pid {pg_now.pid} on {HOST}:{cfg.pg_port}"
            )
            if not kafka.jars_current(cfg):
                echo(kafka.POM_CHANGED)
            return
        # Check every port before starting anything, so a conflict leaves nothing half up.
        _require_kafka_ports(cfg, nodes_now)
        if pg_now.pid is None:
            require_free(cfg.pg_port, PG_PORT_ENV, "PostgreSQL")
        installed = _install(
            cfg,
            echo,
            kafka_running=all(node.pid is not None for node in nodes_now),
            pg_running=pg_now.pid is not None,
        )
        # The JVMs take seconds to come up: let them while PostgreSQL starts.
        waiting = _launch_kafka(cfg, installed.java, nodes_now, echo)
        postgres.start_or_repair(cfg, installed.pg_bin, installed.pg, pg_now, echo)
        _wait_for_kafka(cfg, waiting, echo)


def start_kafka(cfg: StackConfig, echo: Echo = print) -> None:
    """Start only the home's Kafka nodes that are not running (drills bring brokers back, tests
    that share the stack's PostgreSQL start a Kafka of their own); returns once all answer."""
    with locked(cfg):
        nodes_now = [kafka.status(cfg, node) for node in cfg.nodes]
        _require_kafka_ports(cfg, nodes_now)
        java = None if all(now.pid for now in nodes_now) else kafka.prepare(cfg, echo)
        _wait_for_kafka(cfg, _launch_kafka(cfg, java, nodes_now, echo), echo)


def _require_kafka_ports(cfg: StackConfig, nodes_now: list[ComponentStatus]) -> None:
    """The ports of every node without a process must be free."""
    for node, now in zip(cfg.nodes, nodes_now, strict=True):
        if now.pid is not None:
            continue
        require_free(cfg.node_port(cfg.kafka_port, node), KAFKA_PORT_ENV, "Kafka")
        controller = cfg.node_port(cfg.controller_port, node)
        require_free(controller, CONTROLLER_PORT_ENV, "Kafka controller")
        if cfg.kafka_sasl_ssl_port:
            sasl = cfg.node_port(cfg.kafka_sasl_ssl_port, node)
            require_free(sasl, KAFKA_SASL_SSL_PORT_ENV, "Kafka SASL_SSL")


def _launch_kafka(
    cfg: StackConfig, java: str | None, nodes_now: list[ComponentStatus], echo: Echo
) -> dict[int, int]:
    """Launch every node without a process; returns node -> pid of those not answering yet."""
    waiting = {}
    for node, now in zip(cfg.nodes, nodes_now, strict=True):
        pid = now.pid
        if pid is None:
            assert java is not None
            pid = kafka.launch(cfg, java, node)
            echo(f"{now.name}: starting pid {pid}…")
        elif now.running:
            echo(f"{now.name}: already running (pid {pid})")
        if not now.running:
            waiting[node] = pid
    return waiting


def _wait_for_kafka(cfg: StackConfig, waiting: dict[int, int], echo: Echo) -> None:
    for node, pid in waiting.items():
        kafka.wait_until_answering(cfg, pid, echo, node)
        echo(f"{kafka.status(cfg, node).name}: started pid {pid} on {cfg.node_bootstrap(node)}")


def stop(cfg: StackConfig, echo: Echo = print) -> None:
    """Stop Kafka and PostgreSQL (SIGTERM or a fast shutdown, forcefully after a timeout).
    Idempotent; keeps all data."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        echo("postgres: not running")
        return
    with locked(cfg):
        kafka.stop(cfg, echo)
        if (postgres_replica.replica_files(cfg).data / "PG_VERSION").is_file():
            # Else the next start, without the replica, would leave every commit waiting.
            if postgres.running_pid(cfg) is not None:
                postgres_replica.set_synchronous(cfg, synchronous=False)
            postgres_replica.stop_replica(cfg, echo)
        postgres.stop(cfg, echo)


def stop_kafka(cfg: StackConfig, echo: Echo = print) -> None:
    """Stop only the broker (outage drills); `start` brings it back."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        return
    with locked(cfg):
        kafka.stop(cfg, echo)


def status(cfg: StackConfig) -> list[ComponentStatus]:
    """Kafka (each node of a cluster) and PostgreSQL, in that order; `running` means up and
    answering."""
    return [*(kafka.status(cfg, node) for node in cfg.nodes), postgres.status(cfg)]


def is_running(cfg: StackConfig) -> bool:
    """Whether both servers are up and answering."""
    return all(component.running for component in status(cfg))


def main(
    argv: Sequence[str],
    *,
    sasl_ssl_port: int | None = None,
    brokers: int | None = None,
    pg_replica_port: int | None = None,
    pg_synchronous: bool = False,
) -> int:
    """`auditlog stack start|stop|status`: 0 ok, 1 not running (status), 2 on error.
    ``sasl_ssl_port`` and ``brokers`` override ``AUDITLOG_STACK_KAFKA_SASL_SSL_PORT`` and
    ``AUDITLOG_STACK_KAFKA_BROKERS``; ``pg_replica_port`` (start) adds a streaming replica of
    PostgreSQL there, synchronous if ``pg_synchronous``."""
    commands = ("start", "stop", "status")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: auditlog stack {'|'.join(commands)}", file=sys.stderr)
        return 2
    try:
        cfg = StackConfig.from_env()
        if sasl_ssl_port is not None:
            cfg = dataclasses.replace(cfg, kafka_sasl_ssl_port=sasl_ssl_port)
        if brokers is not None:
            cfg = dataclasses.replace(cfg, brokers=brokers)
        if argv[0] == "start":
            start(cfg)
            if pg_replica_port is not None:
                with locked(cfg):
                    postgres_replica.start_replica(
                        cfg, pg_replica_port, print, synchronous=pg_synchronous
                    )
            print(f"AUDITLOG_KAFKA_BOOTSTRAP={cfg.kafka_bootstrap}")
            print(f"AUDITLOG_DATABASE_URL={cfg.database_url}")
            if pg_replica_port is not None:
                print(f"# the replica: {postgres_replica.replica_url(cfg, pg_replica_port)}")
                print(f"# failover: {postgres_replica.failover_url(cfg, pg_replica_port)}")
            if cfg.kafka_sasl_ssl_port:
                print("# the SASL_SSL listener, for clients:")
                for name, value in kafka_sasl.client_environment(cfg).items():
                    print(f"# {name}={value}")
            return 0
        if argv[0] == "stop":
            stop(cfg)
            return 0
        components = status(cfg)
    except (StackError, OSError) as exc:
        print(f"auditlog stack: {exc}", file=sys.stderr)
        return 2
    # The replica is listed but does not decide the exit code: the stack runs without one.
    replica = postgres_replica.replica_status(cfg)
    for component in [*components, *([replica] if replica is not None else [])]:
        state = "running" if component.running else "stopped"
        pid = f"pid {component.pid}" if component.pid is not None else "-"
        print(f"{component.name:<9} {state:<8} {pid:<11} {component.detail}")
    return 0 if all(component.running for component in components) else 1
