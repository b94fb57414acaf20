"""What the local stack is configured by: its home, its loopback ports, and the fixed names.

`StackConfig` comes from ``AUDITLOG_HOME`` and ``AUDITLOG_STACK_*`` (or is built directly by
tests); `StackError` is the one error a user can act on, raised by every module of the stack;
`ComponentStatus` is what each server's status check answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "AUDITLOG_HOME"
KAFKA_PORT_ENV = "AUDITLOG_STACK_KAFKA_PORT"
CONTROLLER_PORT_ENV = "AUDITLOG_STACK_CONTROLLER_PORT"
PG_PORT_ENV = "AUDITLOG_STACK_PG_PORT"
KAFKA_SASL_SSL_PORT_ENV = "AUDITLOG_STACK_KAFKA_SASL_SSL_PORT"
BROKERS_ENV = "AUDITLOG_STACK_KAFKA_BROKERS"
PG_SHARED_BUFFERS_ENV = "AUDITLOG_STACK_PG_SHARED_BUFFERS"
# One broker, or a cluster that keeps every acknowledged record and takes writes with one
# broker down (replication factor 3, min.insync.replicas 2).
BROKER_COUNTS = (1, 3)
# Node N of a cluster listens on each of node 1's ports plus (N - 1) * NODE_PORT_STRIDE.
NODE_PORT_STRIDE = 100

DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 54329
# PostgreSQL's buffer cache. Benchmarks of large tables compare sizes with it (4 GB against 1 GB:
# docs/performance.md#per-batch-seal-cost-as-a-log-grows, G2 and G3).
DEFAULT_PG_SHARED_BUFFERS = "1GB"
_PG_MEMORY = re.compile(r"[1-9][0-9]{0,5}(MB|GB)")

HOST = "127.0.0.1"
PG_ROLE = "auditlog"
PG_PASSWORD = "auditlog"  # noqa: S105 - a loopback-only development cluster
PG_DATABASE = "auditlog"

# How long a server gets to exit after SIGTERM or a fast shutdown before it is forced.
STOP_TIMEOUT = 30.0

Echo = Callable[[str], None]


class StackError(Exception):
    """The local stack cannot be installed, started, stopped or inspected; the message says why."""


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Where the stack keeps its state and which loopback ports it uses."""

    home: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    pg_port: int = DEFAULT_PG_PORT
    # A second Kafka listener, SASL_SSL, on this port; 0: none (docs/kafka-security.md).
    kafka_sasl_ssl_port: int = 0
    # Kafka nodes, each a KRaft voter and a broker (docs/local-stack.md#a-three-broker-cluster).
    brokers: int = 1
    # PostgreSQL's shared_buffers, in MB or GB.
    pg_shared_buffers: str = DEFAULT_PG_SHARED_BUFFERS

    def __post_init__(self) -> None:
        # Subprocesses run in other directories, and pg_ctl normalises "..": the home path must
        # be absolute and normal for process command lines to match it.
        object.__setattr__(self, "home", Path(os.path.abspath(self.home)))
        ports = {
            KAFKA_PORT_ENV: self.kafka_port,
            CONTROLLER_PORT_ENV: self.controller_port,
            PG_PORT_ENV: self.pg_port,
        }
        if self.kafka_sasl_ssl_port:
            ports[KAFKA_SASL_SSL_PORT_ENV] = self.kafka_sasl_ssl_port
        if not _PG_MEMORY.fullmatch(self.pg_shared_buffers):
            raise StackError(
                f"{PG_SHARED_BUFFERS_ENV} must be a size in MB or GB such as 4GB,"
                f" got {self.pg_shared_buffers!r}"
            )
        if self.brokers not in BROKER_COUNTS:
            raise StackError(f"{BROKERS_ENV} must be 1 or 3, got {self.brokers}")
        for env_var, port in ports.items():
            if not 1 <= port <= 65535:
                raise StackError(f"port {port} is out of range; set {env_var} to 1..65535")
        for node in range(2, self.brokers + 1):
            for env_var in (KAFKA_PORT_ENV, CONTROLLER_PORT_ENV, KAFKA_SASL_SSL_PORT_ENV):
                if env_var in ports:
                    ports[f"{env_var} (node {node})"] = self.node_port(ports[env_var], node)
            if max(ports.values()) > 65535:
                raise StackError(f"node {node}'s ports would pass 65535; lower the stack's ports")
        if len(set(ports.values())) != len(ports):
            raise StackError(
                "the stack needs different ports, got "
                + ", ".join(f"{name}={port}" for name, port in ports.items())
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StackConfig:
        raw_home = environ.get(HOME_ENV, "")
        home = Path(raw_home).expanduser() if raw_home else Path.cwd() / ".auditlog"
        return cls(
            home=home,
            kafka_port=_port_from_env(environ, KAFKA_PORT_ENV, DEFAULT_KAFKA_PORT),
            controller_port=_port_from_env(environ, CONTROLLER_PORT_ENV, DEFAULT_CONTROLLER_PORT),
            pg_port=_port_from_env(environ, PG_PORT_ENV, DEFAULT_PG_PORT),
            kafka_sasl_ssl_port=_port_from_env(environ, KAFKA_SASL_SSL_PORT_ENV, 0),
            brokers=_port_from_env(environ, BROKERS_ENV, 1),
            pg_shared_buffers=(
                environ.get(PG_SHARED_BUFFERS_ENV, "").strip() or DEFAULT_PG_SHARED_BUFFERS
            ),
        )

    @property
    def nodes(self) -> range:
        return range(1, self.brokers + 1)

    @staticmethod
    def node_port(port: int, node: int) -> int:
        return port + (node - 1) * NODE_PORT_STRIDE

    def node_bootstrap(self, node: int) -> str:
        return f"{HOST}:{self.node_port(self.kafka_port, node)}"

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(self.node_bootstrap(node) for node in self.nodes)

    @property
    def kafka_sasl_ssl_bootstrap(self) -> str | None:
        if not self.kafka_sasl_ssl_port:
            return None
        return ",".join(
            f"{HOST}:{self.node_port(self.kafka_sasl_ssl_port, node)}" for node in self.nodes
        )

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{HOST}:{self.pg_port}/{PG_DATABASE}"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One server of the stack; `running` means up and answering, `pid` is set whenever the
    process exists (it may be up but not answering yet)."""

    name: str
    running: bool
    pid: int | None
    detail: str


def _port_from_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a whole number") from None
