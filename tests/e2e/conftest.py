"""The whole pipeline as subprocesses: ``auditlog serve`` and ``auditlog sealer``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Services, stop_processes

CUSTOM_CONFIG = "pci_e2ecustomschema"
CUSTOM_SCHEMAS = {
    CUSTOM_CONFIG: {
        "name": "custom e2e",
        "fields": [
            {"id": "message", "type": "string", "required": True, "size": 200},
            {"id": "field_int", "type": "integer"},
            {"id": "field_bool", "type": "boolean"},
            {"id": "field_str_short", "type": "string", "size": 32},
            {"id": "field_str_long", "type": "text"},
            {"id": "field_time", "type": "datetime"},
        ],
    }
}


@dataclass(frozen=True)
class Pipeline:
    base_url: str
    token: str
    vkey: str
    vkey_file: Path
    env: dict[str, str]
    services: Services
    logs: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _token(url: str, scopes: set[str], tenant: str | None = None) -> str:
    import asyncpg

    from auditlog.pg.tokens import create_token

    conn = await asyncpg.connect(url)
    try:
        secret, _ = await create_token(conn, "e2e", scopes, tenant)
    finally:
        await conn.close()
    return secret


def make_token(services: Services, scopes: set[str], tenant: str | None = None) -> str:
    return asyncio.run(_token(services.database_url, scopes, tenant))


def pipeline_env(
    services: Services, topic: str, origin: str, key: Path, **extra: str
) -> dict[str, str]:
    """The environment of a test's own pipeline (:func:`start_pipeline`): the shared Kafka and
    PostgreSQL, its topic, origin and signing key, a free port, a sealer group of its own, and
    batching that seals as soon as a test waits for it (no spacing between seals); ``extra``
    adds or overrides variables."""
    return {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": services.database_url,
        "AUDITLOG_TOPIC": topic,
        "AUDITLOG_ORIGIN": origin,
        "AUDITLOG_SIGNING_KEY_FILE": str(key),
        "AUDITLOG_PORT": str(_free_port()),
        "AUDITLOG_SEALER_GROUP_ID": f"sealer-{topic}",
        "AUDITLOG_BATCH_MAX_AGE": "0.05",
        "AUDITLOG_BATCH_MIN_INTERVAL": "0",
        **extra,
    }


def start_pipeline(
    work: Path, env: dict[str, str], own: dict[str, dict[str, str]] | None = None
) -> tuple[list[subprocess.Popen[bytes]], str]:
    """`auditlog serve` and `auditlog sealer` with ``env`` (or ``own[name]``, a process's own:
    each service as a principal of its own), once /readyz answers; logs in work."""
    procs: list[subprocess.Popen[bytes]] = []
    for name in ("serve", "sealer"):
        with (work / f"{name}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "auditlog.cli", name],
                    env=(own or {}).get(name, env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    base = f"http://127.0.0.1:{env['AUDITLOG_PORT']}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return procs, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = "\n".join((work / f"{n}.log").read_text()[-3000:] for n in ("serve", "sealer"))
            stop_processes(procs)
            pytest.fail(f"pipeline did not start:\n{logs}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def pipeline(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("pipeline")
    key = work / "log.skey"
    from auditlog.cli.keys import write_signing_key

    vkey = write_signing_key(key, "e2e.auditlog.test")
    schemas = work / "schemas.json"
    schemas.write_text(json.dumps(CUSTOM_SCHEMAS))
    env = pipeline_env(
        services, services.topic, "e2e.auditlog.test", key, AUDITLOG_SCHEMAS_FILE=str(schemas)
    )
    procs, base = start_pipeline(work, env)
    try:
        token = make_token(services, {"log", "search"})
        yield Pipeline(base, token, vkey, key.with_suffix(".vkey"), env, services, work)
    finally:
        stop_processes(procs)
