"""The OCI image, built for real and run read-only as a sealer against the test Kafka and
PostgreSQL. Slow (a few minutes the first time on a machine), so it runs only when asked:
``AUDITLOG_TEST_IMAGE=1``, as root, with podman (deploy/image/README.md)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from auditlog.cli.keys import write_signing_key
from tests.conftest import Services
from tests.e2e.conftest import _free_port
from tests.integration.sealer_harness import produce, wait_sealed

ROOT = Path(__file__).resolve().parents[2]
FLAGS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "auditlog/image"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("AUDITLOG_TEST_IMAGE") != "1",
        reason="builds the image: set AUDITLOG_TEST_IMAGE=1 (deploy/image/README.md)",
    ),
]


def _build() -> tuple[str, list[str]]:
    """deploy/image/build.sh (with its smoke run); the image, and the podman run flags it
    needed on this machine."""
    result = subprocess.run(
        [str(ROOT / "deploy/image/build.sh")],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    image = result.stdout.strip().splitlines()[-1]
    flags = (FLAGS / "podman-run-flags").read_text().split()
    return image, flags


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=False
    )


async def test_the_image_runs_a_sealer_read_only_as_its_own_user(
    services: Services, topic: str, tmp_path: Path
) -> None:
    assert os.geteuid() == 0, "the image test runs podman as root"
    image, flags = await asyncio.to_thread(_build)
    key = tmp_path / "log.skey"
    write_signing_key(key, "image.auditlog.test")
    os.chown(key, 10001, 10001)  # the image's user; mode 0600 as keygen wrote it
    port = _free_port()
    name = f"auditlog-image-test-{secrets.token_hex(4)}"
    run = await asyncio.to_thread(
        _podman, "run", "-d", "--name", name, "--network", "host", "--read-only", *flags,
        "-e", f"AUDITLOG_KAFKA_BOOTSTRAP={services.kafka_bootstrap}",
        "-e", f"AUDITLOG_DATABASE_URL={services.database_url}",
        "-e", f"AUDITLOG_TOPIC={topic}",
        "-e", "AUDITLOG_ORIGIN=image.auditlog.test",
        "-e", f"AUDITLOG_SEALER_GROUP_ID={name}",
        "-e", "AUDITLOG_SEALER_METRICS_HOST=127.0.0.1",
        "-e", f"AUDITLOG_SEALER_METRICS_PORT={port}",
        "-v", f"{key}:/etc/auditlog/keys/log.skey:ro",
        image, "auditlog", "sealer",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 90
        while not await asyncio.to_thread(_ready, port):
            state = await asyncio.to_thread(_podman, "inspect", "-f", "{{.State.Running}}", name)
            if time.monotonic() > deadline or state.stdout.strip() != "true":
                logs = await asyncio.to_thread(_podman, "logs", name)
                pytest.fail(f"the sealer in the image is not ready:\n{logs.stdout}{logs.stderr}")
            await asyncio.sleep(0.5)
        hashes = await produce(services, topic, 20, "image")
        await wait_sealed(services, topic, len(hashes))
        metrics = await asyncio.to_thread(_metrics, port)
        assert 'auditlog_build_info{python="3.11.' in metrics and 'service="sealer"' in metrics
        user = await asyncio.to_thread(_podman, "exec", name, "id", "-u")
        assert user.stdout.strip() == "10001"
        writable = await asyncio.to_thread(_podman, "exec", name, "touch", "/opt/auditlog/x")
        assert writable.returncode != 0 and "Read-only file system" in writable.stderr
    finally:
        await asyncio.to_thread(_podman, "stop", "-t", "30", name)
        await asyncio.to_thread(_podman, "rm", "-f", name)
