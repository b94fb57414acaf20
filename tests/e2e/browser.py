"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver.

scripts/browser.sh (run by scripts/test.sh) installs both. Where they are missing the browser
tests skip, and fail under ``CI=true`` (tests/go_tools.py's rule).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.go_tools import missing
from tests.http_standin import standing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CONSOLE = Path(__file__).resolve().parents[2] / "query" / "console"


@contextlib.contextmanager
def chromium(downloads: Path | None = None) -> Iterator[Any]:
    """A headless Chromium session (a Selenium WebDriver), quit on exit."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            missing(f"{path} is missing: scripts/browser.sh installs Debian's chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860"):
        options.add_argument(arg)
    # Nothing but the page under test: no component updates, no sign-in, no metrics.
    options.add_argument("--disable-background-networking")
    options.add_argument("--disable-dev-shm-usage")
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(60)
    if downloads is not None:
        # Headless Chromium saves downloads only when told where, over the DevTools protocol.
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    try:
        yield driver
    finally:
        driver.quit()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def static_files(directory: Path) -> Iterator[str]:
    """``directory`` served on a loopback port of its own: the base URL."""
    with standing(partial(_Quiet, directory=str(directory))) as url:
        yield url


@contextlib.contextmanager
def module_page() -> Iterator[Any]:
    """A browser on a page of the console's origin, ready for :func:`run` (no service)."""
    with console_files() as base, chromium() as driver:
        # Any page of that origin will do: the modules are imported by the scripts run.
        driver.get(f"{base}/verify.js")
        driver.base = base
        yield driver


def run(driver: Any, body: str, *args: object) -> Any:
    """Run ``body`` (an async function body; ``mod(name)`` imports a console module) in the
    page of :func:`module_page` and return its result; a JavaScript exception fails the test."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "const args = Array.from(arguments).slice(0, -1);"
        f"const mod = (name) => import('{driver.base}/' + name);"
        f"(async () => {{ {body} }})().then((value) => done({{value}}),"
        " (e) => done({error: String(e && e.stack || e)}));"
    )
    answer = driver.execute_async_script(script, *args)
    assert "error" not in answer, answer["error"]
    return answer["value"]


def console_files() -> contextlib.AbstractContextManager[str]:
    """The console's files alone (no service behind them). Loopback is a secure context, so
    WebCrypto is there as on an HTTPS deployment."""
    return static_files(CONSOLE)
