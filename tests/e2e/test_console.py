"""The web console in headless Chromium against a running pipeline (ingest, sealer, query).

A module pipeline of its own (two partitions, rfc6962-sha256) holds events of two tenants. The
browser signs in, pins the deployment key, searches, pages, downloads, opens an event and sees
its receipt verified; an event whose stored envelope the test rewrote (with its hash "fixed", as
an insider would) shows the failure, as does a wrong pinned key; a viewer token minted by the
admin endpoint sees only its tenant and stops working when it expires; the logs page checks
consistency with the checkpoint the browser saw before.

With ``AUDITLOG_CONSOLE_SCREENSHOTS=DIR`` (scripts/console-screenshots.sh) the main pages are
saved there as PNG files: the screenshots of docs/console.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auditlog.kafka.clients import dlq_topic, ensure_topics
from tests.conftest import Services, delete_topics
from tests.e2e.browser import chromium, static_files
from tests.e2e.conftest import make_token, pipeline_env, start_pipeline, stop_processes
from tests.e2e.console_pages import (
    ORIGIN,
    TENANTS,
    Console,
    by_id,
    log_events,
    logs_checked,
    open_event,
    pin,
    search,
    search_here,
    shot,
    shown_hashes,
    sign_in,
    text_of,
    wait,
    wait_sealed,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def console(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from auditlog.cli.keys import write_signing_key

    topic = f"audit.console-{secrets.token_hex(4)}"
    asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=2))
    work = tmp_path_factory.mktemp("console")
    vkey = write_signing_key(work / "log.skey", ORIGIN)
    env = pipeline_env(services, topic, ORIGIN, work / "log.skey", AUDITLOG_VKEY=vkey)
    procs, base = start_pipeline(work, env)
    try:
        token = make_token(services, {"log", "search", "admin"})
        marker = f"m{secrets.token_hex(4)}"
        hashes = log_events(base, token, marker, TENANTS)
        wait_sealed(base, token, hashes)
        yield Console(base, token, vkey, services.database_url, topic, marker, hashes)
    finally:
        stop_processes(procs)
        asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    with chromium(downloads) as driver:
        yield driver


def test_search_page_download_and_a_verified_event(
    browser: Any, console: Console, downloads: Path
) -> None:
    c = console
    sign_in(browser, c, c.token)
    pin(browser, c, c.vkey)
    shot(browser, "keys")
    assert search(browser, c, f"message:{c.marker}", "2") == "Events 1 to 2 of 5"
    first_page = shown_hashes(browser)
    shot(browser, "search")
    by_id(browser, "next").click()
    wait(browser, lambda d: text_of(d, "count") == "Events 3 to 4 of 5")
    by_id(browser, "next").click()
    wait(browser, lambda d: text_of(d, "count") == "Events 5 to 5 of 5")
    assert by_id(browser, "next").get_attribute("disabled") is not None
    last_page = shown_hashes(browser)
    by_id(browser, "prev").click()
    wait(browser, lambda d: text_of(d, "count") == "Events 3 to 4 of 5")
    middle = shown_hashes(browser)
    assert sorted(first_page + middle + last_page) == sorted(c.hashes)

    # The files keep the names the download endpoint gives them (search_results_<id>.<format>).
    by_id(browser, "download-json").click()
    files = wait(browser, lambda _: list(downloads.glob("*.json")))
    payload = json.loads(files[0].read_text())
    assert sorted(e["hash"] for e in payload["events"]) == sorted(c.hashes)
    by_id(browser, "download-csv").click()
    csv_files = wait(browser, lambda _: list(downloads.glob("*.csv")))
    assert all(h in csv_files[0].read_text() for h in c.hashes)

    result = open_event(browser, middle[0])
    assert result["verdict"].startswith("Verified in this browser"), result
    assert {k: v for k, v in result.items() if k != "verdict"} == {
        "envelope": "ok",
        "signature": "ok",
        "origin": "ok",
        "leaf": "ok",
        "inclusion": "ok",
        "witnesses": "skipped",
    }
    assert text_of(browser, "event-hash") == middle[0]
    envelope = json.loads(text_of(browser, "envelope-canonical"))
    assert envelope["event"]["message"].startswith(c.marker)
    shot(browser, "event")


def test_an_altered_event_and_a_wrong_key_fail(browser: Any, console: Console) -> None:
    from auditlog.core.envelope import canonical_json
    from auditlog.core.note import NoteSigner

    c = console
    sign_in(browser, c, c.token)
    pin(browser, c, c.vkey)
    victim = c.hashes[3]

    async def stored() -> asyncpg.Record:
        conn = await asyncpg.connect(c.database_url)
        try:
            return await conn.fetchrow(
                "SELECT log_id, idx, envelope FROM events WHERE event_hash = $1",
                bytes.fromhex(victim),
            )
        finally:
            await conn.close()

    async def store(row: asyncpg.Record, envelope: bytes) -> None:
        conn = await asyncpg.connect(c.database_url)
        try:
            await conn.execute(
                "UPDATE events SET envelope = $1, event_hash = $2 WHERE log_id = $3 AND idx = $4",
                envelope,
                hashlib.sha256(envelope).digest(),
                row["log_id"],
                row["idx"],
            )
        finally:
            await conn.close()

    row = asyncio.run(stored())
    original = bytes(row["envelope"])
    # An insider's edit: the envelope changed, and its hash made to match.
    data = json.loads(original)
    data["event"]["actor"] = "mallory@acme.example"
    edited = canonical_json(data)
    asyncio.run(store(row, edited))
    try:
        search(browser, c, f"message:{c.marker}")
        forged_hash = hashlib.sha256(edited).hexdigest()
        assert forged_hash in shown_hashes(browser)
        result = open_event(browser, forged_hash)
        assert result["verdict"].startswith("Verification FAILED"), result
        assert result["envelope"] == "ok"  # it hashes to the hash listed with it ...
        assert result["inclusion"] == "failed"  # ... but is not what the log sealed
        shot(browser, "event-failed")
    finally:
        asyncio.run(store(row, original))

    # A key that is not one is refused, and the pinned one is kept.
    browser.get(f"{c.base}/console/#/keys")
    area = wait(browser, lambda d: by_id(d, "pinned-keys"))
    area.clear()
    area.send_keys("not+a+key")
    by_id(browser, "save-keys").click()
    assert "malformed verifier key" in wait(browser, lambda d: text_of(d, "keys-status"))
    assert browser.execute_script("return localStorage.getItem('auditlog.pinned-keys')") == c.vkey

    pin(browser, c, NoteSigner.generate(ORIGIN).vkey())
    search(browser, c, f"message:{c.marker}")
    result = open_event(browser, c.hashes[0])
    assert result["verdict"].startswith("Verification FAILED"), result
    assert result["signature"] == "failed"


def test_a_pinned_witness_policy_is_enforced(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    from auditlog.core.cosignature import Cosigner

    c = console
    sign_in(browser, c, c.token)
    pin(browser, c, c.vkey)
    # This deployment has no witnesses: a policy that needs one fails every receipt.
    witness = Cosigner.generate("witness.example")
    browser.get(f"{c.base}/console/#/keys")
    policy = wait(browser, lambda d: by_id(d, "policy"))
    policy.send_keys(f"witness w {witness.vkey()}\nquorum w\n")
    by_id(browser, "save-keys").click()
    wait(browser, lambda d: "Saved" in text_of(d, "keys-status"))
    try:
        search(browser, c, f"message:{c.marker}")
        result = open_event(browser, c.hashes[0])
        assert result["verdict"].startswith("Verification FAILED: the witness quorum"), result
        assert result["inclusion"] == "ok"
        assert result["witnesses"] == "failed"
        browser.get(f"{c.base}/console/#/logs")
        logs_checked(browser)
        rows = [
            row
            for row in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
            if str(row.get_attribute("data-log")).startswith(c.topic)
        ]
        assert len(rows) == 2
        statuses = {
            row.find_element(By.CSS_SELECTOR, "[data-status]").get_attribute("data-status")
            for row in rows
        }
        assert statuses == {"bad"}
    finally:
        browser.execute_script("localStorage.removeItem('auditlog.policy')")


def test_a_viewer_token_sees_only_its_tenant_and_expires(
    browser: Any, console: Console, services: Services
) -> None:
    c = console

    def mint(body: dict[str, object], token: str = c.token) -> httpx.Response:
        return httpx.post(
            f"{c.base}/v1/viewer_tokens", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    minted = mint({"tenant_id": "acme", "ttl_seconds": 600})
    assert minted.status_code == 200, minted.text
    viewer = minted.json()["result"]
    assert viewer["scopes"] == ["search"]
    assert viewer["tenant_id"] == "acme"
    # Read-only: it can neither log nor mint.
    assert mint({"tenant_id": "acme"}, viewer["token"]).status_code == 401
    logged = httpx.post(
        f"{c.base}/v1/log",
        json={"event": {"message": "x"}},
        headers={"Authorization": f"Bearer {viewer['token']}"},
    )
    assert logged.status_code == 401

    sign_in(browser, c, viewer["token"])
    pin(browser, c, c.vkey)
    acme = [h for h, t in zip(c.hashes, TENANTS, strict=True) if t == "acme"]
    assert search(browser, c, f"message:{c.marker}") == f"Events 1 to {len(acme)} of {len(acme)}"
    assert sorted(shown_hashes(browser)) == sorted(acme)
    assert search(browser, c, "tenant_id:globex") == "No events"
    search(browser, c, f"message:{c.marker}")
    assert open_event(browser, acme[0])["verdict"].startswith("Verified in this browser")

    # What the endpoint refuses.
    assert mint({"ttl_seconds": 60}).status_code == 400  # no tenant
    assert mint({"tenant_id": "acme", "ttl_seconds": 86_401}).status_code == 400
    assert mint({"tenant_id": "acme", "ttl_seconds": 0}).status_code == 400
    tenant_admin = make_token(services, {"admin"}, "acme")
    assert mint({"tenant_id": "globex"}, tenant_admin).status_code == 403
    assert mint({}, tenant_admin).json()["result"]["tenant_id"] == "acme"

    short = mint({"tenant_id": "acme", "ttl_seconds": 3}).json()["result"]["token"]
    headers = {"Authorization": f"Bearer {short}"}
    body = {"query": f"message:{c.marker}"}
    assert httpx.post(f"{c.base}/v1/search", json=body, headers=headers).status_code == 200
    time.sleep(3.2)
    assert httpx.post(f"{c.base}/v1/search", json=body, headers=headers).status_code == 401


def test_the_console_works_from_the_keyboard(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    c = console
    sign_in(browser, c, c.token)
    pin(browser, c, c.vkey)
    browser.get(f"{c.base}/console/#/search")
    box = wait(browser, lambda d: by_id(d, "query"))
    assert browser.switch_to.active_element == box  # the page puts the cursor in the query
    box.clear()
    box.send_keys(f"message:{c.marker} actor:user1", Keys.ENTER)
    wait(browser, lambda d: text_of(d, "count") == "Events 1 to 1 of 1")
    link = browser.find_element(By.CSS_SELECTOR, "a.event-link")
    link.send_keys(Keys.ENTER)
    assert wait(browser, lambda d: text_of(d, "verdict")).startswith("Verified in this browser")
    assert text_of(browser, "event-hash") == c.hashes[1]


def test_an_embedding_page_hands_the_console_a_viewer_token(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    c = console
    answer = httpx.post(
        f"{c.base}/v1/viewer_tokens",
        json={"tenant_id": "globex"},
        headers={"Authorization": f"Bearer {c.token}"},
    )
    token = answer.json()["result"]["token"]
    # The product's page, on another origin: the console in an iframe, the token by postMessage.
    (tmp_path / "embed.html").write_text(
        f'<iframe id="audit" src="{c.base}/console/#/search" width="1200" height="700"></iframe>'
        "<script>const f = document.getElementById('audit');"
        "f.addEventListener('load', () => f.contentWindow.postMessage("
        f"{{type: 'auditlog-console-token', token: {json.dumps(token)}}}, {json.dumps(c.base)}));"
        "</script>"
    )
    browser.get(c.base + "/console/")
    browser.execute_script("sessionStorage.clear()")
    with static_files(tmp_path) as product:
        browser.get(f"{product}/embed.html")
        browser.switch_to.frame("audit")
        try:
            globex = [h for h, t in zip(c.hashes, TENANTS, strict=True) if t == "globex"]
            wait(browser, lambda d: by_id(d, "query"))
            n = len(globex)
            assert search_here(browser, f"message:{c.marker}") == f"Events 1 to {n} of {n}"
            assert sorted(shown_hashes(browser)) == sorted(globex)
        finally:
            browser.switch_to.default_content()


def test_the_logs_page_checks_consistency_with_the_last_checkpoint_seen(
    browser: Any, console: Console
) -> None:
    from selenium.webdriver.common.by import By

    c = console
    browser.get(f"{c.base}/console/#/keys")
    browser.execute_script("localStorage.clear()")
    pin(browser, c, c.vkey)

    def statuses() -> dict[str, str]:
        # One visit of the logs page (each visit remembers the checkpoints it verified).
        browser.get(f"{c.base}/console/#/keys")
        browser.get(f"{c.base}/console/#/logs")
        logs_checked(browser)
        rows = browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        out = {}
        for row in rows:
            log = row.get_attribute("data-log")
            if log.startswith(c.topic):
                cell = row.find_element(By.CSS_SELECTOR, "[data-status]")
                out[log] = cell.get_attribute("data-status")
        return out

    assert set(statuses().values()) <= {"first", "none"}
    # Another marker: the searches of the other tests stay as they were.
    later = f"later{secrets.token_hex(4)}"
    more = log_events(c.base, c.token, later, ("acme", "globex", "acme", "globex"))
    wait_sealed(c.base, c.token, more)
    assert set(statuses().values()) == {"ok"}
    shot(browser, "logs")
