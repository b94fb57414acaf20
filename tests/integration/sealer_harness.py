"""Helpers for the sealer drills: sealer processes, producing, and the exactly-once check."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner, NoteVerifier, open_note
from auditlog.core.proof import (
    consistency_proof,
    consistency_tiles,
    root_from_tiles,
    root_tiles,
    verify_consistency,
)
from auditlog.core.tiles import TileID
from auditlog.producer import AuditProducer
from tests.conftest import Services, stop_processes


@dataclass
class SealerFleet:
    """Sealer subprocesses sharing one signing key; stopped by :meth:`close`."""

    services: Services
    topic: str
    key_file: Path
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, group: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "AUDITLOG_KAFKA_BOOTSTRAP": self.services.kafka_bootstrap,
            "AUDITLOG_DATABASE_URL": self.services.database_url,
            "AUDITLOG_TOPIC": self.topic,
            "AUDITLOG_ORIGIN": "drill.auditlog.test",
            "AUDITLOG_SIGNING_KEY_FILE": str(self.key_file),
            "AUDITLOG_SEALER_GROUP_ID": group,
            "AUDITLOG_BATCH_MAX_SIZE": "200",
            "AUDITLOG_BATCH_MAX_AGE": "0.05",
            "AUDITLOG_BATCH_MIN_INTERVAL": "0",  # tests wait on each seal: no spacing
            **extra,
        }

    def start(self, group: str | None = None, **extra: str) -> subprocess.Popen[bytes]:
        """A sealer in ``group``, by default the fleet's own: a group shared with other tests
        would keep a member one of them killed until its session timed out (10 s), and every
        sealer joining it meanwhile would wait that out."""
        log = self.workdir / f"sealer-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditlog.cli", "sealer"],
                env=self.env(group or f"drill.{self.topic}", **extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("sealer-*.log")))

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines ``"event": name`` of every sealer, each with its ``sealer`` index."""
        found = []
        for i, path in enumerate(sorted(self.workdir.glob("sealer-*.log"))):
            for line in path.read_text().splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append({**entry, "sealer": i})
        return found

    def close(self) -> None:
        stop_processes(self.procs)


async def produce(services: Services, topic: str, n: int, tag: str) -> list[str]:
    hashes: list[str] = []
    async with AuditProducer(services.kafka_bootstrap, topic) as producer:
        for start in range(0, n, 500):
            events = [
                {"message": f"{tag} {i}", "actor": f"user-{i % 7}", "tenant_id": f"t{i % 50}"}
                for i in range(start, min(n, start + 500))
            ]
            hashes += await producer.log_many(events)
    return hashes


async def sealed_count(services: Services, topic: str) -> int:
    conn = await asyncpg.connect(services.database_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM events WHERE log_id LIKE $1", f"{topic}-%")
        )
    finally:
        await conn.close()


async def wait_sealed(services: Services, topic: str, n: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while (count := await sealed_count(services, topic)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {count} of {n} events sealed after {within}s")
        await asyncio.sleep(0.2)


async def check_exactly_once(
    services: Services, topic: str, hashes: list[str], vkey: str
) -> dict[str, int]:
    """Every produced event sealed once, in offset order, under consistent signed checkpoints.

    Returns the size of each log.
    """
    verifier = NoteVerifier.from_vkey(vkey)
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch(
            "SELECT log_id, idx, event_hash, kafka_offset FROM events WHERE log_id LIKE $1"
            " ORDER BY log_id, idx",
            f"{topic}-%",
        )
        sealed = [bytes(r["event_hash"]).hex() for r in rows]
        assert len(sealed) == len(set(sealed)), "an event was sealed twice"
        assert sorted(sealed) == sorted(hashes), "sealed events differ from produced events"
        sizes: dict[str, int] = {}
        for log_id in sorted({r["log_id"] for r in rows}):
            mine = [r for r in rows if r["log_id"] == log_id]
            assert [r["idx"] for r in mine] == list(range(len(mine))), f"{log_id}: index gap"
            offsets = [r["kafka_offset"] for r in mine]
            assert offsets == sorted(offsets), f"{log_id}: not in offset order"
            assert len(set(offsets)) == len(offsets), f"{log_id}: an offset sealed twice"
            sizes[log_id] = len(mine)
            await _check_checkpoints(conn, log_id, len(mine), verifier)
        return sizes
    finally:
        await conn.close()


async def _check_checkpoints(
    conn: asyncpg.Connection, log_id: str, size: int, verifier: NoteVerifier
) -> None:
    head = await conn.fetchrow("SELECT hash_scheme, size, root FROM logs WHERE log_id = $1", log_id)
    assert head is not None
    assert head["size"] == size
    hasher = get_hasher(head["hash_scheme"])
    tiles = {
        TileID(r["level"], r["idx"]): bytes(r["data"])
        for r in await conn.fetch("SELECT level, idx, data FROM tiles WHERE log_id = $1", log_id)
    }
    assert set(root_tiles(size)) <= set(tiles)
    assert root_from_tiles(hasher, size, tiles) == bytes(head["root"])
    notes = await conn.fetch(
        "SELECT size, root, note FROM checkpoints WHERE log_id = $1 ORDER BY size", log_id
    )
    assert notes, f"{log_id}: no checkpoint"
    previous: Checkpoint | None = None
    for row in notes:
        checkpoint = Checkpoint.from_text(open_note(row["note"], [verifier]).text)
        assert (checkpoint.size, checkpoint.root) == (row["size"], bytes(row["root"]))
        if previous is not None:
            assert set(consistency_tiles(previous.size, checkpoint.size)) <= set(tiles)
            proof = consistency_proof(hasher, previous.size, checkpoint.size, tiles)
            verify_consistency(
                hasher, previous.size, checkpoint.size, previous.root, checkpoint.root, proof
            )
        previous = checkpoint
    assert previous is not None
    assert previous.size == size


@dataclass
class WitnessProcess:
    """`auditlog witness` for one log origin; restartable on the same port, key and state."""

    workdir: Path
    origin: str
    log_vkey: str
    name: str = "w1.witness.test"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> Path:
        return self.workdir / f"{self.name}.skey"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def vkey(self) -> str:
        if not self.key.exists():
            self.key.write_text(NoteSigner.generate(self.name).skey() + "\n")
        return subprocess.run(
            [sys.executable, "-m", "auditlog.cli", "witness", "--key", str(self.key),
             "--print-vkey"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    def start(self) -> None:
        self.vkey()
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        with (self.workdir / f"{self.name}.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "auditlog.cli", "witness",
                 "--listen", f"127.0.0.1:{self.port}", "--key", str(self.key),
                 "--state", str(self.workdir / f"{self.name}.sqlite3"),
                 "--log", f"{self.origin}={self.log_vkey}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("witness did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def audit_clean(
    database_url: str, vkey_file: Path, log_ids: list[str], workdir: Path
) -> dict[str, int]:
    """`auditlog audit` of ``log_ids`` from the database with the log's key: every log clean,
    every entry checked. Returns each log's audited size."""
    proc = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "audit", "--database-url", database_url,
         "--key", str(vkey_file), "--no-state", "--json", "--no-progress",
         *(f"--log={log_id}" for log_id in log_ids)],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(workdir / "state")},
    )  # fmt: skip
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert report["ok"], report["findings"]
    assert sorted(r["log"] for r in report["logs"]) == sorted(log_ids)
    assert all(r["entries_checked"] == r["size"] for r in report["logs"]), report["logs"]
    return {r["log"]: r["size"] for r in report["logs"]}
