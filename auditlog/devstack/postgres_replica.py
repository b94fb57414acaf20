"""A streaming replica of the local stack's PostgreSQL, for failover drills and read replicas.

`start_replica` copies the running primary with ``pg_basebackup`` (as the cluster's owner, the
``postgres`` OS user when we are root, through the primary's Unix socket: no password), starts
it as a hot standby on a port of its own with its data beside the primary's
(``<home>/pg-replica``), and, when ``synchronous``, makes the primary wait for it on every
commit (``synchronous_standby_names``), so that a commit the primary acknowledged is on the
replica too. `promote` turns it into a primary; `stop_replica` stops it
(docs/local-stack.md#a-postgresql-replica).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from auditlog.devstack.config import (
    HOST,
    PG_DATABASE,
    PG_PASSWORD,
    PG_ROLE,
    ComponentStatus,
    Echo,
    StackConfig,
    StackError,
)
from auditlog.devstack.host import as_pg_owner, is_root, run, write_if_changed
from auditlog.devstack.postgres import (
    PgFiles,
    _pg_env,
    _process,
    _render_pg_conf,
    _start,
    cluster_files,
    ensure_bin,
)

REPLICA_NAME = "auditlog_replica"  # its application_name, as the primary's settings name it
SYNC_TIMEOUT = 30.0


def replica_files(cfg: StackConfig) -> PgFiles:
    """Beside the primary's directory (``<home>/pg-replica``, or beside its fallback location
    when the postgres OS user cannot reach home)."""
    primary = cluster_files(cfg).root
    return PgFiles.at(primary.with_name(f"{primary.name}-replica"))


def replica_url(cfg: StackConfig, port: int) -> str:
    return dataclasses.replace(cfg, pg_port=port).database_url


def failover_url(cfg: StackConfig, replica_port: int) -> str:
    """Both servers in one URL: clients connect to whichever accepts writes."""
    return (
        f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{HOST}:{cfg.pg_port},{HOST}:{replica_port}/"
        f"{PG_DATABASE}?target_session_attrs=read-write"
    )


def start_replica(cfg: StackConfig, port: int, echo: Echo, *, synchronous: bool = True) -> None:
    """Copy the running primary (once), start the copy as a standby on ``port``, and wait until
    it streams (synchronously, if asked: the primary's commits then wait for it)."""
    primary = cluster_files(cfg)
    source = _process(primary)
    if source is None:
        raise StackError("postgres: the primary is not running; start the stack first")
    bin_dir = ensure_bin(echo)
    files = replica_files(cfg)
    if not (files.data / "PG_VERSION").is_file():
        files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if is_root():
            shutil.chown(files.root, "postgres", "postgres")
        echo(f"postgres replica: copying the primary into {files.data}…")
        run(
            as_pg_owner(
                [
                    str(bin_dir / "pg_basebackup"),
                    *("-D", str(files.data), "-h", str(primary.data), "-p", str(source.port)),
                    *("-U", "postgres", "-X", "stream", "-c", "fast"),
                ]
            ),
            what="pg_basebackup",
            cwd=files.root,
            env=_pg_env(),
            timeout=600,
        )
        # The copy's ALTER SYSTEM settings are the primary's (a synchronous standby name would
        # make the replica, once promoted, wait for a standby it does not have).
        write_if_changed(files.data / "postgresql.auto.conf", "", pg_owned=True)
    _configure_standby(cfg, files, port, primary.data, source.port)
    if _process(files) is None:
        _start(bin_dir, files)
    set_synchronous(cfg, synchronous=synchronous)
    _wait_streaming(cfg, "sync" if synchronous else "async")
    echo(
        f"postgres replica: streaming ({'synchronous' if synchronous else 'asynchronous'}) "
        f"on {HOST}:{port}"
    )


def replica_status(cfg: StackConfig) -> ComponentStatus | None:
    """The replica's state for `auditlog stack status`; None when this home has none."""
    files = replica_files(cfg)
    if not (files.data / "PG_VERSION").is_file():
        return None
    process = _process(files)
    if process is None:
        return ComponentStatus("replica", running=False, pid=None, detail=f"data {files.data}")
    role = "promoted (a primary)" if (files.data / "promoted").exists() else "standby"
    detail = f"{role} on {HOST}:{process.port}; data {files.data}; log {files.log}"
    return ComponentStatus("replica", running=True, pid=process.pid, detail=detail)


def set_synchronous(cfg: StackConfig, *, synchronous: bool) -> None:
    """Make the primary's commits wait for the replica, or stop them waiting."""
    if synchronous:
        _primary_sql(cfg, f"ALTER SYSTEM SET synchronous_standby_names = '{REPLICA_NAME}'")
    else:
        _primary_sql(cfg, "ALTER SYSTEM RESET synchronous_standby_names")
    _primary_sql(cfg, "SELECT pg_reload_conf()")


def _configure_standby(
    cfg: StackConfig, files: PgFiles, port: int, primary_socket: Path, primary_port: int
) -> None:
    conninfo = (
        f"host={primary_socket} port={primary_port} user=postgres application_name={REPLICA_NAME}"
    ).replace("'", "''")
    # The standby's own buffers stay small: it serves reads of recent data in drills.
    standby = dataclasses.replace(cfg, pg_port=port, pg_shared_buffers="128MB")
    conf = _render_pg_conf(standby, files.data)
    conf += f"primary_conninfo = '{conninfo}'\nhot_standby_feedback = on\n"
    write_if_changed(files.data / "auditlog.conf", conf, pg_owned=True)
    signal_file = files.data / "standby.signal"
    if not signal_file.exists() and not (files.data / "promoted").exists():
        write_if_changed(signal_file, "", pg_owned=True)


def promote(cfg: StackConfig, echo: Echo) -> None:
    """Make the replica a primary (``pg_ctl promote``), waiting until it accepts writes."""
    files = replica_files(cfg)
    bin_dir = ensure_bin(echo)
    run(
        as_pg_owner([str(bin_dir / "pg_ctl"), "-D", str(files.data), "-w", "promote"]),
        what="pg_ctl promote",
        cwd=files.root,
        env=_pg_env(),
    )
    # A later start must not make it a standby again.
    write_if_changed(files.data / "promoted", "", pg_owned=True)
    echo("postgres replica: promoted")


def stop_replica(cfg: StackConfig, echo: Echo, *, mode: str = "fast") -> None:
    """Stop the replica (or a promoted one); ``mode`` as pg_ctl's (``immediate``: a crash)."""
    _pg_ctl_stop(replica_files(cfg), mode, echo, "postgres replica")


def stop_primary(cfg: StackConfig, echo: Echo, *, mode: str = "immediate") -> None:
    """Stop the primary as a failover drill does: ``immediate`` ends it as a crash would, with
    no final checkpoint and nothing more sent to the standby."""
    _pg_ctl_stop(cluster_files(cfg), mode, echo, "postgres")


def _pg_ctl_stop(files: PgFiles, mode: str, echo: Echo, name: str) -> None:
    if _process(files) is None:
        echo(f"{name}: not running")
        return
    bin_dir = ensure_bin(echo)
    run(
        as_pg_owner([str(bin_dir / "pg_ctl"), "-D", str(files.data), "-w", "-m", mode, "stop"]),
        what=f"pg_ctl stop -m {mode}",
        cwd=files.root,
        env=_pg_env(),
    )
    echo(f"{name}: stopped ({mode})")


def pause_replay(cfg: StackConfig, *, paused: bool = True) -> None:
    """Stop (or resume) applying the WAL the replica receives: it falls behind at will, as a
    replica under load or on a slow disk does (lag drills)."""
    _sql(
        replica_files(cfg),
        "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()",
    )


def _primary_sql(cfg: StackConfig, sql: str) -> str:
    return _sql(cluster_files(cfg), sql)


def _sql(files: PgFiles, sql: str) -> str:
    process = _process(files)
    if process is None:
        raise StackError(f"postgres: the server in {files.data} is not running")
    result = run(
        as_pg_owner(
            [
                str(ensure_bin(print) / "psql"),
                *("-h", str(files.data), "-p", str(process.port), "-U", "postgres"),
                *("-d", "postgres", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql),
            ]
        ),
        what=f"psql on {files.data}",
        cwd=files.root,
        env=_pg_env(),
    )
    return result.stdout.strip()


def _wait_streaming(cfg: StackConfig, state: str) -> None:
    deadline = time.monotonic() + SYNC_TIMEOUT
    query = (
        "SELECT sync_state FROM pg_stat_replication "
        "WHERE application_name = 'auditlog_replica' AND state = 'streaming'"
    )
    while _primary_sql(cfg, query) != state:
        if time.monotonic() > deadline:
            raise StackError(
                f"postgres replica: not streaming ({state}) after {SYNC_TIMEOUT:.0f}s; see "
                f"{replica_files(cfg).log}"
            )
        time.sleep(0.2)
