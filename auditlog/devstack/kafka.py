"""The stack's Kafka broker: one KRaft node (broker and controller in one JVM) on loopback.

Its jars come from Maven Central through ``deploy/local/pom.xml`` into ``<home>/kafka/libs``
(fetched again when the pom changes), its ``server.properties`` is rendered from `StackConfig` on
every start, its storage is formatted once, and it runs in the background as the current user,
recognised afterwards by its pid file and command line. It is ready when it answers an
ApiVersions request, not when its port accepts connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from auditlog.devstack import kafka_sasl
from auditlog.devstack.config import (
    BROKER_COUNTS,
    HOST,
    ComponentStatus,
    Echo,
    StackConfig,
    StackError,
)
from auditlog.devstack.host import (
    cmdline,
    pid_alive,
    port_in_use,
    port_owner,
    run,
    tail,
    terminate,
    write_if_changed,
)
from auditlog.devstack.java import ensure_java

KAFKA_READY_TIMEOUT = 90.0

# This file is auditlog/devstack/kafka.py: the repository root is two levels up.
_REPO_ROOT = Path(__file__).resolve().parents[2]
_POM = _REPO_ROOT / "deploy" / "local" / "pom.xml"
_LOG4J_CONFIG = _REPO_ROOT / "deploy" / "local" / "log4j2.properties"

POM_CHANGED = "kafka: deploy/local/pom.xml changed; stop and start the stack to use it"


def render_server_properties(cfg: StackConfig, node: int = 1) -> str:
    """The server.properties of one node, broker and controller in one (a KRaft voter)."""
    # Java properties treat a backslash as an escape, even in values.
    log_dirs = str(_files(cfg, node).data).replace("\\", "\\\\")
    listeners = {"PLAINTEXT": cfg.node_port(cfg.kafka_port, node)}
    if cfg.kafka_sasl_ssl_port:
        listeners["SASL_SSL"] = cfg.node_port(cfg.kafka_sasl_ssl_port, node)
    advertised = ",".join(f"{name}://{HOST}:{port}" for name, port in listeners.items())
    controller = cfg.node_port(cfg.controller_port, node)
    voters = ",".join(f"{n}@{HOST}:{cfg.node_port(cfg.controller_port, n)}" for n in cfg.nodes)
    # A cluster keeps a record on 3 brokers and acknowledges it once 2 have it; one broker has
    # nothing to replicate to.
    replicas, min_isr = ("3", "2") if cfg.brokers >= 3 else ("1", "1")
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"{advertised},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": advertised,
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        "log.dirs": log_dirs,
        "num.partitions": "1",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        # The default 50 partitions make the first consumer group wait while they are created.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Topics are created on purpose (with their partition count) by the services and tests.
        "auto.create.topics.enable": "false",
        # One broker and short-lived test consumers: waiting for more members only slows tests.
        "group.initial.rebalance.delay.ms": "0",
        # One broker has no replica to outlive it, so acks=all means "in its page cache": fsync
        # each partition's log every second, which bounds what a power cut can take to about a
        # second of acknowledged events instead of the kernel's ~30 s (docs/local-stack.md).
        "log.flush.interval.ms": "1000",
        "log.flush.scheduler.interval.ms": "1000",
        # A deleted topic's files are removed this long after the deletion (default 60 s, for
        # reads still under way). Tests and benchmarks delete their scratch topics; a minute
        # later, unlinking them took CPU from whatever ran then (docs/performance.md).
        "log.segment.delete.delay.ms": "1000",
    }
    if cfg.brokers > 1:
        # The log cleaner takes a 128 MiB dedupe buffer at start by default: more than half of
        # a cluster node's 256 MiB heap (launch), which it then lacks (OutOfMemoryError).
        settings["log.cleaner.dedupe.buffer.size"] = str(16 * 1024 * 1024)
    # A dead broker is fenced, and its partitions led by others, after this long without a
    # heartbeat (default 9 s): the time writes to its partitions stall (docs/local-stack.md).
    # A single broker restarted after a crash is refused (DUPLICATE_BROKER_REGISTRATION) until
    # its old session ends: the same bound shortens that wait.
    settings["broker.session.timeout.ms"] = "4000"
    settings["broker.heartbeat.interval.ms"] = "1000"
    if cfg.kafka_sasl_ssl_port:
        settings |= kafka_sasl.listener_properties(cfg)
    header = "# Written by `auditlog stack start` on every start; set AUDITLOG_STACK_* to change.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass(frozen=True, slots=True)
class _KafkaFiles:
    root: Path
    libs: Path
    libs_stamp: Path
    properties: Path
    data: Path
    log: Path
    out: Path
    pid: Path


def _files(cfg: StackConfig, node: int = 1) -> _KafkaFiles:
    # Node 1 keeps the single broker's layout, so a one-broker home reads as before.
    shared = cfg.home / "kafka"
    root = shared if node == 1 else shared / f"node-{node}"
    return _KafkaFiles(
        root=root,
        libs=shared / "libs",
        libs_stamp=shared / "libs.pom-sha256",
        properties=root / "server.properties",
        data=root / "data",
        log=root / "kafka.log",
        out=root / "kafka.out",
        pid=root / "kafka.pid",
    )


# ---------------------------------------------------------------------------------------------
# Installing


def jars_current(cfg: StackConfig) -> bool:
    """Whether ``<home>/kafka/libs`` came from the pom as it is now."""
    files = _files(cfg)
    try:
        stamp = files.libs_stamp.read_text().strip()
    except OSError:
        return False
    return files.libs.is_dir() and stamp == _pom_digest()


def prepare(cfg: StackConfig, echo: Echo) -> str:
    """Java, the jars, server.properties and formatted storage; returns the `java` to run."""
    current = jars_current(cfg)
    java = ensure_java(echo, need_mvn=not current)
    if not current:
        _fetch_jars(cfg, echo)
    _check_broker_count(cfg)
    for node in cfg.nodes:
        files = _files(cfg, node)
        files.root.mkdir(parents=True, exist_ok=True)
        write_if_changed(files.properties, render_server_properties(cfg, node))
        # It may hold the SASL users' PLAIN passwords.
        files.properties.chmod(0o600)
        _ensure_formatted(cfg, java, echo, node)
    (cfg.home / "kafka" / "brokers").write_text(f"{cfg.brokers}\n")
    return java


def _check_broker_count(cfg: StackConfig) -> None:
    """A KRaft quorum's voters are fixed when its storage is formatted: the count may not
    change under existing data."""
    if not (_files(cfg).data / "meta.properties").is_file():
        return
    try:
        formatted = int((cfg.home / "kafka" / "brokers").read_text())
    except (OSError, ValueError):
        formatted = 1  # formatted before clusters existed
    if formatted != cfg.brokers:
        raise StackError(
            f"the Kafka storage in {cfg.home / 'kafka'} is a {formatted}-broker cluster, not "
            f"{cfg.brokers}; stop the stack and remove {cfg.home / 'kafka'}/data and "
            f"node-*/ (their topics are lost) to change it, or use another AUDITLOG_HOME"
        )


def _pom_digest() -> str:
    if not _POM.is_file():
        raise StackError(
            f"{_POM} not found; the local stack runs from a source checkout of auditlog"
        )
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


def _fetch_jars(cfg: StackConfig, echo: Echo) -> None:
    files = _files(cfg)
    digest = _pom_digest()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found; install maven")
    echo("fetching Kafka jars with mvn (first run only)…")
    files.root.mkdir(parents=True, exist_ok=True)
    # Old and new jar versions side by side on one classpath would mix classes: swap whole dirs.
    staging = files.root / "libs.new"
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ],
        what=f"mvn dependency:copy-dependencies -f {_POM}",
        timeout=1800,
    )
    shutil.rmtree(files.libs, ignore_errors=True)
    staging.rename(files.libs)
    files.libs_stamp.write_text(f"{digest}\n")


def _jvm_command(java: str, files: _KafkaFiles, *options: str) -> list[str]:
    return [
        java,
        *options,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={files.root}",
        "-cp",
        str(files.libs / "*"),
    ]


def _ensure_formatted(cfg: StackConfig, java: str, echo: Echo, node: int) -> None:
    files = _files(cfg, node)
    # meta.properties is the format tool's own marker; deleting the data dir re-formats.
    if (files.data / "meta.properties").is_file():
        return
    echo(f"{_name(cfg, node)}: formatting storage (first run only)…")
    run(
        [
            *_jvm_command(java, files, "-Xmx256m"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(cfg),
            "-c",
            str(files.properties),
            *kafka_sasl.format_arguments(cfg),
        ],
        what="kafka storage format",
    )
    kafka_sasl.mark_formatted(files.data)


def _cluster_id(cfg: StackConfig) -> str:
    """One id for every node of the home's cluster, made when the first is formatted."""
    path = cfg.home / "kafka" / "cluster.id"
    if not (_files(cfg).data / "meta.properties").is_file():
        path.unlink(missing_ok=True)  # a reset home is a new cluster
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    # Same shape as `kafka-storage random-uuid` (a base64url Uuid), without paying a JVM start.
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            path.write_text(f"{cluster_id}\n")
            return cluster_id


def _name(cfg: StackConfig, node: int) -> str:
    return "kafka" if cfg.brokers == 1 and node == 1 else f"kafka-{node}"


# ---------------------------------------------------------------------------------------------
# Running


def running_pid(cfg: StackConfig, node: int = 1) -> int | None:
    """The pid of this home's broker (a cluster's ``node``), or None when it is not running."""
    files = _files(cfg, node)
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    # A pid file outlives reboots; the pid may now belong to anything.
    if pid_alive(pid):
        command = cmdline(pid)
        if "kafka.Kafka" in command and str(files.properties) in command:
            return pid
    return None


def launch(cfg: StackConfig, java: str, node: int = 1) -> int:
    """Start a broker in the background and return its pid; `wait_until_answering` follows."""
    files = _files(cfg, node)
    # A cluster's three JVMs share the box: smaller heaps, still ample for development loads.
    heap = ("-Xms256m", "-Xmx768m") if cfg.brokers == 1 else ("-Xms128m", "-Xmx256m")
    command = [
        *_jvm_command(java, files, *heap, "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"),
        "kafka.Kafka",
        str(files.properties),
    ]
    # sh puts the JVM in the background and exits, so the broker is never our child: it leaves
    # no zombie behind in a long-lived caller and no running Popen to warn about at exit.
    launcher = 'out="$1"; shift; "$@" >"$out" 2>&1 </dev/null & echo $!'
    result = run(
        ["sh", "-c", launcher, "sh", str(files.out), *command],
        what=f"starting {_name(cfg, node)}",
        new_session=True,
        timeout=30,
    )
    pid = int(result.stdout.strip())
    files.pid.write_text(f"{pid}\n")
    return pid


def wait_until_answering(cfg: StackConfig, pid: int, echo: Echo, node: int = 1) -> None:
    """Return once the broker serves requests; stop it and raise if it does not in time. A
    cluster's node answers only once a majority of the voters runs: launch them all first."""
    deadline = time.monotonic() + KAFKA_READY_TIMEOUT
    name, files = _name(cfg, node), _files(cfg, node)
    while not _answers(cfg.node_port(cfg.kafka_port, node)):
        if not pid_alive(pid):
            files.pid.unlink(missing_ok=True)
            raise _failure(files, f"{name} exited while starting")
        if time.monotonic() > deadline:
            terminate(pid, name, echo)
            files.pid.unlink(missing_ok=True)
            raise _failure(
                files,
                f"{name} did not answer on {cfg.node_bootstrap(node)} within "
                f"{KAFKA_READY_TIMEOUT:.0f}s (stopped it)",
            )
        time.sleep(0.2)


def _failure(files: _KafkaFiles, problem: str) -> StackError:
    message = f"{problem}; last lines of {files.log}:\n{tail(files.log)}"
    with contextlib.suppress(OSError):
        if files.out.read_text().strip():
            message += f"\n{files.out}:\n{tail(files.out, 10)}"
    return StackError(message)


def stop(cfg: StackConfig, echo: Echo, nodes: Sequence[int] | None = None) -> None:
    """SIGTERM, then SIGKILL after a timeout, for every node (or ``nodes``); says so of a node
    that is not running."""
    if nodes is None:
        # A home that once ran a cluster may be started as one broker: stop its other nodes too.
        extra = (
            n
            for n in range(cfg.brokers + 1, max(BROKER_COUNTS) + 1)
            if _files(cfg, n).root.is_dir()
        )
        nodes = [*cfg.nodes, *extra]
    # All at once: a node stopped after the others lost the voters' majority would wait out
    # its controlled shutdown (30 s) for a controller that is gone.
    for node in nodes:
        pid = running_pid(cfg, node)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for node in nodes:
        name, pid = _name(cfg, node), running_pid(cfg, node)
        if pid is None:
            echo(f"{name}: not running")
        else:
            terminate(pid, name, echo)
            echo(f"{name}: stopped (pid {pid})")
        _files(cfg, node).pid.unlink(missing_ok=True)


def status(cfg: StackConfig, node: int = 1) -> ComponentStatus:
    files, name = _files(cfg, node), _name(cfg, node)
    port, bootstrap = cfg.node_port(cfg.kafka_port, node), cfg.node_bootstrap(node)
    pid = running_pid(cfg, node)
    if pid is None:
        detail = "not running"
        if port_in_use(port):
            detail += f"; {bootstrap} is taken ({port_owner(port)})"
        return ComponentStatus(name, running=False, pid=None, detail=detail)
    if _answers(port):
        detail = f"answering on {bootstrap}; log {files.log}"
        return ComponentStatus(name, running=True, pid=pid, detail=detail)
    detail = f"process up but not answering on {bootstrap}; see {files.log}"
    return ComponentStatus(name, running=False, pid=pid, detail=detail)


def _answers(port: int, timeout: float = 2.0) -> bool:
    """An ApiVersions v0 round trip. A TCP connect alone proves little: the broker binds its
    port long before it serves requests, and the kernel accepts into the backlog meanwhile."""
    client_id = b"auditlog-stack"
    correlation_id = 0x5A17
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", recv_exactly(sock, 4))
            body = recv_exactly(sock, size)
    except OSError:
        return False
    if len(body) < 6:
        return False
    answered_id, error_code = struct.unpack_from(">ih", body)
    # 35 (UNSUPPORTED_VERSION) is still an answer from a serving broker.
    return answered_id == correlation_id and error_code in {0, 35}


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionResetError("kafka closed the connection")
        chunks += chunk
    return bytes(chunks)
