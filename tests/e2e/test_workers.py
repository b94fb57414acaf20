"""Several worker processes on one port: every request answered, metrics added up, clean stop.

``auditlog ingest`` with ``AUDITLOG_INGEST_WORKERS=3``: the supervisor and three workers; events
posted concurrently on fresh connections until more than one worker has taken some (each
worker's metric file says how many it acknowledged), then ``/metrics`` scraped again and again:
whichever worker answers, it reports every worker's events. SIGTERM stops them all and removes
the metrics directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import Services, start_service
from tests.e2e.conftest import _free_port, make_token

pytestmark = pytest.mark.e2e

WORKERS = 3
ROUND = 20  # events posted at once, each on its own connection


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _acknowledged(metrics_dir: str) -> dict[str, float]:
    """Worker metric file -> events it acknowledged (auditlog_ingest_events_total)."""
    out = {}
    for path in Path(metrics_dir).glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        out[path.name] = sum(
            value
            for key, value, _, _ in values
            if json.loads(key)[1] == "auditlog_ingest_events_total"
        )
    return out


def _metrics_dirs(pid: int) -> set[str]:
    """The PROMETHEUS_MULTIPROC_DIR of a process, from its environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return {e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC")}


def test_workers_share_the_port_and_their_metrics(services: Services, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": services.database_url,
        "AUDITLOG_TOPIC": services.topic,
        "AUDITLOG_PORT": str(port),
        "AUDITLOG_INGEST_WORKERS": str(WORKERS),
    }
    base = f"http://127.0.0.1:{port}"
    proc = start_service("ingest", env, tmp_path / "ingest.log", f"{base}/readyz")
    try:
        # The supervisor's children but multiprocessing's resource tracker: the workers.
        workers = [
            c
            for c in _children(proc.pid)
            if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(workers) == WORKERS
        [metrics_dir] = set().union(*(_metrics_dirs(w) for w in workers))

        token = make_token(services, {"log"})

        def post(i: int) -> int:
            # A client per request: a new connection each, accepted by any worker.
            return httpx.post(
                f"{base}/v1/log",
                json={"event": {"message": f"worker test {i}"}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).status_code

        sent = 0
        with ThreadPoolExecutor(ROUND) as pool:
            for _ in range(10):
                assert set(pool.map(post, range(sent, sent + ROUND))) == {200}
                sent += ROUND
                if sum(1 for n in _acknowledged(metrics_dir).values() if n) > 1:
                    break
        shares = _acknowledged(metrics_dir)
        assert sum(1 for n in shares.values() if n) > 1, shares
        assert sum(shares.values()) == sent
        pattern = re.compile(r"^auditlog_ingest_events_total (\S+)$", re.MULTILINE)
        for _ in range(10):
            found = pattern.search(httpx.get(f"{base}/metrics", timeout=5).text)
            assert found is not None and float(found.group(1)) == sent
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not Path(metrics_dir).exists()
