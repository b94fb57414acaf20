"""The ecosystem's own clients follow a running deployment's log, as a third party would.

Tessera's client library (``github.com/transparency-dev/tessera/client``, pinned v1.0.4 in
tests/conformance/tessera/go.mod) reads one log through the query service's tlog-tiles API,
knowing nothing but the vkey ``GET /v1/logs`` lists for it: it verifies the checkpoint (its key
name must be the log's origin, the key-name rule), inclusion proofs of sampled entries built
from tiles, and, after more events are sealed, the new checkpoint's consistency with the old.
Tessera's load and read tester ``hammer`` (internal/hammer of the same version, installed by
scripts/go-tools.sh) then reads the log for a bounded time and must report no error.

The sealer runs with its default ``AUDITLOG_LEGACY_KEY_NAME=on``: each checkpoint also carries
the deployment-wide name's signature, which these clients must ignore. The Go cross-check of
notes, tiles and proofs with ``sumdb/note`` and ``sumdb/tlog`` is tests/unit/test_go_conformance.py.

Without Go the module is skipped; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pangea.config import PangeaConfig
from pangea.services import Audit

from auditlog.core.log_keys import log_vkey
from auditlog.core.note import NoteSigner, NoteVerifier
from auditlog.kafka.clients import dlq_topic, ensure_topics
from tests.conftest import Services, delete_topics
from tests.e2e.conftest import make_token, pipeline_env, start_pipeline, stop_processes
from tests.go_tools import cached_tool, go_build

pytestmark = [pytest.mark.e2e, pytest.mark.conformance]

ROOT = Path(__file__).resolve().parents[2]
FOLLOW_MODULE = ROOT / "tests" / "conformance" / "tessera"
TESSERA_VERSION = "v1.0.4"  # as scripts/go-tools.sh and tests/conformance/tessera/go.mod
ORIGIN_BASE = "tessera.e2e.test"
FIRST, MORE = 300, 40  # more than one tile of entries, then a second checkpoint
# klog's warning, error and fatal lines: "W1204 22:05:01.123456 ..."
KLOG_TROUBLE = re.compile(r"^[WEF]\d{4} ", re.MULTILINE)


@pytest.fixture(scope="module")
def follow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tessera-follow") / "follow"
    return go_build(FOLLOW_MODULE, out, minimum=(1, 24))


@pytest.fixture(scope="module")
def hammer() -> Path:
    return cached_tool("hammer", TESSERA_VERSION)


@dataclass(frozen=True)
class Deployment:
    base_url: str
    token: str
    topic: str
    key: NoteVerifier  # the deployment's verifier key, named AUDITLOG_ORIGIN
    audit: Audit
    hashes: set[str]  # event hashes logged so far

    @property
    def log_id(self) -> str:
        return f"{self.topic}-0"

    @property
    def log_url(self) -> str:
        return f"{self.base_url}/v1/logs/{self.log_id}/"

    def listing(self) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = httpx.get(f"{self.base_url}/v1/logs").json()["result"]["logs"]
        return [e for e in logs if e["log"] == self.log_id]

    def listed(self) -> dict[str, Any]:
        (entry,) = self.listing()
        return entry

    def sealed(self) -> int:
        # The log is listed once the sealer got the partition, which may be after the first event.
        return sum(e["size"] for e in self.listing())

    def log_events(self, count: int, label: str) -> None:
        events = [
            {"message": f"{label} {i}", "actor": "tessera", "action": label} for i in range(count)
        ]
        response = self.audit.log_bulk(events, verbose=False)
        assert response.result is not None
        self.hashes.update(r.hash for r in response.result.results)
        deadline = time.monotonic() + 60
        while self.sealed() < len(self.hashes):
            assert time.monotonic() < deadline, "events were not sealed"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def deployment(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A pipeline of its own on a one-partition topic: one log, the default rfc6962-sha256."""
    from auditlog.cli.keys import write_signing_key

    topic = f"audit.tessera-{secrets.token_hex(4)}"
    asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=1))
    work = tmp_path_factory.mktemp("tessera-pipeline")
    vkey = write_signing_key(work / "log.skey", ORIGIN_BASE)
    env = pipeline_env(
        services,
        topic,
        ORIGIN_BASE,
        work / "log.skey",
        AUDITLOG_VKEY=vkey,
        AUDITLOG_BATCH_MAX_SIZE="128",  # several checkpoints, partial and full tiles
    )
    procs, base = start_pipeline(work, env)
    try:
        token = make_token(services, {"log", "search"})
        d = Deployment(
            base,
            token,
            topic,
            NoteVerifier.from_vkey(vkey),
            Audit(token, config=PangeaConfig(domain=base)),
            set(),
        )
        d.log_events(FIRST, "first")
        yield d
    finally:
        stop_processes(procs)
        asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


def run_follow(
    binary: Path, d: Deployment, vkey: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-log_url", d.log_url, "-vkey", vkey, "-bearer_token", d.token, *extra],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_tessera_client_follows_a_log_with_the_listed_vkey(
    follow: Path, deployment: Deployment, tmp_path: Path
) -> None:
    listed = deployment.listed()
    origin = listed["origin"]
    assert origin == f"{ORIGIN_BASE}/{deployment.topic}/0"
    # The listed vkey is the deployment's key under the log's origin: the key name is the origin.
    assert listed["vkey"] == log_vkey(deployment.key, origin)
    assert NoteVerifier.from_vkey(listed["vkey"]).name == origin

    first = run_follow(follow, deployment, listed["vkey"], "-samples", "24")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["origin"] == origin
    assert report["size"] == FIRST
    sampled = {s["index"] for s in report["samples"]}
    assert {0, FIRST - 1} <= sampled
    assert len(sampled) == 24
    for s in report["samples"]:
        # An entry under 64 KiB is the canonical envelope: its SHA-256 is the event hash.
        assert s["entry_sha256"] in deployment.hashes
        assert s["proof_len"] > 0

    old = tmp_path / "old.checkpoint"
    old.write_text(report["checkpoint"])
    deployment.log_events(MORE, "more")
    second = run_follow(follow, deployment, listed["vkey"], "-old_checkpoint", str(old))
    assert second.returncode == 0, second.stderr
    grown = json.loads(second.stdout)
    assert grown["consistent_from"] == FIRST
    assert grown["size"] == FIRST + MORE
    assert grown["consistency_proof_len"] > 0
    assert {s["index"] for s in grown["samples"]} >= {0, FIRST + MORE - 1}


def test_tessera_client_refuses_keys_that_do_not_name_the_log(
    follow: Path, deployment: Deployment
) -> None:
    origin = deployment.listed()["origin"]
    # The deployment-wide vkey signs too (the legacy name), but its name is not the origin:
    # the failure this issue started from.
    legacy = run_follow(follow, deployment, deployment.key.vkey(), "-samples", "1")
    assert legacy.returncode == 1
    assert f'got Origin "{origin}" but expected "{ORIGIN_BASE}"' in legacy.stderr
    # The right name under another key: no signature by it.
    stranger = NoteSigner.generate(origin).vkey()
    forged = run_follow(follow, deployment, stranger, "-samples", "1")
    assert forged.returncode == 1
    assert "checkpoint" in forged.stderr


def test_hammer_reads_a_log_for_a_while_without_error(hammer: Path, deployment: Deployment) -> None:
    vkey = deployment.listed()["vkey"]
    started = time.monotonic()
    result = subprocess.run(
        [
            str(hammer),
            f"--log_url={deployment.log_url}",
            f"--log_public_key={vkey}",
            f"--bearer_token={deployment.token}",
            "--num_writers=0",
            "--max_write_ops=0",
            "--num_readers_random=4",
            "--num_readers_full=2",
            "--max_read_ops=200",
            "--max_runtime=3s",  # behaviour, not capacity: was 6 s
            "--show_ui=false",
            "-v=2",  # one line per leaf read: shows the readers worked
            "--logtostderr",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Read-only, the hammer stops only at --max_runtime, which it reports as exit code 1.
    tail = result.stderr[-3000:]
    assert result.returncode == 1, tail
    assert "Max runtime reached" in result.stderr, tail
    assert time.monotonic() - started >= 3
    # Past --max_runtime the hammer cancels its requests in flight, which it logs as warnings
    # ("context canceled"): its shutdown, not the log's doing. Anything else is a failure.
    trouble = [
        line
        for line in result.stderr.splitlines()
        if KLOG_TROUBLE.match(line) and not line.endswith("context canceled")
    ]
    assert not trouble, "\n".join(trouble)
    # Reads are throttled to 200 a second over 3 s; on a busy machine fewer, but never none.
    reads = result.stderr.count("LeafReader getting")
    assert reads >= 100, f"{reads} leaves read:\n{result.stderr[-2000:]}"


def test_logs_command_prints_the_witness_log_list(deployment: Deployment) -> None:
    from auditlog.core.log_list import parse_log_list

    result = subprocess.run(
        [
            sys.executable, "-m", "auditlog.cli", "logs", "--url", deployment.base_url,
            "--key", deployment.key.vkey(), "--format", "log-list",
            "--contact", "audit-ops@example.com", "--qpd", "1440",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = deployment.listed()
    (entry,) = [e for e in parse_log_list(result.stdout) if e.origin == listed["origin"]]
    assert entry.vkey == listed["vkey"]
    assert (entry.qpd, entry.contact) == (1440, "audit-ops@example.com")
