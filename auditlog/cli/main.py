"""The ``auditlog`` command: one entry point for operators, developers and verifiers.

Exit codes follow one rule everywhere: 0 success (verified), 1 verification failed (the reason
and the record are printed), 2 usage, configuration or I/O error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or unreadable input: exit code 2."""


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _read_arg_file(value: str, what: str) -> str:
    """Read ``value`` as a path ('-' for stdin)."""
    if value == "-":
        return sys.stdin.read()
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {value!r}: {exc.strerror}") from exc


def _vkeys(values: Sequence[str]) -> list[Any]:
    from auditlog.core.errors import NoteError
    from auditlog.core.note import NoteVerifier

    out = []
    for value in values:
        text = value
        if "+" not in value or Path(value).exists():
            text = _read_arg_file(value, "key").strip()
        try:
            out.append(NoteVerifier.from_vkey(text))
        except NoteError as exc:
            raise UsageError(f"not a verifier key: {exc}") from exc
    return out


# -- services -----------------------------------------------------------------------------
def _uvicorn(app: Any, host: str, port: int) -> int:
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="auto",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return EXIT_OK


def cmd_ingest(_: argparse.Namespace) -> int:
    from ingest.app import create_app
    from ingest.settings import Settings

    settings = Settings.from_env()
    return _uvicorn(create_app(settings), settings.host, settings.port)


def cmd_query(_: argparse.Namespace) -> int:
    from query.app import create_app
    from query.settings import Settings

    settings = Settings.from_env()
    return _uvicorn(create_app(settings), settings.host, settings.port)


def cmd_serve(_: argparse.Namespace) -> int:
    """Ingest and query on one port: the Pangea SDK needs a single base URL."""
    from auditlog.runtime.observability import configure_logging
    from auditlog.web.app import service_app
    from ingest import app as ingest_app
    from ingest.settings import Settings as IngestSettings
    from query import app as query_app
    from query.settings import Settings as QuerySettings

    ingest_settings = IngestSettings.from_env()
    query_settings = QuerySettings.from_env()
    configure_logging(ingest_settings.log_level)

    @contextlib.asynccontextmanager
    async def resources() -> Any:
        async with (
            ingest_app.lifespan(ingest_settings) as ingest_state,
            query_app.lifespan(query_settings) as query_state,
        ):
            yield {**ingest_state, **query_state}

    # Both services answer /request/{id}, /healthz and /readyz when run alone; here ingest's
    # routes win (the async-request table is shared, so either answers a poll the same way).
    ingest_routes = ingest_app.routes()
    taken = {getattr(r, "path", None) for r in ingest_routes}
    query_routes = [r for r in query_app.routes() if getattr(r, "path", None) not in taken]
    app = service_app([*ingest_routes, *query_routes], resources, "serve")
    return _uvicorn(app, ingest_settings.host, ingest_settings.port)


def cmd_sealer(_: argparse.Namespace) -> int:
    from auditlog.core.errors import AuditLogError
    from auditlog.runtime.settings import SettingsError
    from sealer.main import main

    try:
        main()
    except (OSError, SettingsError, AuditLogError) as exc:
        # Start-up problems (a missing key file, a bad setting, an unreachable database) are
        # the operator's to fix: say which, without a traceback.
        print(f"auditlog sealer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# -- administration -----------------------------------------------------------------------
def _database_url(args: argparse.Namespace) -> str:
    from auditlog.runtime.settings import DEFAULT_DATABASE_URL, Env

    return str(
        getattr(args, "database_url", None) or Env().text("DATABASE_URL", DEFAULT_DATABASE_URL)
    )


async def _migrate(url: str) -> list[str]:
    import asyncpg

    from auditlog.pg import db

    conn = await asyncpg.connect(url)
    try:
        return await db.migrate(conn)
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(_database_url(args)))
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return EXIT_OK


def write_signing_key(path: Path, name: str) -> str:
    """Create an Ed25519 note key at ``path`` (mode 0600) and return its verifier key."""
    from auditlog.core.note import NoteSigner

    signer = NoteSigner.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(signer.skey() + "\n")
    path.with_suffix(".vkey").write_text(signer.vkey() + "\n", encoding="utf-8")
    return str(signer.vkey())


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists():
        raise UsageError(f"{path} exists; refusing to overwrite a signing key")
    vkey = write_signing_key(path, args.name)
    print(f"signing key: {path}\nverifier key ({path.with_suffix('.vkey')}):\n{vkey}")
    return EXIT_OK


async def _token(args: argparse.Namespace) -> int:
    import asyncpg

    from auditlog.pg import tokens

    conn = await asyncpg.connect(_database_url(args))
    try:
        if args.token_cmd == "create":  # noqa: S105 - a subcommand name, not a secret
            scopes = {s.strip() for s in args.scope.split(",") if s.strip()}
            try:
                secret, info = await tokens.create_token(conn, args.name, scopes, args.tenant)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            print(
                f"token id {info.token_id} scopes {','.join(sorted(info.scopes))}"
                f"{' tenant ' + info.tenant_id if info.tenant_id else ''}"
            )
            print(secret)
        elif args.token_cmd == "list":  # noqa: S105
            for r in await tokens.list_tokens(conn):
                state = "revoked" if r["revoked_at"] else "active"
                print(
                    f"{r['token_id']}\t{r['name']}\t{','.join(r['scopes'])}\t"
                    f"{r['tenant_id'] or '-'}\t{state}\t{r['created_at']:%Y-%m-%d %H:%M}"
                )
        else:
            if not await tokens.revoke_token(conn, args.token_id):
                print(f"no active token {args.token_id}", file=sys.stderr)
                return EXIT_FAILED
            print(f"revoked {args.token_id}")
    finally:
        await conn.close()
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    return asyncio.run(_token(args))


async def _switch_index(
    args: argparse.Namespace,
    label: str,
    state: Callable[[Any], Awaitable[str]],
    create: Callable[[Any], Awaitable[None]],
    drop: Callable[[Any], Awaitable[None]],
    error: type[Exception],
) -> int:
    """``status``, ``create`` or ``drop`` one optional index (auditlog.pg.partitioned_index)."""
    import asyncpg

    conn = await asyncpg.connect(_database_url(args))
    try:
        if args.action == "create":
            await create(conn)
        elif args.action == "drop":
            await drop(conn)
        print(f"{label}: {await state(conn)}")
    except error as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await conn.close()
    return EXIT_OK


def cmd_search_index(args: argparse.Namespace) -> int:
    from auditlog.pg import search_index as ix

    return asyncio.run(
        _switch_index(args, "search index", ix.state, ix.create, ix.drop, ix.SearchIndexError)
    )


def cmd_hash_index(args: argparse.Namespace) -> int:
    from auditlog.pg import hash_index as ix

    return asyncio.run(
        _switch_index(args, "hash index", ix.state, ix.create, ix.drop, ix.HashIndexError)
    )


def cmd_stack(args: argparse.Namespace) -> int:
    from auditlog.devstack import stack

    return stack.main([args.action])


# -- verification -------------------------------------------------------------------------
def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from auditlog.core.envelope import Envelope
    from auditlog.core.errors import AuditLogError, InvalidEvent, UnknownHashScheme
    from auditlog.core.hashing import get_hasher
    from auditlog.core.receipt import Receipt, verify_receipt

    policy = _policy(args.policy)
    verifiers = _vkeys(args.key or [])
    if policy is not None:
        verifiers = [*verifiers, *policy.logs]
    if not verifiers:
        raise UsageError("give the log's verifier key with --key (or a policy with a log line)")
    try:
        hasher = get_hasher(args.hash_scheme)
    except UnknownHashScheme as exc:
        raise UsageError(str(exc)) from exc
    try:
        envelope_obj = json.loads(_read_arg_file(args.entry, "envelope"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"envelope is not JSON: {exc}") from exc
    if isinstance(envelope_obj, dict) and "envelope" in envelope_obj:
        envelope_obj = envelope_obj["envelope"]  # accept a Pangea log/search result as well
    receipt_text = _read_arg_file(args.receipt, "receipt")
    try:
        envelope = Envelope.from_obj(envelope_obj)
        receipt = Receipt.from_text(receipt_text)
        verified = verify_receipt(receipt, envelope.canonical, verifiers, hasher)
        # Fail closed: with a policy, the log's signature alone is not enough.
        cosigned = policy.verify(receipt.checkpoint, verifiers) if policy is not None else None
    except InvalidEvent as exc:
        print(f"FAILED: the envelope is not a valid audit envelope: {exc}")
        return EXIT_FAILED
    except AuditLogError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    cp = verified.checkpoint
    print(
        f"OK: event {envelope.event_hash.hex()} is entry {verified.index} of {cp.origin} "
        f"at size {cp.size}, root {cp.root.hex()}, signed by {', '.join(v.name for v in verifiers)}"
        + (
            f"; witness quorum met ({', '.join(sorted(cosigned.cosigners)) or 'none needed'})"
            if cosigned is not None
            else ""
        )
    )
    return EXIT_OK


# -- auditing -----------------------------------------------------------------------------
class _ProgressBar:
    """One self-overwriting stderr line per log; silent unless asked for or on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, log: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.started, 1e-6)
        pct = 100 * done // total if total else 100
        bar = "#" * (pct // 5) + "." * (20 - pct // 5)
        sys.stderr.write(f"\r{log} [{bar}] {done}/{total} entries {pct}% {rate:,.0f}/s ")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _trusted_checkpoints(state: dict[str, str]) -> dict[str, list[Any]]:
    from auditlog.core.audit import StoredCheckpoint

    return {origin: [StoredCheckpoint(note, source="state")] for origin, note in state.items()}


async def _audit_database(
    args: argparse.Namespace, verifiers: list[Any], state: dict[str, str], progress: _ProgressBar
) -> list[Any]:
    import asyncpg

    from auditlog.verify.audit_db import audit_database

    try:
        conn = await asyncpg.connect(_database_url(args))
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"cannot connect to the database: {exc}") from exc
    try:
        return await audit_database(
            conn,
            verifiers,
            log_ids=args.log or None,
            extra_checkpoints=_trusted_checkpoints(state),
            progress=progress,
            max_findings=args.max_findings,
        )
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise UsageError(f"database error: {exc}") from exc
    finally:
        await conn.close()


def _audit_api(
    args: argparse.Namespace, verifiers: list[Any], state: dict[str, str], progress: _ProgressBar
) -> list[Any]:
    from auditlog.verify.audit_http import audit_api
    from auditlog.verify.read_api import ReadApi, ReadApiError

    token = args.token or os.environ.get("AUDITLOG_TOKEN") or None
    try:
        with ReadApi(args.url, token=token) as api:
            results: list[Any] = audit_api(
                api,
                verifiers,
                log_ids=args.log or None,
                extra_checkpoints=_trusted_checkpoints(state),
                progress=progress,
                max_findings=args.max_findings,
            )
            return results
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from exc
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def _print_audit(results: list[Any]) -> None:
    for r in results:
        for f in r.findings:
            print(f"DAMAGE {f.line()}")
        if r.suppressed:
            print(f"DAMAGE {r.log}: {r.suppressed} more findings not listed")
        clean = not r.findings and not r.suppressed
        print(
            f"{'OK' if clean else 'FAILED'} {r.log} ({r.origin}): {r.entries} entries, "
            f"size {r.size}, {r.checkpoints} signed checkpoints verified"
            + ("" if clean else f", {len(r.findings) + r.suppressed} findings")
        )
    if not results:
        print("no logs to audit")


def cmd_audit(args: argparse.Namespace) -> int:
    from auditlog.verify.trust_state import StateError, load_state, save_state

    verifiers = _vkeys(args.key)
    state_path = Path(args.state) if args.state else None
    try:
        state = load_state(state_path) if state_path else {}
    except StateError as exc:
        raise UsageError(str(exc)) from exc
    progress = _ProgressBar(args.progress if args.progress is not None else sys.stderr.isatty())
    try:
        if args.url:
            results = _audit_api(args, verifiers, state, progress)
        else:
            results = asyncio.run(_audit_database(args, verifiers, state, progress))
    finally:
        progress.done()
    findings = [f for r in results for f in r.findings]
    suppressed = sum(r.suppressed for r in results)
    if args.json:
        report = {
            "ok": not findings and not suppressed,
            "source": args.url or "database",
            "logs": [r.to_dict() for r in results],
            "findings": [f.to_dict() for f in findings],
            "suppressed": suppressed,
        }
        print(json.dumps(report, indent=1))
    else:
        _print_audit(results)
    if state_path is not None:
        for r in results:
            if not r.findings and not r.suppressed and r.head_note:
                state[r.origin] = r.head_note
        try:
            save_state(state_path, state)
        except OSError as exc:
            raise UsageError(f"cannot write state file {state_path}: {exc.strerror}") from exc
    return EXIT_FAILED if findings or suppressed else EXIT_OK


def _policy(path: str | None) -> Any:
    from auditlog.core.policy import PolicyError, parse_policy

    if path is None:
        return None
    try:
        return parse_policy(_read_arg_file(path, "policy"))
    except PolicyError as exc:
        raise UsageError(f"policy {path}: {exc}") from exc


def _hasher(name: str) -> Any:
    from auditlog.core.errors import UnknownHashScheme
    from auditlog.core.hashing import get_hasher

    try:
        return get_hasher(name)
    except UnknownHashScheme as exc:
        raise UsageError(str(exc)) from exc


def _consistency_proof(args: argparse.Namespace, old_note: str, new_note: str) -> list[bytes]:
    """The proof from --proof (base64 lines, or an add-checkpoint body) or fetched from --url."""
    import base64
    import binascii

    from auditlog.core.checkpoint import Checkpoint
    from auditlog.core.cosignature import AddCheckpoint
    from auditlog.core.errors import AuditLogError
    from auditlog.core.note import parse_note

    if args.proof:
        text = _read_arg_file(args.proof, "proof")
        if text.startswith("old "):
            try:
                return list(AddCheckpoint.from_text(text).proof)
            except AuditLogError as exc:
                raise UsageError(f"proof file: {exc}") from exc
        try:
            return [base64.b64decode(line, validate=True) for line in text.split()]
        except (ValueError, binascii.Error) as exc:
            raise UsageError(f"proof file: not base64 lines: {exc}") from exc
    if not args.url:
        raise UsageError("give the proof with --proof FILE or fetch it with --url")
    from auditlog.verify.monitor import proof_from_tiles
    from auditlog.verify.read_api import ReadApi, ReadApiError

    try:
        old = Checkpoint.from_text(parse_note(old_note).text)
        new = Checkpoint.from_text(parse_note(new_note).text)
    except AuditLogError as exc:
        raise UsageError(f"not a checkpoint: {exc}") from exc
    if new.size <= old.size or old.size == 0:
        return []
    try:
        with ReadApi(args.url) as api:
            log = args.log or next(
                (str(e["log"]) for e in api.logs() if e.get("origin") == old.origin), None
            )
            if log is None:
                raise UsageError(f"{args.url} serves no log with origin {old.origin!r}")
            answer = api.consistency(log, old.size, new.size)
            if answer is not None:
                return answer.proof
            return proof_from_tiles(api, log, _hasher(args.hash_scheme), old.size, new.size)
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def cmd_verify_consistency(args: argparse.Namespace) -> int:
    from auditlog.core.consistency import verify_checkpoints
    from auditlog.core.errors import AuditLogError

    policy = _policy(args.policy)
    verifiers = _vkeys(args.key or [])
    if not verifiers and not (policy and policy.logs):
        raise UsageError("give the log's verifier key with --key (or a policy with a log line)")
    old_note = _read_arg_file(args.old, "old checkpoint")
    new_note = _read_arg_file(args.new, "new checkpoint")
    proof = _consistency_proof(args, old_note, new_note)
    try:
        result = verify_checkpoints(
            old_note, new_note, proof, verifiers, _hasher(args.hash_scheme), policy
        )
    except AuditLogError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    print(
        f"OK: {result.new.origin} at size {result.new.size} (root {result.new.root.hex()}) "
        f"extends size {result.old.size} (root {result.old.root.hex()})"
    )
    return EXIT_OK


def cmd_witness(args: argparse.Namespace) -> int:
    from auditlog.core.cosignature import Cosigner
    from auditlog.core.errors import NoteError
    from auditlog.core.note import NoteVerifier
    from auditlog.verify.witness_server import WitnessState, create_app

    try:
        cosigner = Cosigner.from_skey(_read_arg_file(args.key, "witness key"))
    except NoteError as exc:
        raise UsageError(f"witness key: {exc}") from exc
    if args.print_vkey:
        print(cosigner.vkey())
        return EXIT_OK
    logs: dict[str, list[NoteVerifier]] = {}
    for spec in args.log or []:
        origin, sep, vkey = spec.partition("=")
        if not sep or not origin:
            raise UsageError(f"--log wants ORIGIN=VKEY, got {spec!r}")
        logs.setdefault(origin, []).extend(_vkeys([vkey]))
    if not logs:
        raise UsageError("give at least one --log ORIGIN=VKEY")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--listen wants HOST:PORT, got {args.listen!r}")
    state = WitnessState(Path(args.state))
    print(f"witness {cosigner.name} listening on {args.listen}; cosignature key:", flush=True)
    print(cosigner.vkey(), flush=True)
    app = create_app(state, logs, _hasher(args.hash_scheme), cosigner)
    return _uvicorn(app, host, int(port))


def cmd_monitor(args: argparse.Namespace) -> int:
    from auditlog.verify.monitor import run_monitor
    from auditlog.verify.read_api import ReadApi
    from auditlog.verify.trust_state import StateError

    verifiers = _vkeys(args.key)
    try:
        with ReadApi(args.url) as api:
            return run_monitor(
                api,
                verifiers,
                Path(args.state),
                log_ids=args.log or None,
                policy=_policy(args.policy),
                webhook=args.webhook,
                interval=args.interval,
                once=args.once,
            )
    except StateError as exc:
        raise UsageError(str(exc)) from exc


# -- development: `auditlog up` -----------------------------------------------------------
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


async def _prepare_dev(env: dict[str, str], token: str | None) -> str:
    """Migrate, create topics, and make sure the dev token exists; returns the token."""
    import asyncpg

    from auditlog.kafka.clients import ensure_topics
    from auditlog.pg import db, tokens

    url = env["AUDITLOG_DATABASE_URL"]
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        secret, _ = await tokens.create_token(conn, "dev", {"log", "search", "admin"}, token=token)
    finally:
        await conn.close()
    await ensure_topics(env["AUDITLOG_KAFKA_BOOTSTRAP"], env["AUDITLOG_TOPIC"])
    return secret


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
        token_file = cfg.home / "dev-token"
        old_token = token_file.read_text().strip() if token_file.exists() else None
        token = asyncio.run(_prepare_dev(env, old_token))
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
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
            "AUDITLOG_DATABASE_URL": cfg.database_url,
            "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
        }
        (cfg.home / "dev.env").write_text("".join(f"{k}={v}\n" for k, v in dev_env.items()))
        print(f"auditlog is up: {base}  (logs in {logs})")
        for key, value in dev_env.items():
            print(f"  {key}={value}")
        print(f"  (written to {cfg.home / 'dev.env'}; Ctrl-C stops everything)")
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


def _add_consistency_parser(vers: Any) -> None:
    con = vers.add_parser("consistency", help="verify that checkpoint NEW extends checkpoint OLD")
    con.add_argument("old", help="the older signed checkpoint (file, '-' for stdin)")
    con.add_argument("new", help="the newer signed checkpoint (file)")
    con.add_argument("--key", action="append", help="verifier key or key file (repeatable)")
    con.add_argument("--proof", help="proof file: base64 hashes, or a tlog-witness request body")
    con.add_argument("--url", help="fetch the proof from this read API instead")
    con.add_argument(
        "--log", help="log id at --url (default: the log with the checkpoint's origin)"
    )
    con.add_argument("--hash-scheme", default="rfc6962-sha256")
    con.add_argument("--policy", help="C2SP tlog-policy file both checkpoints must satisfy")
    con.set_defaults(func=cmd_verify_consistency)


def _add_audit_parsers(sub: Any) -> None:
    aud = sub.add_parser(
        "audit", help="re-derive and cross-check whole logs, trusting only the public key"
    )
    aud.add_argument("--key", required=True, action="append", help="verifier key or key file")
    aud.add_argument("--log", action="append", help="audit only this log id (repeatable)")
    src = aud.add_mutually_exclusive_group()
    src.add_argument("--database-url", help="audit from PostgreSQL (default AUDITLOG_DATABASE_URL)")
    src.add_argument("--url", help="audit from the public read API instead, e.g. http://host:8000")
    aud.add_argument(
        "--token",
        help="API token with search scope for entry bundles (--url mode;"
        " default AUDITLOG_TOKEN); without it only tiles and checkpoints are checked",
    )
    aud.add_argument("--state", help="remember verified checkpoints here; catches rollbacks")
    aud.add_argument("--json", action="store_true", help="print a JSON report")
    aud.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    aud.add_argument(
        "--max-findings",
        type=int,
        default=10_000,
        help="list at most this many findings of each kind per log",
    )
    aud.set_defaults(func=cmd_audit)

    mon = sub.add_parser("monitor", help="follow logs' checkpoints and alert on any inconsistency")
    mon.add_argument("--url", required=True, help="the read API, e.g. http://host:8000")
    mon.add_argument("--key", required=True, action="append", help="verifier key or key file")
    mon.add_argument(
        "--state",
        default=".auditlog/monitor-state.json",
        help="where the last trusted checkpoint of each log is kept",
    )
    mon.add_argument("--log", action="append", help="follow only this log id (repeatable)")
    mon.add_argument("--policy", help="C2SP tlog-policy file new checkpoints must satisfy")
    mon.add_argument("--webhook", help="POST each alert as JSON to this URL")
    mon.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    mon.add_argument("--once", action="store_true", help="one round, then exit 0/1/2")
    mon.set_defaults(func=cmd_monitor)

    wit = sub.add_parser("witness", help="run a C2SP tlog-witness (POST /add-checkpoint)")
    wit.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT")
    wit.add_argument("--key", required=True, help="witness signing key file (auditlog keygen)")
    wit.add_argument("--state", default=".auditlog/witness.sqlite3", help="witness state file")
    wit.add_argument("--log", action="append", help="ORIGIN=VKEY of a log to witness (repeatable)")
    wit.add_argument("--hash-scheme", default="rfc6962-sha256")
    wit.add_argument("--print-vkey", action="store_true", help="print the cosignature vkey, exit")
    wit.set_defaults(func=cmd_witness)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from auditlog.loadtest import run as loadtest

    token = args.token or os.environ.get("PANGEA_AUDIT_TOKEN")
    if not token:
        raise UsageError("--token (or PANGEA_AUDIT_TOKEN) is required")
    if args.seconds <= 0 or args.seconds > 3600:
        raise UsageError("--seconds must be in (0, 3600]")
    result = loadtest.run(
        args.url.rstrip("/"),
        token,
        seconds=args.seconds,
        rate=args.rate,
        concurrency=args.concurrency,
        bulk=args.bulk,
    )
    shape = f"{args.rate:g} requests/s" if args.rate else f"{args.concurrency} clients"
    kind = f"/v2/log x{args.bulk}" if args.bulk > 1 else "/v1/log"
    print(result.summary(f"{kind}, {shape}, {args.seconds:g} s"))
    return EXIT_OK if result.errors == 0 else EXIT_FAILED


def _add_database_parsers(sub: Any) -> None:
    """The commands that change the database: schema, tokens, the optional indexes."""
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url")
    mig.set_defaults(func=cmd_migrate)

    tok = sub.add_parser("token", help="manage API tokens")
    tok.add_argument("--database-url")
    toks = tok.add_subparsers(dest="token_cmd", required=True)
    create = toks.add_parser("create")
    create.add_argument("--scope", required=True, help="comma list of log,search,admin")
    create.add_argument("--tenant", help="bind the token to one tenant_id")
    create.add_argument("--name", default="token")
    toks.add_parser("list")
    revoke = toks.add_parser("revoke")
    revoke.add_argument("token_id")
    tok.set_defaults(func=cmd_token)

    six = sub.add_parser(
        "search-index",
        help="the substring-search index: status, create (while the sealers run), drop",
        description="trigram: fast search, costlier sealing; none: cheaper sealing, search"
        " reads its time range (docs/query.md)",
    )
    six.add_argument("action", choices=("status", "create", "drop"))
    six.add_argument("--database-url")
    six.set_defaults(func=cmd_search_index)

    hix = sub.add_parser(
        "hash-index",
        help="the event-hash index: status, create (while the sealers run), drop",
        description="hash: receipts by hash alone, costlier sealing; none: cheaper sealing,"
        " a receipt by hash needs ?received_at= (docs/query.md)",
    )
    hix.add_argument("action", choices=("status", "create", "drop"))
    hix.add_argument("--database-url")
    hix.set_defaults(func=cmd_hash_index)


# -- argument parsing ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditlog", description="One entry point for operators, developers and verifiers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the local stack and all services in the foreground")
    up.add_argument("--port", type=int, default=8000, help="port of ingest+query (default 8000)")
    up.add_argument(
        "--then", metavar="CMD", help="run CMD (with dev.env set) once everything is up"
    )
    up.add_argument("--exit-after", action="store_true", help="stop everything after --then")
    up.set_defaults(func=cmd_up)

    st = sub.add_parser("stack", help="the local Kafka and PostgreSQL only")
    st.add_argument("action", choices=["start", "stop", "status"])
    st.set_defaults(func=cmd_stack)

    for name, func, text in (
        ("ingest", cmd_ingest, "run the ingest service"),
        ("sealer", cmd_sealer, "run a sealer worker"),
        ("query", cmd_query, "run the query service"),
        ("serve", cmd_serve, "run ingest and query on one port (development)"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)

    kg = sub.add_parser("keygen", help="create an Ed25519 checkpoint signing key")
    kg.add_argument("--name", required=True, help="key name, usually the log origin prefix")
    kg.add_argument("--out", required=True, help="file for the signing key (.vkey written beside)")
    kg.set_defaults(func=cmd_keygen)

    _add_database_parsers(sub)

    lt = sub.add_parser("loadtest", help="load an ingest endpoint; prints throughput and latency")
    lt.add_argument("--url", default=os.environ.get("AUDITLOG_URL", "http://127.0.0.1:8000"))
    lt.add_argument("--token", help="a token with the log scope (default: $PANGEA_AUDIT_TOKEN)")
    lt.add_argument("--seconds", type=float, default=10)
    lt.add_argument("--rate", type=float, help="open loop at this many requests/s")
    lt.add_argument("--concurrency", type=int, default=64, help="closed-loop clients")
    lt.add_argument("--bulk", type=int, default=1, help="events per request (/v2/log when > 1)")
    lt.set_defaults(func=cmd_loadtest)

    ver = sub.add_parser("verify", help="verify receipts offline")
    vers = ver.add_subparsers(dest="verify_cmd", required=True)
    rec = vers.add_parser("receipt", help="verify a c2sp.org/tlog-proof@v1 receipt for an envelope")
    rec.add_argument("receipt", help="receipt file ('-' for stdin)")
    rec.add_argument("--entry", required=True, help="the event's envelope as JSON (file)")
    rec.add_argument("--key", action="append", help="verifier key or key file (repeatable)")
    rec.add_argument("--hash-scheme", default="rfc6962-sha256")
    rec.add_argument(
        "--policy", help="C2SP tlog-policy file: also require its witness quorum (fail closed)"
    )
    rec.set_defaults(func=cmd_verify_receipt)

    _add_consistency_parser(vers)

    _add_audit_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"auditlog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
