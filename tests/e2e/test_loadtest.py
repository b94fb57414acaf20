"""``auditlog loadtest`` against the pipeline (reports, thresholds, every logging path) and,
for coordinated omission, against a deliberately stalling server in this test."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from auditlog.loadtest.options import Config
from auditlog.loadtest.pacing import Plan
from auditlog.loadtest.runner import execute
from tests.e2e.conftest import Pipeline, make_token
from tests.go_tools import ROOT, missing

pytestmark = pytest.mark.e2e


def _loadtest(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "loadtest", "--url", pipeline.base_url,
         "--token", pipeline.token, "--quiet", *args],
        capture_output=True, text=True, check=False, timeout=150, env=pipeline.env,
    )  # fmt: skip


def test_a_short_mixed_run_writes_the_json_and_html_reports(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    done = _loadtest(
        pipeline,
        "--scenario", "mixed", "--rate", "50", "--duration", "3s", "--bulk", "10",
        "--seal-samples", "20", "--max-p99", "60000", "--max-sealed-p99", "60000",
        "--seal-wait", "90",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    res = json.loads((tmp_path / "report.json").read_text())
    assert res["passed"] is True
    assert res["requests"] == 150
    assert res["failed"] == 0, res["errors"]
    assert {"log", "bulk", "async", "search", "receipt", "tile"} >= set(res["operations"])
    assert {"log", "bulk", "receipt"} <= set(res["operations"])
    assert res["events"] >= res["operations"]["log"]["requests"]
    # Sampled events were followed through their receipts until sealed.
    assert res["sealed"]["sealed"] == res["sealed"]["sampled"] > 0
    assert res["sealed"]["latency_ms"]["p50"] > 0
    assert sum(row["offered"] for row in res["timeline"]) == 150
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 4
    assert "<script" not in page
    assert "PASSED" in page
    assert "report.html" in done.stdout
    assert "logged -> sealed" in done.stdout


def test_a_breached_threshold_exits_1_and_says_which(pipeline: Pipeline, tmp_path: Path) -> None:
    done = _loadtest(
        pipeline, "--rate", "20", "--duration", "1s", "--seal-samples", "0",
        "--max-p99", "0.001", "--min-rate", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--max-p99 0.001:" in done.stdout
    assert "FAILED" in done.stdout
    res = json.loads((tmp_path / "report.json").read_text())
    assert res["passed"] is False
    verdicts = {t["option"]: t["passed"] for t in res["thresholds"]}
    assert verdicts == {"--max-p99": False, "--max-error-rate": True, "--min-rate": True}
    # A wrong token: every request fails, by kind, and --stop-on-errors ends the run early.
    bad = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "loadtest", "--url", pipeline.base_url,
         "--token", "not-a-token", "--quiet", "--rate", "20", "--duration", "30s",
         "--stop-on-errors", "50%", "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, check=False, timeout=60, env=pipeline.env,
    )  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "STOPPED EARLY: --stop-on-errors" in bad.stdout
    res = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert res["duration_s"] < 10
    assert res["passed"] is False
    assert "HTTP 401" in bad.stdout


def test_the_kafka_producer_scenario_and_a_closed_loop(pipeline: Pipeline, tmp_path: Path) -> None:
    done = _loadtest(
        pipeline, "--scenario", "kafka", "--kafka-bootstrap", pipeline.services.kafka_bootstrap,
        "--topic", pipeline.services.topic, "--rate", "50", "--duration", "2s",
        "--seal-samples", "10", "--seal-wait", "90", "--out", str(tmp_path / "kafka"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    res = json.loads((tmp_path / "kafka" / "report.json").read_text())
    assert res["events"] == 100
    assert res["sealed"]["sealed"] == res["sealed"]["sampled"] > 0
    closed = _loadtest(
        pipeline, "--scenario", "bulk", "--bulk", "10", "--concurrency", "2",
        "--duration", "1s", "--seal-samples", "0", "--out", str(tmp_path / "closed"),
    )  # fmt: skip
    assert closed.returncode == 0, closed.stdout + closed.stderr
    res = json.loads((tmp_path / "closed" / "report.json").read_text())
    assert res["plan"]["mode"] == "closed"
    assert res["events"] == 10 * res["requests"] > 0


def test_a_tenant_bound_token_logs_and_reads_its_own_tenant(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    token = make_token(pipeline.services, {"log", "search"}, tenant="loadtest")
    done = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "loadtest", "--url", pipeline.base_url,
         "--token", token, "--tenant", "loadtest", "--scenario", "mixed", "--rate", "30",
         "--duration", "1s", "--seal-samples", "5", "--seal-wait", "90", "--max-error-rate", "0",
         "--quiet",
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=150, env=pipeline.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    res = json.loads((tmp_path / "report.json").read_text())
    assert res["sealed"]["sealed"] == res["sealed"]["sampled"] > 0
    # Reports are shared as CI artifacts: no token in them.
    assert token not in (tmp_path / "report.json").read_text()
    assert token not in (tmp_path / "report.html").read_text()


def test_the_documented_command_loads_a_running_stack(pipeline: Pipeline, tmp_path: Path) -> None:
    """``make loadtest``'s script, with shorter stages, against a stack that is already up."""
    if not (ROOT / ".venv" / "bin" / "auditlog").exists():
        missing("scripts/loadtest.sh runs .venv/bin/auditlog: run scripts/bootstrap.sh first")
    env = {
        **pipeline.env,
        "AUDITLOG_URL": pipeline.base_url,
        "PANGEA_AUDIT_TOKEN": pipeline.token,
        "LOADTEST_STAGES": "1s:20,1s:20",
        "LOADTEST_OUT": str(tmp_path),
        # This checkout's code, whichever checkout .venv's editable install points at.
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "loadtest.sh"), "--quiet", "--seal-samples", "5"],
        capture_output=True, text=True, check=False, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    res = json.loads((tmp_path / "report.json").read_text())
    assert res["scenario"] == "mixed"
    assert res["requests"] == 30
    assert (tmp_path / "report.html").exists()


STALL_AT = 0.5  # seconds into the run
STALL_FOR = 1.0


@pytest.fixture
async def stalling_server() -> AsyncIterator[str]:
    """Answers /v1/log in a millisecond, except that it stops for a second half a second in."""
    loop = asyncio.get_running_loop()
    first: list[float] = []

    async def log(_request: web.Request) -> web.Response:
        now = loop.time()
        if not first:
            first.append(now)
        if STALL_AT <= now - first[0] < STALL_AT + STALL_FOR:
            await asyncio.sleep(first[0] + STALL_AT + STALL_FOR - now)
        return web.Response(body=orjson.dumps({"status": "Success", "result": {"hash": "00"}}))

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/log", log)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_latency_counts_the_wait_behind_a_stall_from_the_intended_send_time(
    stalling_server: str,
) -> None:
    """Coordinated omission: with one connection, the requests due during a 1 s stall queue
    behind it. Measured from when each was sent, only one request would look slow; measured
    from when each was due, every one of them does, by as much as it waited."""
    rate, seconds = 100, 2.0
    config = Config(
        scenario="single", url=stalling_server, token="t", query_url=stalling_server,
        read_token="t", plan=Plan.constant(rate, seconds), max_in_flight=1, seal_samples=0,
    )  # fmt: skip
    res = await execute(config, progress=None)
    assert res["requests"] == rate * seconds
    assert res["failed"] == 0
    lat = res["latency_ms"]
    # ~100 requests were due during the stall, waiting 1 s down to 0: a quarter of all the
    # requests waited more than a quarter of a second.
    assert lat["max"] >= STALL_FOR * 1000 * 0.9
    assert lat["p75"] >= 200
    assert lat["p50"] < lat["p75"]
    generator = res["generator"]
    assert generator["late_requests"] >= 50
    assert generator["waited_for_slot"] >= 50
    assert any("--max-in-flight" in w for w in generator["warnings"])
