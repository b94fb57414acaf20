"""A Kafka and PostgreSQL of a test module's own, on ports of its own, always stopped after.

Drills that stop, kill or restart a server run against one of these, so the stack the other
integration tests share (on the default ports) is never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from auditlog.devstack import kafka, stack
from auditlog.devstack.config import StackConfig
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
        stack.stop(cfg, echo=print)
        # A cluster placed in the short fallback location (a deep home) is not under home.
        pg_root = pg_data_dir(cfg).parent
        if not pg_root.is_relative_to(cfg.home):
            shutil.rmtree(pg_root, ignore_errors=True)


@contextlib.contextmanager
def separate_kafka(home: Path, **ports: int) -> Iterator[StackConfig]:
    """Only a Kafka broker of its own in ``home`` (``ports`` as `StackConfig` takes them, e.g.
    ``kafka_sasl_ssl_port``), on free ports where not given; stopped on exit. Tests that need no
    PostgreSQL of their own use the shared one and save a cluster's start."""
    chosen = {
        name: ports.get(name) or free_port()
        for name in ("kafka_port", "controller_port", "pg_port")
    }
    cfg = StackConfig(home=home, **{**ports, **chosen})
    _seed_kafka_jars(cfg)
    try:
        java = kafka.prepare(cfg, print)
        kafka.wait_until_answering(cfg, kafka.launch(cfg, java), print)
        yield cfg
    finally:
        kafka.stop(cfg, print)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
