"""The local development stack: one Kafka broker (KRaft) and one PostgreSQL cluster on loopback.

`auditlog stack start|stop|status` and the integration test fixtures use this module. It
installs what is missing (Java 17 and Maven, the Kafka jars from Maven Central through
``deploy/local/pom.xml``, PostgreSQL from the distribution), keeps all state under one home
directory (``.auditlog`` by default), and is idempotent: `start` on a running stack and `stop` on
a stopped one only say so.

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

import contextlib
import fcntl
import functools
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ComponentStatus",
    "StackConfig",
    "StackError",
    "ensure_installed",
    "is_running",
    "main",
    "pg_data_dir",
    "port_in_use",
    "render_server_properties",
    "start",
    "status",
    "stop",
    "stop_kafka",
]

HOME_ENV = "AUDITLOG_HOME"
KAFKA_PORT_ENV = "AUDITLOG_STACK_KAFKA_PORT"
CONTROLLER_PORT_ENV = "AUDITLOG_STACK_CONTROLLER_PORT"
PG_PORT_ENV = "AUDITLOG_STACK_PG_PORT"

DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 54329

HOST = "127.0.0.1"
PG_ROLE = "auditlog"
PG_PASSWORD = "auditlog"  # noqa: S105 - a loopback-only development cluster
PG_DATABASE = "auditlog"

KAFKA_READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
PG_START_TIMEOUT = 60

_REPO_ROOT = Path(__file__).resolve().parents[2]
_POM = _REPO_ROOT / "deploy" / "local" / "pom.xml"
_LOG4J_CONFIG = _REPO_ROOT / "deploy" / "local" / "log4j2.properties"

# PostgreSQL puts its socket in the data directory; sun_path holds 108 bytes on Linux and the
# server refuses longer paths, so a deep home needs the short fallback location.
_MAX_SOCKET_PATH = 100

_Echo = Callable[[str], None]


class StackError(Exception):
    """The local stack cannot be installed, started, stopped or inspected; the message says why."""


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Where the stack keeps its state and which loopback ports it uses."""

    home: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    pg_port: int = DEFAULT_PG_PORT

    def __post_init__(self) -> None:
        # Subprocesses run in other directories, and pg_ctl normalises "..": the home path must
        # be absolute and normal for process command lines to match it.
        object.__setattr__(self, "home", Path(os.path.abspath(self.home)))
        ports = {
            KAFKA_PORT_ENV: self.kafka_port,
            CONTROLLER_PORT_ENV: self.controller_port,
            PG_PORT_ENV: self.pg_port,
        }
        for env_var, port in ports.items():
            if not 1 <= port <= 65535:
                raise StackError(f"port {port} is out of range; set {env_var} to 1..65535")
        if len(set(ports.values())) != len(ports):
            raise StackError(
                f"the stack needs three different ports, got kafka {self.kafka_port}, "
                f"controller {self.controller_port}, postgres {self.pg_port}"
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
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

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
        raise StackError(f"{name}={raw!r} is not a port number") from None


# ---------------------------------------------------------------------------------------------
# Pure pieces


def render_server_properties(cfg: StackConfig) -> str:
    """The broker's server.properties for a single combined broker+controller node."""
    kafka_dir = cfg.home / "kafka"
    # Java properties treat a backslash as an escape, even in values.
    log_dirs = str(kafka_dir / "data").replace("\\", "\\\\")
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{cfg.kafka_port},CONTROLLER://{HOST}:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{cfg.kafka_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": log_dirs,
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # The default 50 partitions make the first consumer group wait while they are created.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
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
    header = "# Written by `auditlog stack start` on every start; set AUDITLOG_STACK_* to change.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def _render_pg_conf(cfg: StackConfig, data_dir: Path) -> str:
    socket_dir = str(data_dir).replace("'", "''")
    return (
        "# Written by `auditlog stack start` on every start (port: AUDITLOG_STACK_PG_PORT).\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {cfg.pg_port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        # Write-heavy settings (docs/local-stack.md): rare checkpoints mean few full-page
        # images in the WAL, which otherwise dominate it right after each checkpoint.
        "shared_buffers = 1GB\n"
        "wal_buffers = 64MB\n"
        "max_wal_size = 8GB\n"
        "checkpoint_timeout = 15min\n"
        "wal_compression = lz4\n"
        # Backends that evict dirty pages ask the kernel to write them out every 512 kB, as the
        # background writer and checkpointer do by default, instead of leaving them to a burst.
        "backend_flush_after = 512kB\n"
        # Every test creates pools; the default 100 runs out under a parallel test run.
        "max_connections = 200\n"
    )


_PG_HBA = (
    "# Written by `auditlog stack start`. The socket lives in the data directory, which only the\n"
    "# cluster's owner can enter, so trusting it lets in no one else.\n"
    "local   all   postgres                 trust\n"
    f"host    all   all        {HOST}/32   scram-sha-256\n"
)

# CREATEDB: tests create throwaway databases. psql's \gexec makes both creations idempotent.
_PG_BOOTSTRAP_SQL = """
SELECT 'CREATE ROLE auditlog'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog') \\gexec
ALTER ROLE auditlog LOGIN CREATEDB PASSWORD 'auditlog';
SELECT 'CREATE DATABASE auditlog OWNER auditlog'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'auditlog') \\gexec
"""


def _new_kafka_cluster_id() -> str:
    # Same shape as `kafka-storage random-uuid` (a base64url Uuid), without paying a JVM start.
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# ---------------------------------------------------------------------------------------------
# Processes, ports and files


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on host:port (a bind test, not a connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a TIME_WAIT left by the last run would look like a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _port_owner(port: int) -> str:
    """Best effort 'pid N: cmdline' of the listener on a port, from /proc (Linux only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                listening = fields[3] == "0A"
                if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if inodes:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            with contextlib.suppress(OSError):
                for fd in fd_dir.iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in inodes:
                            pid = int(fd_dir.parent.name)
                            return f"pid {pid}: {' '.join(_cmdline(pid).split())[:160]}"
    return "pid unknown"


def _require_free(port: int, env_var: str, purpose: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} ({purpose}) is used by another process ({_port_owner(port)}); "
            f"stop it or set {env_var} to a free port"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # A killed server whose parent never reaps it stays a zombie: it holds no port and no file.
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def _run(
    cmd: Sequence[str],
    *,
    what: str,
    check: bool = True,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            input=input_text,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            start_new_session=new_session,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: no answer after {timeout:.0f}s ({' '.join(cmd)})") from exc
    if check and result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise StackError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result


def _is_root() -> bool:
    return os.geteuid() == 0


def _pg_env() -> dict[str, str]:
    # PGHOST, PGUSER, PGOPTIONS and friends from the developer's shell would redirect our psql.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _as_pg_owner(cmd: Sequence[str]) -> list[str]:
    # PostgreSQL refuses to run as root; a non-root developer owns their own cluster.
    return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else list(cmd)


def _write_if_changed(path: Path, text: str, *, pg_owned: bool = False) -> None:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if pg_owned:
        tmp.chmod(0o600)
        if _is_root():
            shutil.chown(tmp, "postgres", "postgres")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    # Parallel test workers may all ask for the stack at once; only one may start it.
    cfg.home.mkdir(parents=True, exist_ok=True)
    with (cfg.home / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------------------------------------
# Tools: Java, Maven, PostgreSQL binaries


@functools.cache
def _apt_update() -> None:
    _run(["apt-get", "update"], what="apt-get update", timeout=600)


def _apt_install(packages: Sequence[str], why: str, echo: _Echo) -> None:
    if not _is_root() or shutil.which("apt-get") is None:
        raise StackError(f"{why}; install {' '.join(packages)} (or your system's equivalent)")
    echo(f"{why}; installing {' '.join(packages)} with apt-get (first run only)…")
    _apt_update()
    _run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        timeout=1200,
    )


def _java_major(java: str) -> int | None:
    try:
        result = _run([java, "-version"], what="java -version", check=False, timeout=30)
    except StackError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major


def _find_java() -> str | None:
    candidates: list[str] = []
    if java_home := os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(java_home) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in dict.fromkeys(candidates):
        major = _java_major(java)
        if major is not None and major >= 17:
            return java
    return None


def _ensure_java(echo: _Echo, *, need_mvn: bool) -> str:
    """The path of a Java 17+ `java`; also makes sure `mvn` exists when the jars must be fetched."""
    java = _find_java()
    missing: list[str] = []
    if java is None:
        missing.append(_jre_package())
    if need_mvn and shutil.which("mvn") is None:
        missing.append("maven")
    if missing:
        lacking = [
            what for what, gone in (("Java 17", java is None), ("mvn", "maven" in missing)) if gone
        ]
        _apt_install(missing, f"{' and '.join(lacking)} not found", echo)
        java = _find_java()
        if need_mvn and shutil.which("mvn") is None:
            raise StackError("mvn not found even after installing maven")
    if java is None:
        raise StackError("Java 17 not found even after installing it; set JAVA_HOME")
    return java


def _jre_package() -> str:
    # Debian releases after bookworm dropped openjdk-17; their default JRE is newer, which is fine.
    if _is_root() and shutil.which("apt-get") is not None:
        _apt_update()
        known = _run(
            ["apt-cache", "show", "openjdk-17-jre-headless"], what="apt-cache", check=False
        )
        if known.returncode != 0:
            return "default-jre-headless"
    return "openjdk-17-jre-headless"


def _find_pg_bin() -> Path | None:
    versions: list[tuple[int, Path]] = []
    for pg_ctl in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"):
        with contextlib.suppress(ValueError):
            versions.append((int(pg_ctl.parent.parent.name), pg_ctl.parent))
    if versions:
        return max(versions)[1]
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


def _ensure_pg_bin(echo: _Echo) -> Path:
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        # Debian's package also creates and starts a system cluster on 5432; we leave it be.
        _apt_install(["postgresql"], "PostgreSQL not found", echo)
        bin_dir = _find_pg_bin()
        if bin_dir is None:
            raise StackError("PostgreSQL binaries not found even after installing postgresql")
    if _is_root():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root, but there is no 'postgres' OS user to run the server as; "
                "create one (useradd --system postgres) or run as a normal user"
            ) from None
    return bin_dir


# ---------------------------------------------------------------------------------------------
# Kafka


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


def _kafka_files(cfg: StackConfig) -> _KafkaFiles:
    root = cfg.home / "kafka"
    return _KafkaFiles(
        root=root,
        libs=root / "libs",
        libs_stamp=root / "libs.pom-sha256",
        properties=root / "server.properties",
        data=root / "data",
        log=root / "kafka.log",
        out=root / "kafka.out",
        pid=root / "kafka.pid",
    )


def _kafka_pid(cfg: StackConfig) -> int | None:
    files = _kafka_files(cfg)
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    # A pid file outlives reboots; the pid may now belong to anything.
    if _pid_alive(pid):
        cmdline = _cmdline(pid)
        if "kafka.Kafka" in cmdline and str(files.properties) in cmdline:
            return pid
    return None


def _kafka_answers(port: int, timeout: float = 2.0) -> bool:
    """An ApiVersions v0 round trip. A TCP connect alone proves little: the broker binds its
    port long before it serves requests, and the kernel accepts into the backlog meanwhile."""
    client_id = b"auditlog-stack"
    correlation_id = 0x5A17
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
            body = _recv_exactly(sock, size)
    except OSError:
        return False
    if len(body) < 6:
        return False
    answered_id, error_code = struct.unpack_from(">ih", body)
    # 35 (UNSUPPORTED_VERSION) is still an answer from a serving broker.
    return answered_id == correlation_id and error_code in {0, 35}


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionResetError("kafka closed the connection")
        chunks += chunk
    return bytes(chunks)


def _pom_digest() -> str:
    if not _POM.is_file():
        raise StackError(
            f"{_POM} not found; the local stack runs from a source checkout of auditlog"
        )
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


_POM_CHANGED = "kafka: deploy/local/pom.xml changed; stop and start the stack to use it"


def _kafka_jars_current(cfg: StackConfig) -> bool:
    files = _kafka_files(cfg)
    try:
        stamp = files.libs_stamp.read_text().strip()
    except OSError:
        return False
    return files.libs.is_dir() and stamp == _pom_digest()


def _fetch_kafka_jars(cfg: StackConfig, echo: _Echo) -> None:
    files = _kafka_files(cfg)
    digest = _pom_digest()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found; install maven")
    echo("fetching Kafka jars with mvn (first run only)…")
    files.root.mkdir(parents=True, exist_ok=True)
    # Old and new jar versions side by side on one classpath would mix classes: swap whole dirs.
    staging = files.root / "libs.new"
    shutil.rmtree(staging, ignore_errors=True)
    _run(
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


def _ensure_kafka_formatted(cfg: StackConfig, java: str, echo: _Echo) -> None:
    files = _kafka_files(cfg)
    # meta.properties is the format tool's own marker; deleting the data dir re-formats.
    if (files.data / "meta.properties").is_file():
        return
    echo("kafka: formatting storage (first run only)…")
    _run(
        [
            *_jvm_command(java, files, "-Xmx256m"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _new_kafka_cluster_id(),
            "-c",
            str(files.properties),
        ],
        what="kafka storage format",
    )


def _launch_kafka(cfg: StackConfig, java: str) -> int:
    files = _kafka_files(cfg)
    command = [
        *_jvm_command(
            java, files, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"
        ),
        "kafka.Kafka",
        str(files.properties),
    ]
    # sh puts the JVM in the background and exits, so the broker is never our child: it leaves
    # no zombie behind in a long-lived caller and no running Popen to warn about at exit.
    launcher = 'out="$1"; shift; "$@" >"$out" 2>&1 </dev/null & echo $!'
    result = _run(
        ["sh", "-c", launcher, "sh", str(files.out), *command],
        what="starting kafka",
        new_session=True,
        timeout=30,
    )
    pid = int(result.stdout.strip())
    files.pid.write_text(f"{pid}\n")
    return pid


def _kafka_failure(cfg: StackConfig, problem: str) -> StackError:
    files = _kafka_files(cfg)
    message = f"{problem}; last lines of {files.log}:\n{_tail(files.log)}"
    with contextlib.suppress(OSError):
        if files.out.read_text().strip():
            message += f"\n{files.out}:\n{_tail(files.out, 10)}"
    return StackError(message)


def _wait_for_kafka(cfg: StackConfig, pid: int, echo: _Echo) -> None:
    deadline = time.monotonic() + KAFKA_READY_TIMEOUT
    while not _kafka_answers(cfg.kafka_port):
        if not _pid_alive(pid):
            _kafka_files(cfg).pid.unlink(missing_ok=True)
            raise _kafka_failure(cfg, "kafka exited while starting")
        if time.monotonic() > deadline:
            _terminate(pid, "kafka", echo)
            _kafka_files(cfg).pid.unlink(missing_ok=True)
            raise _kafka_failure(
                cfg,
                f"kafka did not answer on {cfg.kafka_bootstrap} within "
                f"{KAFKA_READY_TIMEOUT:.0f}s (stopped it)",
            )
        time.sleep(0.2)


def _terminate(pid: int, name: str, echo: _Echo) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_exit(pid, STOP_TIMEOUT):
        return
    echo(f"{name}: still running {STOP_TIMEOUT:.0f}s after SIGTERM; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10):
        raise StackError(f"{name} (pid {pid}) is still running after SIGKILL")


def _stop_kafka(cfg: StackConfig, echo: _Echo) -> None:
    pid = _kafka_pid(cfg)
    if pid is None:
        echo("kafka: not running")
    else:
        _terminate(pid, "kafka", echo)
        echo(f"kafka: stopped (pid {pid})")
    _kafka_files(cfg).pid.unlink(missing_ok=True)


def _kafka_status(cfg: StackConfig) -> ComponentStatus:
    files = _kafka_files(cfg)
    pid = _kafka_pid(cfg)
    if pid is None:
        detail = "not running"
        if port_in_use(cfg.kafka_port):
            detail += f"; {cfg.kafka_bootstrap} is taken ({_port_owner(cfg.kafka_port)})"
        return ComponentStatus("kafka", running=False, pid=None, detail=detail)
    if _kafka_answers(cfg.kafka_port):
        detail = f"answering on {cfg.kafka_bootstrap}; log {files.log}"
        return ComponentStatus("kafka", running=True, pid=pid, detail=detail)
    detail = f"process up but not answering on {cfg.kafka_bootstrap}; see {files.log}"
    return ComponentStatus("kafka", running=False, pid=pid, detail=detail)


# ---------------------------------------------------------------------------------------------
# PostgreSQL

_PG_INCLUDE = "include_if_exists = 'auditlog.conf'"


@dataclass(frozen=True, slots=True)
class _PgFiles:
    root: Path  # owned by the OS user the server runs as; holds data/ and the server log
    data: Path
    log: Path

    @classmethod
    def at(cls, root: Path) -> _PgFiles:
        return cls(root=root, data=root / "data", log=root / "postgres.log")


@dataclass(frozen=True, slots=True)
class _PgProcess:
    pid: int
    port: int


def _pg_pointer(cfg: StackConfig) -> Path:
    # Written only when the cluster lives outside home, so that status and stop find it.
    return cfg.home / "pg" / "location"


def _pg_files(cfg: StackConfig) -> _PgFiles:
    with contextlib.suppress(OSError):
        elsewhere = Path(_pg_pointer(cfg).read_text().strip())
        if elsewhere.is_absolute():
            return _PgFiles.at(elsewhere)
    return _PgFiles.at(cfg.home / "pg")


def pg_data_dir(cfg: StackConfig) -> Path:
    """The PostgreSQL data directory: ``<home>/pg/data``, or a directory under /var/tmp when the
    postgres OS user cannot reach home or the socket path would be too long."""
    return _pg_files(cfg).data


def _fallback_pg_root(cfg: StackConfig) -> Path:
    digest = hashlib.sha256(str(cfg.home).encode()).hexdigest()[:12]
    # /var/tmp, not /tmp: it survives reboots, and the cluster is meant to.
    return Path("/var/tmp") / f"auditlog-pg-{digest}"  # noqa: S108


def _pg_process(files: _PgFiles) -> _PgProcess | None:
    try:
        lines = (files.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    # After a crash or reboot the pid may belong to another process, even another cluster's.
    if _pid_alive(pid) and str(files.data) in _cmdline(pid):
        return _PgProcess(pid=pid, port=port)
    return None


def _why_not_under_home(cfg: StackConfig) -> str | None:
    socket_path = cfg.home / "pg" / "data" / f".s.PGSQL.{cfg.pg_port}"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        return f"the socket path under {cfg.home} would be too long for a Unix socket"
    if _is_root():
        reachable = _run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(cfg.home)],
            what="checking that postgres can reach the home directory",
            check=False,
        )
        if reachable.returncode != 0:
            return f"the postgres OS user cannot enter {cfg.home}"
    return None


def _place_pg_cluster(cfg: StackConfig, echo: _Echo) -> _PgFiles:
    current = _pg_files(cfg)
    if (current.data / "PG_VERSION").is_file():
        return current
    (cfg.home / "pg").mkdir(parents=True, exist_ok=True)
    reason = _why_not_under_home(cfg)
    if reason is None:
        _pg_pointer(cfg).unlink(missing_ok=True)
        files = _PgFiles.at(cfg.home / "pg")
    else:
        files = _PgFiles.at(_fallback_pg_root(cfg))
        if files != current:
            _clear_stale_fallback(cfg, files)
            echo(f"postgres: {reason}; keeping the cluster in {files.root} instead")
        _pg_pointer(cfg).write_text(f"{files.root}\n")
    files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _is_root():
        shutil.chown(files.root, "postgres", "postgres")
    return files


def _clear_stale_fallback(cfg: StackConfig, files: _PgFiles) -> None:
    """A fallback directory without a pointer is what `rm -rf <home>` leaves behind: remove it
    so that resetting home resets the database too."""
    if not files.root.exists():
        return
    process = _pg_process(files)
    if process is not None:
        raise StackError(
            f"{files.data} holds a cluster of an earlier {cfg.home} that is still running "
            f"(pid {process.pid}); stop it with: "
            f"{' '.join(_as_pg_owner(['pg_ctl', '-D', str(files.data), 'stop']))}"
        )
    shutil.rmtree(files.root)


def _ensure_pg_initialized(bin_dir: Path, files: _PgFiles, echo: _Echo) -> None:
    if (files.data / "PG_VERSION").is_file():
        return
    echo(f"postgres: creating a cluster in {files.data} (first run only)…")
    _run(
        _as_pg_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(files.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        ),
        what="initdb",
        cwd=files.root,
        env=_pg_env(),
        timeout=300,
    )


def _configure_pg(cfg: StackConfig, files: _PgFiles) -> None:
    # Settings go to a file of our own, rewritten on every start, so a changed port takes
    # effect and the stock postgresql.conf stays as initdb wrote it but for one include line.
    _write_if_changed(files.data / "auditlog.conf", _render_pg_conf(cfg, files.data), pg_owned=True)
    _write_if_changed(files.data / "pg_hba.conf", _PG_HBA, pg_owned=True)
    main_conf = files.data / "postgresql.conf"
    text = main_conf.read_text()
    if _PG_INCLUDE not in text:
        _write_if_changed(main_conf, f"{text}\n{_PG_INCLUDE}\n", pg_owned=True)


def _start_pg(bin_dir: Path, files: _PgFiles) -> _PgProcess:
    result = _run(
        _as_pg_owner(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(files.data),
                "-l",
                str(files.log),
                "-w",
                "-t",
                str(PG_START_TIMEOUT),
                "start",
            ]
        ),
        what="pg_ctl start",
        check=False,
        cwd=files.root,
        env=_pg_env(),
        timeout=PG_START_TIMEOUT + 30,
        # Keeps a Ctrl-C in the caller's terminal from reaching the server.
        new_session=True,
    )
    process = _pg_process(files)
    if result.returncode != 0 or process is None:
        raise StackError(
            f"postgres did not start (pg_ctl exit {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}); "
            f"last lines of {files.log}:\n{_tail(files.log)}"
        )
    return process


def _bootstrap_pg_role(bin_dir: Path, files: _PgFiles, process: _PgProcess) -> None:
    _run(
        _as_pg_owner(
            [
                str(bin_dir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(files.data),
                "-p",
                str(process.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ]
        ),
        what=f"creating the {PG_ROLE} role and database",
        input_text=_PG_BOOTSTRAP_SQL,
        cwd=files.root,
        env=_pg_env(),
    )


def _pg_login_error(cfg: StackConfig, bin_dir: Path) -> str | None:
    """None when the auditlog role can log in over TCP and run SQL, else why not."""
    result = _run(
        [
            str(bin_dir / "psql"),
            "-X",
            "-A",
            "-t",
            "-w",
            "-h",
            HOST,
            "-p",
            str(cfg.pg_port),
            "-U",
            PG_ROLE,
            "-d",
            PG_DATABASE,
            "-c",
            "SELECT 1",
        ],
        what="psql",
        check=False,
        env={**_pg_env(), "PGPASSWORD": PG_PASSWORD, "PGCONNECT_TIMEOUT": "5"},
        timeout=30,
    )
    if result.returncode == 0 and result.stdout.strip() == "1":
        return None
    return result.stderr.strip() or f"psql exit {result.returncode}"


def _stop_pg(cfg: StackConfig, echo: _Echo) -> None:
    files = _pg_files(cfg)
    process = _pg_process(files)
    if process is None:
        echo("postgres: not running")
        return
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        # The binaries went away under a running server; SIGINT is what "-m fast" sends.
        os.kill(process.pid, signal.SIGINT)
        if not _wait_exit(process.pid, STOP_TIMEOUT):
            raise StackError(f"postgres (pid {process.pid}) did not stop; pg_ctl not found")
    else:
        pg_ctl = [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(files.data),
            "-w",
            "-t",
            str(int(STOP_TIMEOUT)),
            "stop",
        ]
        fast = _run(
            _as_pg_owner([*pg_ctl, "-m", "fast"]),
            what="pg_ctl stop",
            check=False,
            cwd=files.root,
            env=_pg_env(),
            timeout=STOP_TIMEOUT + 30,
        )
        if fast.returncode != 0 and _pg_process(files) is not None:
            echo(
                f"postgres: still running {STOP_TIMEOUT:.0f}s after a fast shutdown; "
                "using an immediate one"
            )
            _run(
                _as_pg_owner([*pg_ctl, "-m", "immediate"]),
                what="pg_ctl stop -m immediate",
                cwd=files.root,
                env=_pg_env(),
                timeout=STOP_TIMEOUT + 30,
            )
    echo(f"postgres: stopped (pid {process.pid})")


def _pg_status(cfg: StackConfig) -> ComponentStatus:
    files = _pg_files(cfg)
    process = _pg_process(files)
    address = f"{HOST}:{cfg.pg_port}"
    if process is None:
        detail = "not running"
        if port_in_use(cfg.pg_port):
            detail += f"; {address} is taken ({_port_owner(cfg.pg_port)})"
        return ComponentStatus("postgres", running=False, pid=None, detail=detail)
    if process.port != cfg.pg_port:
        detail = (
            f"running on port {process.port}, not the configured {cfg.pg_port}; "
            "stop and start the stack to move it"
        )
        return ComponentStatus("postgres", running=False, pid=process.pid, detail=detail)
    bin_dir = _find_pg_bin()
    error = "PostgreSQL binaries not found" if bin_dir is None else _pg_login_error(cfg, bin_dir)
    if error is None:
        detail = f"answering on {address} as {PG_ROLE}; data {files.data}; log {files.log}"
        return ComponentStatus("postgres", running=True, pid=process.pid, detail=detail)
    detail = f"process up but {PG_ROLE} cannot log in on {address}: {error}"
    return ComponentStatus("postgres", running=False, pid=process.pid, detail=detail)


# ---------------------------------------------------------------------------------------------
# Public operations


@dataclass(frozen=True, slots=True)
class _Installed:
    java: str | None  # None when Kafka is already running and nothing needs a JVM
    pg_bin: Path
    pg: _PgFiles


def _install(cfg: StackConfig, echo: _Echo, *, kafka_running: bool, pg_running: bool) -> _Installed:
    java: str | None = None
    if kafka_running:
        if not _kafka_jars_current(cfg):
            echo(_POM_CHANGED)
    else:
        jars_current = _kafka_jars_current(cfg)
        java = _ensure_java(echo, need_mvn=not jars_current)
        if not jars_current:
            _fetch_kafka_jars(cfg, echo)
        _write_if_changed(_kafka_files(cfg).properties, render_server_properties(cfg))
        _ensure_kafka_formatted(cfg, java, echo)
    pg_bin = _ensure_pg_bin(echo)
    if pg_running:
        pg = _pg_files(cfg)
    else:
        pg = _place_pg_cluster(cfg, echo)
        _ensure_pg_initialized(pg_bin, pg, echo)
        _configure_pg(cfg, pg)
    return _Installed(java=java, pg_bin=pg_bin, pg=pg)


def ensure_installed(cfg: StackConfig, echo: _Echo = print) -> None:
    """Install what the stack needs and prepare its state; idempotent and cheap once done."""
    with _locked(cfg):
        _install(
            cfg,
            echo,
            kafka_running=_kafka_pid(cfg) is not None,
            pg_running=_pg_process(_pg_files(cfg)) is not None,
        )


def start(cfg: StackConfig, echo: _Echo = print) -> None:
    """Install, start what is not running, and return once Kafka answers requests and the
    auditlog role can log in to PostgreSQL. Idempotent."""
    with _locked(cfg):
        kafka, pg = status(cfg)
        if kafka.running and pg.running:
            echo(
                f"already running: kafka pid {kafka.pid} on {cfg.kafka_bootstrap}, "
                f"postgres pid {pg.pid} on {HOST}:{cfg.pg_port}"
            )
            if not _kafka_jars_current(cfg):
                echo(_POM_CHANGED)
            return
        # Check every port before starting anything, so a conflict leaves nothing half up.
        if kafka.pid is None:
            _require_free(cfg.kafka_port, KAFKA_PORT_ENV, "Kafka")
            _require_free(cfg.controller_port, CONTROLLER_PORT_ENV, "Kafka controller")
        if pg.pid is None:
            _require_free(cfg.pg_port, PG_PORT_ENV, "PostgreSQL")
        installed = _install(
            cfg, echo, kafka_running=kafka.pid is not None, pg_running=pg.pid is not None
        )

        kafka_pid = kafka.pid
        if kafka_pid is None:
            assert installed.java is not None
            # The JVM takes seconds to come up: let it while PostgreSQL starts.
            kafka_pid = _launch_kafka(cfg, installed.java)
            echo(f"kafka: starting pid {kafka_pid}…")
        elif kafka.running:
            echo(f"kafka: already running (pid {kafka_pid})")

        _start_or_repair_pg(cfg, installed, pg, echo)

        if not kafka.running:
            _wait_for_kafka(cfg, kafka_pid, echo)
            echo(f"kafka: started pid {kafka_pid} on {cfg.kafka_bootstrap}")


def _start_or_repair_pg(
    cfg: StackConfig, installed: _Installed, pg: ComponentStatus, echo: _Echo
) -> None:
    if pg.running:
        echo(f"postgres: already running (pid {pg.pid})")
        return
    process = _pg_process(installed.pg)
    if process is None:
        process = _start_pg(installed.pg_bin, installed.pg)
        started = True
    elif process.port != cfg.pg_port:
        raise StackError(f"postgres {pg.detail}")
    else:
        started = False
    # Also repairs a running cluster whose role or database went missing.
    _bootstrap_pg_role(installed.pg_bin, installed.pg, process)
    error = _pg_login_error(cfg, installed.pg_bin)
    if error is not None:
        raise StackError(
            f"postgres is up but {PG_ROLE} cannot log in on {HOST}:{cfg.pg_port}: {error}; "
            f"see {installed.pg.log}"
        )
    if started:
        echo(f"postgres: started pid {process.pid} on {HOST}:{cfg.pg_port}")
    else:
        echo(f"postgres: already running (pid {process.pid}); restored the {PG_ROLE} login")


def stop(cfg: StackConfig, echo: _Echo = print) -> None:
    """Stop Kafka and PostgreSQL (SIGTERM or a fast shutdown, forcefully after a timeout).
    Idempotent; keeps all data."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        echo("postgres: not running")
        return
    with _locked(cfg):
        _stop_kafka(cfg, echo)
        _stop_pg(cfg, echo)


def stop_kafka(cfg: StackConfig, echo: _Echo = print) -> None:
    """Stop only the broker (outage drills); `start` brings it back."""
    if not cfg.home.is_dir():
        echo("kafka: not running")
        return
    with _locked(cfg):
        _stop_kafka(cfg, echo)


def status(cfg: StackConfig) -> list[ComponentStatus]:
    """Kafka and PostgreSQL, in that order; `running` means up and answering."""
    return [_kafka_status(cfg), _pg_status(cfg)]


def is_running(cfg: StackConfig) -> bool:
    """Whether both servers are up and answering."""
    return all(component.running for component in status(cfg))


def main(argv: Sequence[str]) -> int:
    """`auditlog stack start|stop|status`: 0 ok, 1 not running (status), 2 on error."""
    commands = ("start", "stop", "status")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: auditlog stack {'|'.join(commands)}", file=sys.stderr)
        return 2
    try:
        cfg = StackConfig.from_env()
        if argv[0] == "start":
            start(cfg)
            print(f"AUDITLOG_KAFKA_BOOTSTRAP={cfg.kafka_bootstrap}")
            print(f"AUDITLOG_DATABASE_URL={cfg.database_url}")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
