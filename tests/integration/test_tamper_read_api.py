"""The tamper suite through the public read API: ``auditlog query`` serves a damaged clone of
the sealed database (tests/integration/tamper_harness.py) to ``auditlog audit --url``,
``auditlog verify consistency`` and ``auditlog monitor``, which must name the damage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import decode_bundle, encode_bundle
from tests.conftest import Services, start_service
from tests.e2e.conftest import _free_port, make_token
from tests.integration.tamper_harness import (
    LOG,
    ORIGIN,
    OTHER,
    SIZE,
    TOPIC,
    ZERO,
    Pristine,
    assert_named,
    assert_other_log_clean,
    audit,
    cli_env,
    damage,
    delete_log,
    sql,
)

pytestmark = pytest.mark.integration


# -- the same audits through the public read API ------------------------------------------------
@pytest.fixture
def query_api(clone: str, services: Services, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`auditlog query` serving the clone; (base URL, token with search scope, clone URL)."""
    import os

    port = _free_port()
    env = {**os.environ, "AUDITLOG_DATABASE_URL": clone, "AUDITLOG_PORT": str(port),
           "AUDITLOG_TOPIC": TOPIC}  # fmt: skip
    token = make_token(Services(services.kafka_bootstrap, clone, TOPIC), {"search"})
    base = f"http://127.0.0.1:{port}"
    proc = start_service("query", env, tmp_path / "query.log", f"{base}/healthz", timeout=30)
    try:
        yield base, token, clone
    finally:
        proc.terminate()
        proc.wait(20)


def test_api_audit_of_untouched_logs(pristine: Pristine, query_api: tuple[str, str, str]) -> None:
    base, token, _ = query_api
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 0, out
    assert {entry["log"]: entry["entries_checked"] for entry in report["logs"]} == {
        LOG: SIZE,
        OTHER: SIZE,
    }
    rc, report, out = audit(pristine, source=["--url", base])  # tiles and checkpoint only
    assert rc == 0, out


def test_api_audit_names_a_rewritten_tile_and_bundle(
    pristine: Pristine, query_api: tuple[str, str, str]
) -> None:
    base, token, clone = query_api
    sql(
        clone,
        "UPDATE tiles SET data = overlay(data placing $2 from 33 for 32)"
        " WHERE log_id = $1 AND level = 1 AND idx = 0",
        LOG, bytes(32),
    )  # fmt: skip

    async def forge(conn: asyncpg.Connection) -> None:
        data = await conn.fetchval("SELECT data FROM bundles WHERE log_id = $1 AND idx = 0", LOG)
        entries = decode_bundle(bytes(data))
        entries[17] = entries[17].replace(b'"alice"', b'"mallory"')
        await conn.execute(
            "UPDATE bundles SET data = $2 WHERE log_id = $1 AND idx = 0",
            LOG,
            encode_bundle(entries),
        )

    damage(clone, forge)
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 1, out
    assert_named(report, "tile-mismatch", 256, ZERO)
    leaf = assert_named(report, "leaf-mismatch", 17, None)
    assert leaf["hash"] != pristine.hashes[(LOG, 17)]
    assert_other_log_clean(report)
    # Without a token the bundles are out of reach, but the tile hierarchy is still checked.
    rc, report, out = audit(pristine, source=["--url", base])
    assert rc == 1, out
    assert_named(report, "tile-mismatch", 256, ZERO)


def test_api_audit_catches_a_rollback_with_its_state(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _, clone = query_api
    state = tmp_path / "state.json"
    rc, _, out = audit(pristine, "--state", str(state), source=["--url", base])
    assert rc == 0, out
    root = Checkpoint.from_text(pristine.notes[316].split("\n\n")[0] + "\n").root
    sql(
        clone,
        "UPDATE logs SET size = 316, root = $2, checkpoint = $3 WHERE log_id = $1",
        LOG, root, pristine.notes[316],
    )  # fmt: skip
    rc, report, out = audit(pristine, "--state", str(state), source=["--url", base])
    assert rc == 1, out
    assert_named(report, "rollback", 316, None)


# -- following a log: monitor and verify consistency --------------------------------------------
def cli(pristine: Pristine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True, text=True, check=False, timeout=60, env=cli_env(pristine),
    )  # fmt: skip


def test_verify_consistency_between_signed_checkpoints(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base = query_api[0]
    old, new = tmp_path / "old.note", tmp_path / "new.note"
    old.write_text(pristine.notes[256])
    new.write_text(pristine.notes[SIZE])
    key = str(pristine.vkey_file)
    fetched = cli(
        pristine, "verify", "consistency", str(old), str(new), "--key", key, "--url", base
    )
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"size {SIZE}" in fetched.stdout and "extends size 256" in fetched.stdout
    # The endpoint's body is a tlog-witness request body; it works offline as --proof.
    body = httpx.get(f"{base}/v1/proofs/consistency", params={"log": LOG, "from": 256}).text
    (tmp_path / "proof").write_text(body)
    offline = cli(
        pristine,
        "verify",
        "consistency",
        str(old),
        str(new),
        "--key",
        key,
        "--proof",
        str(tmp_path / "proof"),
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    backwards = cli(
        pristine, "verify", "consistency", str(new), str(old), "--key", key, "--url", base
    )
    assert backwards.returncode == 1 and "Rollback" in backwards.stdout
    fork = tmp_path / "fork.note"
    fork.write_text(
        sign_note(Checkpoint(f"{ORIGIN}/{TOPIC}/0", SIZE, bytes(32)).to_text(), [pristine.signer])
    )
    forked = cli(
        pristine,
        "verify",
        "consistency",
        str(old),
        str(fork),
        "--key",
        key,
        "--proof",
        str(tmp_path / "proof"),
    )
    assert forked.returncode == 1 and "RootMismatch" in forked.stdout
    assert cli(pristine, "verify", "consistency", str(old), str(new), "--key", key).returncode == 2


class _Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_monitor_alerts_on_fork_foreign_signature_and_rollback(
    pristine: Pristine, query_api: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _, clone = query_api
    state = tmp_path / "monitor.json"
    monitor = [
        "monitor",
        "--url",
        base,
        "--key",
        str(pristine.vkey_file),
        "--state",
        str(state),
        "--once",
    ]
    first = cli(pristine, *monitor, "--log", LOG)
    assert first.returncode == 0, first.stdout + first.stderr
    trusted = json.loads(state.read_text())["logs"][f"{ORIGIN}/{TOPIC}/0"]["checkpoint"]
    assert trusted == pristine.notes[SIZE]
    webhook = _Webhook()
    try:
        log_origin = f"{ORIGIN}/{TOPIC}/0"
        stranger = NoteSigner.generate(ORIGIN)
        cases = [
            ("fork", sign_note(
                Checkpoint(log_origin, SIZE, bytes(32)).to_text(), [pristine.signer]
            )),
            ("checkpoint-signature", sign_note(trusted.split("\n\n")[0] + "\n", [stranger])),
            ("rollback", pristine.notes[316]),
            ("inconsistent", sign_note(
                Checkpoint(log_origin, SIZE + 1, bytes(32)).to_text(), [pristine.signer]
            )),
        ]  # fmt: skip
        for kind, note in cases:
            sql(clone, "UPDATE logs SET checkpoint = $2 WHERE log_id = $1", LOG, note)
            if kind == "inconsistent":
                # The server must also claim a checkpoint of that size for the proof to exist.
                sql(
                    clone,
                    "INSERT INTO checkpoints (log_id, size, root, note) VALUES ($1, $2, $3, $4)",
                    LOG, SIZE + 1, bytes(32), note,
                )  # fmt: skip
                sql(clone, "UPDATE logs SET size = $2 WHERE log_id = $1", LOG, SIZE + 1)
                sql(
                    clone,
                    "UPDATE tiles SET data = data || $2"
                    " WHERE log_id = $1 AND level = 0 AND idx = 2",
                    LOG, bytes(range(32)),
                )  # fmt: skip
            seen = cli(pristine, *monitor, "--log", LOG, "--webhook", webhook.url)
            assert seen.returncode == 1, (kind, seen.stdout, seen.stderr)
            alert = json.loads(seen.stderr.strip().splitlines()[-1])["alert"]
            assert (alert["kind"], alert["log"]) == (kind, LOG), seen.stderr
            assert webhook.received[-1]["alert"]["kind"] == kind
            # What failed is never trusted: the state still holds the last good checkpoint.
            remembered = json.loads(state.read_text())["logs"][f"{ORIGIN}/{TOPIC}/0"]
            assert remembered["checkpoint"] == trusted
    finally:
        webhook.close()


# -- what only memory catches: a log gone from /v1/logs, a switched hash scheme ------------------
def test_api_audit_names_a_switched_scheme_and_a_gone_log(
    pristine: Pristine, query_api: tuple[str, str, str]
) -> None:
    base, token, clone = query_api
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 0, out
    assert Path(report["state"]).parent == pristine.state_home / "auditlog"
    sql(clone, "UPDATE logs SET hash_scheme = 'pangea-sha256' WHERE log_id = $1", LOG)
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 1, out
    # Checked with the remembered scheme, not the listed one: the switch is the only finding.
    assert [(f["log"], f["kind"]) for f in report["findings"]] == [(LOG, "scheme-changed")]
    damage(clone, delete_log)
    rc, report, out = audit(pristine, "--token", token, source=["--url", base])
    assert rc == 1, out
    assert [(f["log"], f["kind"]) for f in report["findings"]] == [(LOG, "missing-log")]


def test_monitor_alerts_on_a_log_missing_from_the_listing(
    pristine: Pristine, query_api: tuple[str, str, str]
) -> None:
    base, _, clone = query_api
    monitor = ["monitor", "--url", base, "--key", str(pristine.vkey_file), "--once"]
    first = cli(pristine, *monitor)  # the default state: per user, here under XDG_STATE_HOME
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"state: {pristine.state_home / 'auditlog'}/monitor-" in first.stdout
    webhook = _Webhook()
    try:
        sql(clone, "UPDATE logs SET hash_scheme = 'rfc6962-blake3' WHERE log_id = $1", LOG)
        switched = cli(pristine, *monitor, "--webhook", webhook.url)
        assert switched.returncode == 1, switched.stdout + switched.stderr
        alerts = [json.loads(line)["alert"] for line in switched.stderr.strip().splitlines()]
        assert [(a["kind"], a["log"]) for a in alerts] == [("scheme-changed", LOG)]
        damage(clone, delete_log)
        gone = cli(pristine, *monitor, "--webhook", webhook.url)
        assert gone.returncode == 1, gone.stdout + gone.stderr
        alerts = [json.loads(line)["alert"] for line in gone.stderr.strip().splitlines()]
        assert [(a["kind"], a["log"], a["origin"]) for a in alerts] == [
            ("missing-log", LOG, f"{ORIGIN}/{TOPIC}/0")
        ]
        assert alerts[0]["trusted_size"] == SIZE
        assert [r["alert"]["kind"] for r in webhook.received] == ["scheme-changed", "missing-log"]
        # Without memory, a log missing from the listing is not noticed.
        assert cli(pristine, *monitor, "--no-state").returncode == 0
    finally:
        webhook.close()
