"""bench/race (the race's Go load generator) stamps each entry with the time it is due.

Sealed latency is read back from those timestamps, so they must be the schedule's own: the entry
of request i carries ``started + i * interval`` exactly, every event of a request the same, and
the schedule starts only once the entries are built (it used to start at a time fixed before
building them, so a long run at a high rate counted up to 0.7 s of building as latency).
Served here by a stand-in that answers every request at once and keeps what it got.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.go_tools import ROOT, go_build
from tests.http_standin import standing

SCRATCH = "0000-00-00T00:00:00.000000Z"


@pytest.fixture(scope="module")
def race_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_build(ROOT / "bench" / "race", tmp_path_factory.mktemp("race") / "race")


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, float, dict[str, Any]]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with received.lock:
                received.requests.append((self.path, time.time(), json.loads(body)))
            answer = b'{"status":"Success"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    with standing(Handler) as url:
        yield url, received


def write_corpus(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"message": f"event {i}", "actor": "a", "timestamp": "2020-01-01T00:00:00Z"})
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_race(
    binary: Path, url: str, tmp_path: Path, rate: float, seconds: float, bulk: int
) -> dict[str, Any]:
    """The load generator's result: ``rate`` entries/s for ``seconds``, from 1,000 entries."""
    out = subprocess.run(
        [str(binary), "-target", "auditlog", "-url", url, "-token", "t",
         "-corpus", str(write_corpus(tmp_path / "corpus.jsonl", 1000)),
         "-rate", str(rate), "-duration", f"{seconds}s", "-bulk", str(bulk)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def micros(stamp: str) -> int:
    at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(at.timestamp() * 1_000_000)


@pytest.mark.parametrize("bulk", [1, 25])
def test_each_entry_carries_its_requests_due_time(
    race_binary: Path, server: tuple[str, Received], tmp_path: Path, bulk: int
) -> None:
    url, received = server
    rate, seconds = 2000, 0.5
    result = run_race(race_binary, url, tmp_path, rate, seconds, bulk)
    total = int(rate * seconds)
    assert result["events"] == total
    assert result["errors"] == 0
    started = result["started_unix_us"]
    assert started >= result["built_unix_us"], "the schedule started before its entries were built"
    interval_us = 1_000_000 * bulk / rate
    by_due: dict[int, list[str]] = {}
    for path, at, body in received.requests:
        assert path == ("/v1/log" if bulk == 1 else "/v2/log")
        events = [body["event"]] if bulk == 1 else [item["event"] for item in body["events"]]
        stamps = {event["timestamp"] for event in events}
        assert len(stamps) == 1, "every event of a request is due when the request is"
        (stamp,) = stamps
        assert stamp != SCRATCH
        due = micros(stamp)
        assert at * 1_000_000 >= due - 1_000, "sent before it was due"
        by_due[due] = [event["message"] for event in events]
    dues = sorted(by_due)
    assert len(dues) == total // bulk
    # Request i is due at started + i * interval, to the microsecond the stamps keep.
    for i, due in enumerate(dues):
        assert abs(due - (started + i * interval_us)) <= 1
    # The entries in schedule order are the corpus's in order: the stamps went to the right ones.
    assert [m for due in dues for m in by_due[due]] == [f"event {i}" for i in range(total)]


def test_accepted_counts_only_the_events_of_requests_answered_2xx(
    race_binary: Path, tmp_path: Path
) -> None:
    # bench_race waits for, and divides its CPU by, the accepted events: counting refused ones
    # had it wait out its deadline after any 503, idle CPU and all.
    refused = 0
    lock = threading.Lock()

    class Refusing(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            nonlocal refused
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            first = int(body["events"][0]["event"]["message"].split()[1])
            status = 503 if first % 3 == 0 else 200
            if status == 503:
                with lock:
                    refused += len(body["events"])
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    bulk, rate, seconds = 10, 2000, 0.5
    with standing(Refusing) as url:
        result = run_race(race_binary, url, tmp_path, rate, seconds, bulk)
    assert result["events"] == 1000
    assert refused > 0
    assert result["statuses"]["503"] * bulk == refused
    assert result["accepted"] == result["events"] - refused == result["statuses"]["200"] * bulk
