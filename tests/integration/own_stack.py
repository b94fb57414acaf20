"""A Kafka and PostgreSQL of a test module's own, on ports of its own, always stopped after.

Drills that stop, kill or restart a server run against one of these, so the stack the other
integration tests share (on the default ports) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from auditlog.devstack import kafka, postgres, postgres_replica, stack
from auditlog.devstack.config import StackConfig
from auditlog.devstack.host import pid_alive
from auditlog.devstack.postgres import pg_data_dir


def _seed_kafka_jars(cfg: StackConfig) -> None:
    """Copy the default home's Kafka jars when they are current: saves a Maven run."""
    default = StackConfig.from_env()
    if not kafka.jars_current(default):
        return
    source, target = default.home / "kafka", cfg.home / "kafka"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "libs", target / "libs")
    shutil.copy(source / "libs.pom-sha256", target / "libs.pom-sha256")


@contextlib.contextmanager
def separate_stack(
    home: Path, *, kafka_port: int, controller_port: int, pg_port: int, seed_jars: bool = False
) -> Iterator[StackConfig]:
    """Start a stack in ``home`` on these ports; stop it and remove its data on exit.

    ``seed_jars`` copies the default home's Kafka jars instead of resolving them with Maven
    (a module that tests the stack's own cold start leaves it off)."""
    cfg = StackConfig(
        home=home, kafka_port=kafka_port, controller_port=controller_port, pg_port=pg_port
    )
    try:
        if seed_jars:
            _seed_kafka_jars(cfg)
        stack.start(cfg, echo=print)
        yield cfg
    finally:
        _kill_kafka(cfg)
        stack.stop(cfg, echo=print)
        # A cluster placed in the short fallback location (a deep home) is not under home.
        pg_root = pg_data_dir(cfg).parent
        if not pg_root.is_relative_to(cfg.home):
            shutil.rmtree(pg_root, ignore_errors=True)


@contextlib.contextmanager
def separate_kafka(
    home: Path, *, brokers: int = 1, sasl_ssl: bool = False
) -> Iterator[StackConfig]:
    """Only Kafka, of its own, in ``home``: one broker or a cluster of ``brokers``, with a
    SASL_SSL listener if asked, on free ports; stopped on exit. Tests that need no PostgreSQL of
    their own use the shared one and save a cluster's start."""
    names = ["kafka_port", "controller_port", "pg_port"] + (["kafka_sasl_ssl_port"] * sasl_ssl)
    cfg = StackConfig(
        home=home, brokers=brokers, **dict(zip(names, free_ports(len(names), brokers), strict=True))
    )
    _seed_kafka_jars(cfg)
    try:
        stack.start_kafka(cfg, echo=print)
        yield cfg
    finally:
        _kill_kafka(cfg)
        kafka.stop(cfg, print)


def _kill_kafka(cfg: StackConfig) -> None:
    """SIGKILL every broker of a test's own Kafka, whose data goes with it: a controlled
    shutdown (several seconds a node, on two cores) would keep nothing worth keeping.
    `kafka.stop` after it then only tidies up."""
    pids = [pid for node in cfg.nodes if (pid := kafka.running_pid(cfg, node)) is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int, brokers: int = 1) -> list[int]:
    """``count`` free ports, each with free ports for nodes 2.. of a cluster of ``brokers``
    (`StackConfig.node_port`); the stack checks them again before it starts."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        node_ports = [StackConfig.node_port(port, node) for node in range(1, brokers + 1)]
        if (
            max(node_ports) <= 65535
            and port not in chosen
            and all(_free(p) for p in node_ports[1:])
        ):
            chosen.append(port)
    return chosen


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def separate_postgres(home: Path) -> Iterator[StackConfig]:
    """Only a PostgreSQL of its own in ``home``, on a free port, stopped and removed on exit
    (with a replica of it, if one was started); Kafka stays the shared one."""
    kafka_port, controller_port, pg_port = free_ports(3)
    cfg = StackConfig(
        home=home, kafka_port=kafka_port, controller_port=controller_port, pg_port=pg_port
    )
    try:
        bin_dir = postgres.ensure_bin(print)
        files = postgres.prepare(cfg, bin_dir, print)
        postgres.start_or_repair(cfg, bin_dir, files, postgres.status(cfg), print)
        yield cfg
    finally:
        postgres_replica.stop_replica(cfg, print, mode="immediate")
        postgres.stop(cfg, print)
        for root in (pg_data_dir(cfg).parent, postgres_replica.replica_files(cfg).root):
            if not root.is_relative_to(cfg.home):
                shutil.rmtree(root, ignore_errors=True)
