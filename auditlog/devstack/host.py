"""This machine, as both servers of the stack see it: ports, processes, files, packages, users.

Ports are checked with a bind and their owners found through /proc; processes are recognised by
pid and command line and stopped with signals; commands run through `run`, which turns a missing
binary, a timeout or a failure into `StackError`; packages come from apt-get when we are root;
PostgreSQL's commands run as the ``postgres`` OS user when we are root (`as_pg_owner`); and
`locked` serialises every operation on one home.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from auditlog.devstack.config import HOST, STOP_TIMEOUT, Echo, StackConfig, StackError

# ---------------------------------------------------------------------------------------------
# Ports


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


def port_owner(port: int) -> str:
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
                            return f"pid {pid}: {' '.join(cmdline(pid).split())[:160]}"
    return "pid unknown"


def require_free(port: int, env_var: str, purpose: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} ({purpose}) is used by another process ({port_owner(port)}); "
            f"stop it or set {env_var} to a free port"
        )


# ---------------------------------------------------------------------------------------------
# Processes


def pid_alive(pid: int) -> bool:
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


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()


def wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def terminate(pid: int, name: str, echo: Echo) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, STOP_TIMEOUT):
        return
    echo(f"{name}: still running {STOP_TIMEOUT:.0f}s after SIGTERM; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_exit(pid, 10):
        raise StackError(f"{name} (pid {pid}) is still running after SIGKILL")


def run(
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


# ---------------------------------------------------------------------------------------------
# Users and packages


def is_root() -> bool:
    return os.geteuid() == 0


def as_pg_owner(cmd: Sequence[str]) -> list[str]:
    # PostgreSQL refuses to run as root; a non-root developer owns their own cluster.
    return ["runuser", "-u", "postgres", "--", *cmd] if is_root() else list(cmd)


@functools.cache
def apt_update() -> None:
    run(["apt-get", "update"], what="apt-get update", timeout=600)


def apt_install(packages: Sequence[str], why: str, echo: Echo) -> None:
    if not is_root() or shutil.which("apt-get") is None:
        raise StackError(f"{why}; install {' '.join(packages)} (or your system's equivalent)")
    echo(f"{why}; installing {' '.join(packages)} with apt-get (first run only)…")
    apt_update()
    run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        timeout=1200,
    )


# ---------------------------------------------------------------------------------------------
# Files


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def write_if_changed(path: Path, text: str, *, pg_owned: bool = False) -> None:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if pg_owned:
        tmp.chmod(0o600)
        if is_root():
            shutil.chown(tmp, "postgres", "postgres")
    tmp.replace(path)


@contextlib.contextmanager
def locked(cfg: StackConfig) -> Iterator[None]:
    # Parallel test workers may all ask for the stack at once; only one may start it.
    cfg.home.mkdir(parents=True, exist_ok=True)
    with (cfg.home / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
