"""The console's pages as a test drives them (tests/e2e/test_console.py): its pipeline's
events, and sign-in, pinning, searching, opening events and the logs page in a Selenium browser.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ORIGIN = "console.e2e.test"
TENANTS = ("acme", "acme", "globex", "acme", "globex")


@dataclass
class Console:
    base: str
    token: str  # log, search and admin
    vkey: str
    database_url: str
    topic: str
    marker: str
    hashes: list[str]  # of the events logged, in TENANTS order


def log_events(base: str, token: str, marker: str, tenants: tuple[str, ...]) -> list[str]:
    hashes = []
    for i, tenant in enumerate(tenants):
        event = {
            "message": f"{marker} changed setting {i}",
            "actor": f"user{i}@{tenant}.example",
            "action": "update",
            "target": f"project-{i}",
            "status": "success",
            "tenant_id": tenant,
        }
        answer = httpx.post(
            f"{base}/v1/log",
            json={"event": event, "verbose": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        hashes.append(answer.json()["result"]["hash"])
    return hashes


def wait_sealed(base: str, token: str, hashes: list[str]) -> None:
    deadline = time.monotonic() + 30
    for h in hashes:
        while (
            httpx.get(f"{base}/v1/receipts/{h}", headers={"Authorization": f"Bearer {token}"})
        ).status_code != 200:
            assert time.monotonic() < deadline, "events were not sealed"
            time.sleep(0.1)


def shot(driver: Any, name: str) -> None:
    folder = os.environ.get("AUDITLOG_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def wait(driver: Any, check: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(check)


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text_of(driver: Any, element_id: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(by_id(driver, element_id).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def sign_in(driver: Any, c: Console, token: str) -> None:
    driver.get(f"{c.base}/console")  # redirected to /console/
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{c.base}/console/#/signin")
    wait(driver, lambda d: by_id(d, "token"))
    by_id(driver, "token").send_keys(token)
    shot(driver, "signin")
    by_id(driver, "token").submit()
    wait(driver, lambda d: by_id(d, "query"))


def pin(driver: Any, c: Console, vkey: str) -> None:
    driver.get(f"{c.base}/console/#/keys")
    area = wait(driver, lambda d: by_id(d, "pinned-keys"))
    area.clear()
    area.send_keys(vkey)
    by_id(driver, "save-keys").click()
    wait(driver, lambda d: "Saved" in text_of(d, "keys-status"))


def search(driver: Any, c: Console, query: str, page_size: str = "20") -> str:
    driver.get(f"{c.base}/console/#/search")
    return search_here(driver, query, page_size)


def search_here(driver: Any, query: str, page_size: str = "20") -> str:
    """Search from the search page the browser shows; the results' count line."""
    box = wait(driver, lambda d: by_id(d, "query"))
    box.clear()
    box.send_keys(query)
    by_id(driver, "limit").clear()
    by_id(driver, "limit").send_keys(page_size)
    by_id(driver, "search-button").click()
    return str(wait(driver, lambda d: text_of(d, "count")))


def open_event(driver: Any, event_hash: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'a[href="#/event/{event_hash}"]').click()
    verdict = wait(driver, lambda d: text_of(d, "verdict"))
    steps = {
        li.get_attribute("data-step"): li.get_attribute("data-status")
        for li in driver.find_elements(By.CSS_SELECTOR, "#steps li")
    }
    return {"verdict": verdict, **steps}


def logs_checked(driver: Any) -> None:
    """Wait until the logs page has checked every log (its table is no longer busy)."""

    def done(d: Any) -> bool:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )

        try:
            return by_id(d, "logs").get_attribute("aria-busy") == "false"
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait(driver, done, timeout=60)


def shown_hashes(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "a.event-link")
    return [str(a.get_attribute("href")).rsplit("/", 1)[1] for a in links]
