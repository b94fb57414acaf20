"""A really sealed database spread over months, for retention, erasure and archive tests.

Two logs (``rfc6962-sha256`` and ``pangea-sha256``) are sealed with the sealer's own
transaction and partitions, :data:`PER_MONTH` events in each of :data:`MONTHS` (January to
April 2025), in batches of :data:`BATCH` (several checkpoints, full and partial tiles). One
event of February's first batch is received in January (a batch straddling a month's end): it
lives in January's partition although later entries live in February's. The database is kept as
a template; each case clones it and runs the ``auditlog`` command as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.pg import db
from sealer.records import Sealable
from sealer.store import Partitions, connect_pool, load_head, seal
from sealer.timestamps import micros
from tests.conftest import Services
from tests.integration.tamper_harness import clone_database

TOPIC = "retention.test"
LOG = f"{TOPIC}-0"  # rfc6962-sha256
PANGEA = f"{TOPIC}-1"  # pangea-sha256
ORIGIN = "retention.auditlog.test"
MONTHS = (1, 2, 3, 4)
PER_MONTH = 300
BATCH = 100
SIZE = PER_MONTH * len(MONTHS)
STRAGGLER = PER_MONTH + 5  # sealed among February's entries, received in January


@dataclass(frozen=True)
class Sealed:
    admin_url: str
    template: str
    key_file: Path
    vkey_file: Path
    hashes: dict[tuple[str, int], str]
    envelopes: dict[tuple[str, int], bytes]
    work: Path


def received(index: int) -> datetime:
    month = MONTHS[index // PER_MONTH]
    at = datetime(2025, month, 10, tzinfo=UTC) + timedelta(minutes=index % PER_MONTH)
    if index == STRAGGLER:
        at = datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)
    return at


async def _seal(url: str, signer: NoteSigner) -> tuple[dict[Any, str], dict[Any, bytes]]:
    pool = await connect_pool(url, max_size=2)
    hashes: dict[tuple[str, int], str] = {}
    envelopes: dict[tuple[str, int], bytes] = {}
    partitions = Partitions()
    try:
        for partition, scheme in ((0, "rfc6962-sha256"), (1, "pangea-sha256")):
            hasher = get_hasher(scheme)
            head = await load_head(pool, TOPIC, partition, ORIGIN, hasher)
            for start in range(0, SIZE, BATCH):
                items = []
                for index in range(start, start + BATCH):
                    at = received(index)
                    event = {
                        "message": f"retained word{index} of {partition}",
                        "actor": f"user{index % 5}",
                        "action": "login",
                        "tenant_id": f"t{index % 2}",
                    }
                    env = Envelope(event=event, received_at=format_received_at(at))
                    hashes[(head.log_id, index)] = env.event_hash.hex()
                    envelopes[(head.log_id, index)] = env.canonical
                    items.append(Sealable(index, env, micros(at), None))
                await partitions.ensure(pool, head.log_id, [i.received_us for i in items])
                async with pool.acquire() as conn:
                    result = await seal(conn, head, hasher, signer, items, start + BATCH)
                head = result.head
    finally:
        await pool.close()
    return hashes, envelopes


def sealed_template(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sealed]:
    admin_url = services.database_url
    template = f"retention_tpl_{secrets.token_hex(4)}"
    work = tmp_path_factory.mktemp("retention")
    signer = NoteSigner.generate(ORIGIN)
    key_file = work / "log.skey"
    key_file.write_text(signer.skey() + "\n")
    key_file.chmod(0o600)
    vkey_file = work / "log.vkey"
    vkey_file.write_text(signer.vkey() + "\n")

    async def build() -> tuple[dict[Any, str], dict[Any, bytes]]:
        return await _seal(await db.create_database(admin_url, template), signer)

    hashes, envelopes = asyncio.run(build())
    try:
        yield Sealed(admin_url, template, key_file, vkey_file, hashes, envelopes, work)
    finally:
        asyncio.run(db.drop_database(admin_url, template))


def cloned(sealed: Sealed) -> Iterator[str]:
    yield from clone_database(sealed.admin_url, sealed.template, "retention_case")


def cli(sealed: Sealed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(sealed.work / "state"),
        "AUDITLOG_SIGNING_KEY_FILE": str(sealed.key_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=env,
    )


def audit(sealed: Sealed, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = cli(
        sealed, "audit", "--database-url", url, "--key", str(sealed.vkey_file),
        "--json", "--no-progress", *args,
    )  # fmt: skip
    report = json.loads(proc.stdout) if proc.stdout.startswith("{") else {}
    return proc.returncode, report, proc.stdout + proc.stderr


def kinds(report: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def run_sql(url: str, statement: str, *args: object) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(go())
