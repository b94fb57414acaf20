"""The stack's PostgreSQL cluster: placed, created, configured, started, bootstrapped, stopped.

The binaries are the highest version under ``/usr/lib/postgresql`` (or ``pg_ctl`` on the
``PATH``), installed with apt-get when missing. The cluster lives in ``<home>/pg`` unless the
``postgres`` OS user cannot enter home or the socket path would be too long; then it lives under
``/var/tmp`` and ``<home>/pg/location`` points there. Our settings go to ``auditlog.conf`` in the
data directory, rewritten on every start. A start that finds the server down or not answering
creates the ``auditlog`` role and database when missing. Every server command runs as the
cluster's owner (`as_pg_owner`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from auditlog.devstack.config import (
    HOST,
    PG_DATABASE,
    PG_PASSWORD,
    PG_ROLE,
    STOP_TIMEOUT,
    ComponentStatus,
    Echo,
    StackConfig,
    StackError,
)
from auditlog.devstack.host import (
    apt_install,
    as_pg_owner,
    cmdline,
    is_root,
    pid_alive,
    port_in_use,
    port_owner,
    run,
    tail,
    wait_exit,
    write_if_changed,
)

PG_START_TIMEOUT = 60

# PostgreSQL puts its socket in the data directory; sun_path holds 108 bytes on Linux and the
# server refuses longer paths, so a deep home needs the short fallback location.
_MAX_SOCKET_PATH = 100

_PG_INCLUDE = "include_if_exists = 'auditlog.conf'"

_PG_HBA = (
    "# Written by `auditlog stack start`. The socket lives in the data directory, which only the\n"
    "# cluster's owner can enter, so trusting it lets in no one else.\n"
    "local   all   postgres                 trust\n"
    "local   replication   postgres         trust\n"
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


def _render_pg_conf(cfg: StackConfig, data_dir: Path) -> str:
    socket_dir = str(data_dir).replace("'", "''")
    return (
        "# Written by `auditlog stack start` on every start (port: AUDITLOG_STACK_PG_PORT).\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {cfg.pg_port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        # Write-heavy settings (docs/local-stack.md): rare checkpoints mean few full-page
        # images in the WAL, which otherwise dominate it right after each checkpoint.
        f"shared_buffers = {cfg.pg_shared_buffers}\n"
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


def _pg_env() -> dict[str, str]:
    # PGHOST, PGUSER, PGOPTIONS and friends from the developer's shell would redirect our psql.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


# ---------------------------------------------------------------------------------------------
# Binaries


def ensure_bin(echo: Echo) -> Path:
    """The directory of initdb, pg_ctl and psql, installing PostgreSQL when there is none."""
    bin_dir = _find_bin()
    if bin_dir is None:
        # Debian's package also creates and starts a system cluster on 5432; we leave it be.
        apt_install(["postgresql"], "PostgreSQL not found", echo)
        bin_dir = _find_bin()
        if bin_dir is None:
            raise StackError("PostgreSQL binaries not found even after installing postgresql")
    if is_root():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root, but there is no 'postgres' OS user to run the server as; "
                "create one (useradd --system postgres) or run as a normal user"
            ) from None
    return bin_dir


def _find_bin() -> Path | None:
    versions: list[tuple[int, Path]] = []
    for pg_ctl in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"):
        with contextlib.suppress(ValueError):
            versions.append((int(pg_ctl.parent.parent.name), pg_ctl.parent))
    if versions:
        return max(versions)[1]
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


# ---------------------------------------------------------------------------------------------
# Where the cluster lives


@dataclass(frozen=True, slots=True)
class PgFiles:
    root: Path  # owned by the OS user the server runs as; holds data/ and the server log
    data: Path
    log: Path

    @classmethod
    def at(cls, root: Path) -> PgFiles:
        return cls(root=root, data=root / "data", log=root / "postgres.log")


@dataclass(frozen=True, slots=True)
class _PgProcess:
    pid: int
    port: int


def _pointer(cfg: StackConfig) -> Path:
    # Written only when the cluster lives outside home, so that status and stop find it.
    return cfg.home / "pg" / "location"


def cluster_files(cfg: StackConfig) -> PgFiles:
    """Where this home's cluster is, whether or not it exists yet."""
    with contextlib.suppress(OSError):
        elsewhere = Path(_pointer(cfg).read_text().strip())
        if elsewhere.is_absolute():
            return PgFiles.at(elsewhere)
    return PgFiles.at(cfg.home / "pg")


def pg_data_dir(cfg: StackConfig) -> Path:
    """The PostgreSQL data directory: ``<home>/pg/data``, or a directory under /var/tmp when the
    postgres OS user cannot reach home or the socket path would be too long."""
    return cluster_files(cfg).data


def _fallback_root(cfg: StackConfig) -> Path:
    digest = hashlib.sha256(str(cfg.home).encode()).hexdigest()[:12]
    # /var/tmp, not /tmp: it survives reboots, and the cluster is meant to.
    return Path("/var/tmp") / f"auditlog-pg-{digest}"  # noqa: S108


def _process(files: PgFiles) -> _PgProcess | None:
    try:
        lines = (files.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    # After a crash or reboot the pid may belong to another process, even another cluster's.
    if pid_alive(pid) and str(files.data) in cmdline(pid):
        return _PgProcess(pid=pid, port=port)
    return None


def running_pid(cfg: StackConfig) -> int | None:
    """The postmaster's pid of this home's cluster, or None when it is not running."""
    process = _process(cluster_files(cfg))
    return None if process is None else process.pid


# ---------------------------------------------------------------------------------------------
# Installing


def prepare(cfg: StackConfig, bin_dir: Path, echo: Echo) -> PgFiles:
    """Place the cluster, create it once, and write our settings; the server is not started."""
    files = _place_cluster(cfg, echo)
    _ensure_initialized(bin_dir, files, echo)
    _configure(cfg, files)
    return files


def _why_not_under_home(cfg: StackConfig) -> str | None:
    socket_path = cfg.home / "pg" / "data" / f".s.PGSQL.{cfg.pg_port}"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        return f"the socket path under {cfg.home} would be too long for a Unix socket"
    if is_root():
        reachable = run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(cfg.home)],
            what="checking that postgres can reach the home directory",
            check=False,
        )
        if reachable.returncode != 0:
            return f"the postgres OS user cannot enter {cfg.home}"
    return None


def _place_cluster(cfg: StackConfig, echo: Echo) -> PgFiles:
    current = cluster_files(cfg)
    if (current.data / "PG_VERSION").is_file():
        return current
    (cfg.home / "pg").mkdir(parents=True, exist_ok=True)
    reason = _why_not_under_home(cfg)
    if reason is None:
        _pointer(cfg).unlink(missing_ok=True)
        files = PgFiles.at(cfg.home / "pg")
    else:
        files = PgFiles.at(_fallback_root(cfg))
        if files != current:
            _clear_stale_fallback(cfg, files)
            echo(f"postgres: {reason}; keeping the cluster in {files.root} instead")
        _pointer(cfg).write_text(f"{files.root}\n")
    files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if is_root():
        shutil.chown(files.root, "postgres", "postgres")
    return files


def _clear_stale_fallback(cfg: StackConfig, files: PgFiles) -> None:
    """A fallback directory without a pointer is what `rm -rf <home>` leaves behind: remove it
    so that resetting home resets the database too."""
    if not files.root.exists():
        return
    process = _process(files)
    if process is not None:
        raise StackError(
            f"{files.data} holds a cluster of an earlier {cfg.home} that is still running "
            f"(pid {process.pid}); stop it with: "
            f"{' '.join(as_pg_owner(['pg_ctl', '-D', str(files.data), 'stop']))}"
        )
    shutil.rmtree(files.root)


def _ensure_initialized(bin_dir: Path, files: PgFiles, echo: Echo) -> None:
    if (files.data / "PG_VERSION").is_file():
        return
    echo(f"postgres: creating a cluster in {files.data} (first run only)…")
    run(
        as_pg_owner(
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


def _configure(cfg: StackConfig, files: PgFiles) -> None:
    # Settings go to a file of our own, rewritten on every start, so a changed port takes
    # effect and the stock postgresql.conf stays as initdb wrote it but for one include line.
    write_if_changed(files.data / "auditlog.conf", _render_pg_conf(cfg, files.data), pg_owned=True)
    write_if_changed(files.data / "pg_hba.conf", _PG_HBA, pg_owned=True)
    main_conf = files.data / "postgresql.conf"
    text = main_conf.read_text()
    if _PG_INCLUDE not in text:
        write_if_changed(main_conf, f"{text}\n{_PG_INCLUDE}\n", pg_owned=True)


# ---------------------------------------------------------------------------------------------
# Running


def start_or_repair(
    cfg: StackConfig, bin_dir: Path, files: PgFiles, current: ComponentStatus, echo: Echo
) -> None:
    """Start the cluster unless `current` says it answers, then make sure the auditlog role can
    log in: this also repairs a running cluster whose role or database went missing."""
    if current.running:
        echo(f"postgres: already running (pid {current.pid})")
        return
    process = _process(files)
    if process is None:
        process = _start(bin_dir, files)
        started = True
    elif process.port != cfg.pg_port:
        raise StackError(f"postgres {current.detail}")
    else:
        started = False
    _bootstrap_role(bin_dir, files, process)
    error = _login_error(cfg, bin_dir)
    if error is not None:
        raise StackError(
            f"postgres is up but {PG_ROLE} cannot log in on {HOST}:{cfg.pg_port}: {error}; "
            f"see {files.log}"
        )
    if started:
        echo(f"postgres: started pid {process.pid} on {HOST}:{cfg.pg_port}")
    else:
        echo(f"postgres: already running (pid {process.pid}); restored the {PG_ROLE} login")


def _start(bin_dir: Path, files: PgFiles) -> _PgProcess:
    result = run(
        as_pg_owner(
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
    process = _process(files)
    if result.returncode != 0 or process is None:
        raise StackError(
            f"postgres did not start (pg_ctl exit {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}); "
            f"last lines of {files.log}:\n{tail(files.log)}"
        )
    return process


def _bootstrap_role(bin_dir: Path, files: PgFiles, process: _PgProcess) -> None:
    run(
        as_pg_owner(
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


def _login_error(cfg: StackConfig, bin_dir: Path) -> str | None:
    """None when the auditlog role can log in over TCP and run SQL, else why not."""
    result = run(
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


def stop(cfg: StackConfig, echo: Echo) -> None:
    """A fast shutdown, then an immediate one after a timeout; says so when it is not running."""
    files = cluster_files(cfg)
    process = _process(files)
    if process is None:
        echo("postgres: not running")
        return
    bin_dir = _find_bin()
    if bin_dir is None:
        # The binaries went away under a running server; SIGINT is what "-m fast" sends.
        os.kill(process.pid, signal.SIGINT)
        if not wait_exit(process.pid, STOP_TIMEOUT):
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
        fast = run(
            as_pg_owner([*pg_ctl, "-m", "fast"]),
            what="pg_ctl stop",
            check=False,
            cwd=files.root,
            env=_pg_env(),
            timeout=STOP_TIMEOUT + 30,
        )
        if fast.returncode != 0 and _process(files) is not None:
            echo(
                f"postgres: still running {STOP_TIMEOUT:.0f}s after a fast shutdown; "
                "using an immediate one"
            )
            run(
                as_pg_owner([*pg_ctl, "-m", "immediate"]),
                what="pg_ctl stop -m immediate",
                cwd=files.root,
                env=_pg_env(),
                timeout=STOP_TIMEOUT + 30,
            )
    echo(f"postgres: stopped (pid {process.pid})")


def status(cfg: StackConfig) -> ComponentStatus:
    files = cluster_files(cfg)
    process = _process(files)
    address = f"{HOST}:{cfg.pg_port}"
    if process is None:
        detail = "not running"
        if port_in_use(cfg.pg_port):
            detail += f"; {address} is taken ({port_owner(cfg.pg_port)})"
        return ComponentStatus("postgres", running=False, pid=None, detail=detail)
    if process.port != cfg.pg_port:
        detail = (
            f"running on port {process.port}, not the configured {cfg.pg_port}; "
            "stop and start the stack to move it"
        )
        return ComponentStatus("postgres", running=False, pid=process.pid, detail=detail)
    bin_dir = _find_bin()
    error = "PostgreSQL binaries not found" if bin_dir is None else _login_error(cfg, bin_dir)
    if error is None:
        detail = f"answering on {address} as {PG_ROLE}; data {files.data}; log {files.log}"
        return ComponentStatus("postgres", running=True, pid=process.pid, detail=detail)
    detail = f"process up but {PG_ROLE} cannot log in on {address}: {error}"
    return ComponentStatus("postgres", running=False, pid=process.pid, detail=detail)
