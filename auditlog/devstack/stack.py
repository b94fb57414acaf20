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

from auditlog.devstack import kafka, kafka_sasl, postgres
from auditlog.devstack.config import (
    CONTROLLER_PORT_ENV,
    HOST,
    KAFKA_PORT_ENV,
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
            kafka_running=kafka.running_pid(cfg) is not None,
            pg_running=postgres.running_pid(cfg) is not None,
        )


def start(cfg: StackConfig, echo: Echo = print) -> None:
    """Install, start what is not running, and return once Kafka answers requests and the
    auditlog role can log in to PostgreSQL. Idempotent."""
    with locked(cfg):
        kafka_now, pg_now = status(cfg)
        if kafka_now.running and pg_now.running:
            echo(
                f"already running: kafka pid {kafka_now.pid} on {cfg.kafka_bootstrap}, "
                f"postgres pid {pg_now.pid} on {HOST}:{cfg.pg_port}"
            )
            if not kafka.jars_current(cfg):
                echo(kafka.POM_CHANGED)
            return
        # Check every port before starting anything, so a conflict leaves nothing half up.
        if kafka_now.pid is None:
            require_free(cfg.kafka_port, KAFKA_PORT_ENV, "Kafka")
            require_free(cfg.controller_port, CONTROLLER_PORT_ENV, "Kafka controller")
        if pg_now.pid is None:
            require_free(cfg.pg_port, PG_PORT_ENV, "PostgreSQL")
        installed = _install(
            cfg, echo, kafka_running=kafka_now.pid is not None, pg_running=pg_now.pid is not None
        )

        kafka_pid = kafka_now.pid
        if kafka_pid is None:
            assert installed.java is not None
            # The JVM takes seconds to come up: let it while PostgreSQL starts.
            kafka_pid = kafka.launch(cfg, installed.java)
            echo(f"kafka: starting pid {kafka_pid}…")
        elif kafka_now.running:
            echo(f"kafka: already running (pid {kafka_pid})")

        postgres.start_or_repair(cfg, installed.pg_bin, installed.pg, pg_now, echo)

        if not kafka_now.running:
            kafka.wait_until_answering(cfg, kafka_pid, echo)
            echo(f"kafka: started pid {kafka_pid} on {cfg.kafka_bootstrap}")


def stop(cfg: StackConfig, echo: Echo = print) -> None:
    """Stop Kafka and PostgreSQL (SIGTERM or a fast shutdown, forcefully after a timeout).
    Idempotent; keeps all data."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        echo("postgres: not running")
        return
    with locked(cfg):
        kafka.stop(cfg, echo)
        postgres.stop(cfg, echo)


def stop_kafka(cfg: StackConfig, echo: Echo = print) -> None:
    """Stop only the broker (outage drills); `start` brings it back."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        return
    with locked(cfg):
        kafka.stop(cfg, echo)


def status(cfg: StackConfig) -> list[ComponentStatus]:
    """Kafka and PostgreSQL, in that order; `running` means up and answering."""
    return [kafka.status(cfg), postgres.status(cfg)]


def is_running(cfg: StackConfig) -> bool:
    """Whether both servers are up and answering."""
    return all(component.running for component in status(cfg))


def main(argv: Sequence[str], *, sasl_ssl_port: int | None = None) -> int:
    """`auditlog stack start|stop|status`: 0 ok, 1 not running (status), 2 on error.
    ``sasl_ssl_port`` overrides ``AUDITLOG_STACK_KAFKA_SASL_SSL_PORT``."""
    commands = ("start", "stop", "status")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: auditlog stack {'|'.join(commands)}", file=sys.stderr)
        return 2
    try:
        cfg = StackConfig.from_env()
        if sasl_ssl_port is not None:
            cfg = dataclasses.replace(cfg, kafka_sasl_ssl_port=sasl_ssl_port)
        if argv[0] == "start":
            start(cfg)
            print(f"AUDITLOG_KAFKA_BOOTSTRAP={cfg.kafka_bootstrap}")
            print(f"AUDITLOG_DATABASE_URL={cfg.database_url}")
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
    for component in components:
        state = "running" if component.running else "stopped"
        pid = f"pid {component.pid}" if component.pid is not None else "-"
        print(f"{component.name:<9} {state:<8} {pid:<11} {component.detail}")
    return 0 if all(component.running for component in components) else 1
