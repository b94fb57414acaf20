"""``auditlog up``: the development launcher.

It starts the local stack, migrates, creates the topic and a dev token, runs ``serve`` and
``sealer`` as child processes, writes ``dev.env`` for SDK code, and on Ctrl-C stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from auditlog.cli.args import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, UsageError
from auditlog.cli.files import write_private
from auditlog.cli.keys import write_log_vkeys, write_signing_key


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _quiet_echo(line: str) -> None:
    with contextlib.suppress(OSError):
        print(line, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: the previous run's connections in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_children(children: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _prepare_dev(env: dict[str, str], token: str | None) -> tuple[str, int]:
    """Migrate, create topics, and make sure the dev token exists; returns the token and the
    number of partitions (logs) of the events topic."""
    import asyncpg

    from auditlog.kafka.clients import ensure_topics, make_admin
    from auditlog.kafka.security import KafkaSecurity
    from auditlog.pg import db, tokens
    from auditlog.runtime.settings import Env

    url = env["AUDITLOG_DATABASE_URL"]
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        scopes = {"log", "search", "admin"}
        try:
            secret, _ = await tokens.create_token(conn, "dev", scopes, token=token)
        except tokens.TokenRevoked:
            # The dev.env token was revoked on purpose: mint a new one rather than revive it.
            secret, _ = await tokens.create_token(conn, "dev", scopes)
    finally:
        await conn.close()
    security = KafkaSecurity.from_env(Env(env))
    bootstrap = env["AUDITLOG_KAFKA_BOOTSTRAP"]
    await ensure_topics(bootstrap, env["AUDITLOG_TOPIC"], security=security)
    admin = make_admin(bootstrap, security)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([env["AUDITLOG_TOPIC"]])
    finally:
        await admin.close()
    return secret, len(described["partitions"])


def cmd_up(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 - a linear start-up script
    from auditlog.devstack import stack
    from auditlog.runtime.settings import DEFAULT_ORIGIN, DEFAULT_TOPIC

    cfg = stack.StackConfig.from_env()
    if not _port_free(args.port):
        raise UsageError(f"port {args.port} is in use (another `auditlog up`?); use --port")
    was_running = stack.is_running(cfg)
    stack.start(cfg)
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # SIGHUP too: a closed terminal must stop what we started, not orphan it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        port = args.port
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
            "AUDITLOG_DATABASE_URL": cfg.database_url,
            "AUDITLOG_TOPIC": os.environ.get("AUDITLOG_TOPIC", DEFAULT_TOPIC),
            "AUDITLOG_ORIGIN": os.environ.get("AUDITLOG_ORIGIN", DEFAULT_ORIGIN),
            "AUDITLOG_SIGNING_KEY_FILE": str(cfg.home / "keys" / "log.skey"),
            "AUDITLOG_PORT": str(port),
            "AUDITLOG_HOME": str(cfg.home),
        }
        key_file = Path(env["AUDITLOG_SIGNING_KEY_FILE"])
        if not key_file.exists():
            write_signing_key(key_file, env["AUDITLOG_ORIGIN"])
        vkey = key_file.with_suffix(".vkey").read_text().strip()
        # The query service lists each log's vkey (GET /v1/logs) from the deployment's.
        env["AUDITLOG_VKEY"] = vkey
        token_file = cfg.home / "dev-token"
        old_token = token_file.read_text().strip() if token_file.exists() else None
        token, partitions = asyncio.run(_prepare_dev(env, old_token))
        write_private(token_file, token + "\n")
        # Each log's own vkey (the key under its origin), one a line: `--key FILE` verifies
        # every log, and third parties' C2SP clients take the line of the log they follow.
        vkeys_file = key_file.with_suffix(".vkeys")
        origins = [
            f"{env['AUDITLOG_ORIGIN']}/{env['AUDITLOG_TOPIC']}/{p}" for p in range(partitions)
        ]
        write_log_vkeys(vkeys_file, vkey, origins)
        exe = [sys.executable, "-m", "auditlog.cli"]
        logs = cfg.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("serve", "sealer"):
            out = (logs / f"{name}.log").open("ab")
            # Children ignore Ctrl-C from the terminal's process group; we stop them in order.
            children.append(
                subprocess.Popen(
                    [*exe, name], env=env, stdout=out, stderr=out, start_new_session=True
                )
            )
        deadline = time.monotonic() + 60
        while not _http_ok(f"{base}/readyz"):
            if (
                stopping
                or any(c.poll() is not None for c in children)
                or time.monotonic() > deadline
            ):
                print(
                    f"services did not start; see {logs}/serve.log and sealer.log", file=sys.stderr
                )
                return EXIT_USAGE
            time.sleep(0.3)
        dev_env = {
            "AUDITLOG_URL": base,
            "PANGEA_DOMAIN": base,
            "PANGEA_AUDIT_TOKEN": token,
            "AUDITLOG_VKEY": vkey,
            "AUDITLOG_VKEYS_FILE": str(vkeys_file),
            "AUDITLOG_DATABASE_URL": cfg.database_url,
            "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
        }
        # It holds the admin token and the database URL with its password.
        write_private(cfg.home / "dev.env", "".join(f"{k}={v}\n" for k, v in dev_env.items()))
        print(f"auditlog is up: {base}  (logs in {logs})")
        for key, value in dev_env.items():
            print(f"  {key}={value}")
        print(f"  (written to {cfg.home / 'dev.env'}; Ctrl-C stops everything)")
        print(f"web console: {base}/console/  (docs/console.md)")
        if args.then:
            rc = subprocess.call(args.then, shell=True, env={**env, **dev_env})  # noqa: S602
            if rc != 0:
                print(f"`{args.then}` exited with {rc}", file=sys.stderr)
                return EXIT_FAILED
            if args.exit_after:
                return EXIT_OK
        sys.stdout.flush()
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                print(f"a service exited (code {dead[0].returncode}); see {logs}", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.5)
        return EXIT_OK
    finally:
        # Stop first, report after: stdout may be a pipe that died with the terminal.
        _stop_children(children)
        if not was_running:
            stack.stop(cfg, echo=_quiet_echo)
        _quiet_echo("stopped everything `auditlog up` started")


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the local stack and all services in the foreground")
    up.add_argument("--port", type=int, default=8000, help="port of ingest+query (default 8000)")
    up.add_argument(
        "--then", metavar="CMD", help="run CMD (with dev.env set) once everything is up"
    )
    up.add_argument("--exit-after", action="store_true", help="stop everything after --then")
    up.set_defaults(func=cmd_up)
