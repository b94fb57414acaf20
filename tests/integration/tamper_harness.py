"""The tamper suite's harness: a really sealed database to clone, damage and audit.

A pristine database is sealed once per test module with the sealer's own transaction
(``sealer.store.seal``, several batches, so several checkpoints and full, partial and level-1
tiles) and kept as a template; each case clones it (``CREATE DATABASE ... TEMPLATE``), applies
its damage in SQL and runs ``auditlog audit`` as a subprocess. The cases are in test_tamper.py
(audits of the database) and test_tamper_read_api.py (through the public read API).

Audits remember what they verified by default (a per-user state file); every subprocess here
runs with ``XDG_STATE_HOME`` in the module's temporary directory (:func:`cli_env`), so the
default state is exercised without writing into the real home directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.core.tiles import decode_bundle, encode_bundle
from auditlog.pg import db
from sealer.records import Sealable
from sealer.store import connect_pool, load_head, seal
from sealer.timestamps import micros
from tests.conftest import Services

TOPIC = "tamper.test"
LOG = f"{TOPIC}-0"  # the log every case damages
OTHER = f"{TOPIC}-1"  # never touched: must never be named
BATCHES = (100, 156, 60, 300, 1)  # sizes 100, 256, 316, 616, 617
SIZE = sum(BATCHES)
ORIGIN = "tamper.auditlog.test"
ZERO = "00" * 32  # the hash a forged tile holds


def _event(i: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "message": f"event {i}",
        "actor": "alice" if i % 2 else "bob",
        "action": "update",
        "target": f"doc-{i % 7}",
        "status": "ok",
        "tenant_id": f"t{i % 3}",
    }
    if i % 5 == 0:
        event["timestamp"] = f"2025-01-{1 + i % 28:02d}T10:00:00"
    if i % 11 == 0:
        event["new"] = "x" * 10 + str(i)
        event["old"] = "y"
    if i == 42:
        event["new"] = "big " * 20_000  # a digest entry: canonical envelope > 65,535 bytes
    return event


@dataclass(frozen=True)
class Pristine:
    admin_url: str
    template: str
    signer: NoteSigner
    vkey_file: Path
    hashes: dict[tuple[str, int], str]  # (log, index) -> event hash hex
    notes: dict[int, str]  # size -> signed checkpoint of LOG
    state_home: Path  # XDG_STATE_HOME of every audit and monitor run here


def cli_env(pristine: Pristine) -> dict[str, str]:
    """The environment of a CLI subprocess: default state files under the test's own dir."""
    return {**os.environ, "XDG_STATE_HOME": str(pristine.state_home)}


async def _seal_logs(
    url: str, signer: NoteSigner
) -> tuple[dict[tuple[str, int], str], dict[int, str]]:
    pool = await connect_pool(url, max_size=2)
    hashes: dict[tuple[str, int], str] = {}
    notes: dict[int, str] = {}
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    try:
        for partition, scheme in ((0, "rfc6962-sha256"), (1, "pangea-sha256")):
            hasher = get_hasher(scheme)
            head = await load_head(pool, TOPIC, partition, ORIGIN, hasher)
            index = 0
            for batch in BATCHES:
                items = []
                for _ in range(batch):
                    received = t0 + timedelta(seconds=index)
                    env = Envelope(event=_event(index), received_at=format_received_at(received))
                    hashes[(head.log_id, index)] = env.event_hash.hex()
                    items.append(Sealable(index, env, micros(received), None))
                    index += 1
                async with pool.acquire() as conn:
                    result = await seal(conn, head, hasher, signer, items, index)
                head = result.head
                if partition == 0 and result.checkpoint is not None:
                    notes[head.size] = result.checkpoint
    finally:
        await pool.close()
    return hashes, notes


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def sealed_template(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pristine]:
    """The body of a module's ``pristine`` fixture: seals the template, drops it after."""
    admin_url = services.database_url
    template = f"tamper_tpl_{secrets.token_hex(4)}"
    work = tmp_path_factory.mktemp("tamper")
    signer = NoteSigner.generate(ORIGIN)
    vkey_file = work / "log.vkey"
    vkey_file.write_text(signer.vkey() + "\n")

    async def build() -> tuple[dict[tuple[str, int], str], dict[int, str]]:
        return await _seal_logs(await db.create_database(admin_url, template), signer)

    hashes, notes = asyncio.run(build())
    try:
        yield Pristine(admin_url, template, signer, vkey_file, hashes, notes, work / "state")
    finally:
        asyncio.run(db.drop_database(admin_url, template))


def clone_database(admin_url: str, template: str, prefix: str) -> Iterator[str]:
    """A fresh copy of database ``template`` named ``<prefix>_<random>``, dropped afterwards;
    yields its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield db.database_url(admin_url, name)
    finally:
        asyncio.run(db.drop_database(admin_url, name))


def cloned(pristine: Pristine) -> Iterator[str]:
    """The body of a ``clone`` fixture: a fresh copy of the pristine database; its URL."""
    yield from clone_database(pristine.admin_url, pristine.template, "tamper_case")


def damage(url: str, fn: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await fn(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def sql(url: str, statement: str, *args: object) -> None:
    async def apply(conn: asyncpg.Connection) -> None:
        await conn.execute(statement, *args)

    damage(url, apply)


def audit(pristine: Pristine, *args: str, source: list[str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [
            sys.executable, "-m", "auditlog.cli", "audit", *source,
            "--key", str(pristine.vkey_file), "--json", "--no-progress", *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=cli_env(pristine),
    )  # fmt: skip
    report = json.loads(proc.stdout) if proc.stdout.startswith("{") else {}
    return proc.returncode, report, proc.stdout + proc.stderr


def audit_db(pristine: Pristine, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    return audit(pristine, *args, source=["--database-url", url])


def findings(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if kind is None or f["kind"] == kind]


def assert_named(
    report: dict[str, Any], kind: str, index: int | None, digest: str | None
) -> dict[str, Any]:
    for f in report["findings"]:
        if f["kind"] == kind and f["index"] == index and f["log"] == LOG:
            if digest is not None:
                assert f["hash"] == digest, f
            return dict(f)
    pytest.fail(f"no {kind} finding at index {index}: {json.dumps(report['findings'], indent=1)}")


def assert_other_log_clean(report: dict[str, Any]) -> None:
    assert [f for f in report["findings"] if f["log"] != LOG] == []


# -- damage several cases share ----------------------------------------------------------------
async def roll_back_with_history(pristine: Pristine, conn: asyncpg.Connection) -> None:
    """Everything a DBA would do to make size 316 of LOG look like the whole truth."""
    root = Checkpoint.from_text(pristine.notes[316].split("\n\n")[0] + "\n").root
    await conn.execute("DELETE FROM events WHERE log_id = $1 AND idx >= 316", LOG)
    await conn.execute("DELETE FROM checkpoints WHERE log_id = $1 AND size > 316", LOG)
    await conn.execute("DELETE FROM tiles WHERE log_id = $1 AND level = 0 AND idx = 2", LOG)
    for level, idx, width in ((0, 1, 60), (1, 0, 1)):
        data = await conn.fetchval(
            "SELECT data FROM tiles WHERE log_id = $1 AND level = $2 AND idx = $3",
            LOG, level, idx,
        )  # fmt: skip
        await conn.execute(
            "UPDATE tiles SET data = $4 WHERE log_id = $1 AND level = $2 AND idx = $3",
            LOG, level, idx, bytes(data)[: width * 32],
        )  # fmt: skip
    await conn.execute("DELETE FROM bundles WHERE log_id = $1 AND idx = 2", LOG)
    data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 1", LOG)
    await conn.execute(
        "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 1",
        LOG, encode_bundle(decode_bundle(bytes(data))[:60]),
    )  # fmt: skip
    await conn.execute(
        "UPDATE logs SET size = 316, root = $2, checkpoint = $3 WHERE log_id = $1",
        LOG, root, pristine.notes[316],
    )  # fmt: skip


async def delete_log(conn: asyncpg.Connection, log: str = LOG) -> None:
    """Every row of one log, in every table: the log is simply not there any more."""
    for table in ("events", "tiles", "bundles", "checkpoints", "logs"):
        await conn.execute(f"DELETE FROM {table} WHERE log_id = $1", log)
