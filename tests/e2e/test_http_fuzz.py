"""An HTTP fuzz run over the OpenAPI document, against the running pipeline.

The document is loaded from the running service (GET /v1/openapi.json). Every operation gets a
bounded number of schemathesis-generated requests, valid-shaped and malformed (negative mode),
each sent with a valid bearer token and without one; then the hand-picked hostile requests of
tests/e2e/http_hostile.py (wrong content types, invalid UTF-8, deep nesting, huge integers,
empty bodies, bodies over the limit, every field of every type, out-of-range path and query
parameters, bad Authorization headers), to ``auditlog serve`` (ingest and query; its body limit
set to 3 MiB, not the default, so the test sees the setting applied) and to a standalone
``auditlog query`` (its 1 MiB default). What must hold:

* no 5xx, except 503 with Retry-After (overload) for a valid-shaped request; a malformed or
  hostile one is the caller's mistake and never gets a 503;
* the body is a Pangea JSON envelope, except the documented non-Pangea answers (tiles, receipts,
  checkpoints, consistency proofs, downloads, the OpenAPI document, metrics);
* the hostile requests whose answer is known get it (400, 401, 404, 413);
* afterwards every process is alive, every event acknowledged with 200 is sealed (none was
  dead-lettered after the client got its hash), and a new event is logged, sealed and served.

Generation is derandomized (the same requests every run) and bounded: the whole module takes
well under 90 s on two cores. The counts show in pytest's summary ("HTTP fuzz: N tried, ...").
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException
from schemathesis import Case, GenerationMode

from auditlog.kafka.clients import dlq_topic, ensure_topics
from query import openapi
from tests.conftest import Services, delete_topics, record_fuzz
from tests.e2e.conftest import _free_port, make_token, pipeline_env, start_pipeline, stop_processes
from tests.e2e.http_hostile import (
    Hostile,
    auth_cases,
    get_cases,
    post_cases,
    type_cases,
)

pytestmark = pytest.mark.e2e

EXAMPLES = 30  # per operation and generation mode; each is sent twice (token, no token)
# Not the 4 MiB default: serve must apply the setting (the larger of the two) to every route.
INGEST_LIMIT = 3 * 1024 * 1024
QUERY_LIMIT = 1024 * 1024  # the default, what the standalone query service gets
ENVELOPE = {"request_id", "request_time", "response_time", "status", "summary", "result"}
# Operations whose successful answer is text or bytes by design (their errors are envelopes).
NOT_PANGEA = {
    "/v1/logs/{log}/checkpoint",
    "/v1/logs/{log}/checkpoints/{size}",
    "/v1/logs/{log}/tile/{rest}",
    "/v1/logs/{log}/receipts/{index}",
    "/v1/logs/{log}/pruned",  # signed statements: a note, and a list of notes (docs/retention.md)
    "/v1/logs/{log}/erasures",
    "/v1/receipts/{hash}",
    "/v1/receipts",
    "/v1/proofs/consistency",
    "/v1/downloads/{secret}/{name}",
    "/v1/openapi.json",
    "/metrics",
    "/console",  # the web console: a redirect, its page and its files
    "/console/",
    "/console/{name}",
}
QUERY_POSTS = ("/v1/search", "/v1/results", "/v1/root", "/v1/download_results", "/v1/export")
INGEST_POSTS = ("/v1/log", "/v2/log", "/v2/log_async", "/v1/log_stream")


@dataclass
class Deployment:
    base: str  # auditlog serve
    query_base: str  # auditlog query alone
    token: str
    log: str
    procs: dict[str, subprocess.Popen[bytes]]
    work: Path


@dataclass
class Tally:
    tried: int = 0
    problems: list[str] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # event hash -> what logged it

    def judge(
        self,
        what: str,
        response: httpx.Response | schemathesis.Response,
        *,
        malformed: bool,
        plain_ok: bool,
    ) -> None:
        self.tried += 1
        status, content = response.status_code, response.content
        problem = _problem(status, response.headers, content, malformed, plain_ok)
        if problem is not None:
            self.problems.append(f"{what}: {problem}")
        elif status == 200 and _path(response) in ("/v1/log", "/v2/log"):
            result = orjson.loads(content)["result"]
            for item in result.get("results", [result]):
                self.acknowledged[item["hash"]] = what

    def crashed(self, what: str, exc: Exception) -> None:
        self.tried += 1
        self.problems.append(f"{what}: no answer ({type(exc).__name__}: {exc})"[:500])


def _path(response: httpx.Response | schemathesis.Response) -> str:
    if isinstance(response, httpx.Response):
        return response.request.url.path
    return urlsplit(response.request.url or "").path


def _unsealed(base: str, token: str, acknowledged: dict[str, str], timeout: float) -> list[str]:
    """The acknowledged events still without a receipt after ``timeout`` seconds."""
    pending = dict(acknowledged)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        while pending and time.monotonic() < deadline:
            for digest in list(pending):
                if client.get(f"/v1/receipts/{digest}").status_code == 200:
                    del pending[digest]
            time.sleep(0.2 if pending else 0)
    return [f"{what}: acknowledged event {digest} never sealed" for digest, what in pending.items()]


def _problem(
    status: int, headers: Mapping[str, object], body: bytes, malformed: bool, plain_ok: bool
) -> str | None:
    """What is wrong with an answer, or None. ``headers`` has lowercase names (or ignores case)."""
    if status >= 500:
        overload = status == 503 and "retry-after" in headers
        if malformed or not overload:
            return f"HTTP {status}: {body[:300]!r}"
    if plain_ok and (status == 200 or 300 <= status < 400):  # /console redirects to /console/
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"HTTP {status}, not JSON: {body[:200]!r}"
    if not isinstance(doc, dict) or not doc.keys() >= ENVELOPE:
        return f"HTTP {status}, not a Pangea envelope: {body[:200]!r}"
    return None


def _start_query(env: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    with (work / "query.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "query"],
            env={**env, "AUDITLOG_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_processes([proc])
    pytest.fail(f"auditlog query did not start:\n{(work / 'query.log').read_text()[-3000:]}")


def _sealed_receipt(base: str, token: str, event_hash: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(
            f"{base}/v1/receipts/{event_hash}", headers={"Authorization": f"Bearer {token}"}
        )
        if r.status_code == 200:
            return r.text
        assert time.monotonic() < deadline, f"event {event_hash} not sealed: {r.text}"
        time.sleep(0.1)


def _log_one(base: str, token: str, message: str) -> str:
    r = httpx.post(
        f"{base}/v1/log",
        json={"event": {"message": message, "actor": "fuzz"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    digest: str = r.json()["result"]["hash"]
    return digest


@pytest.fixture(scope="module")
def deployment(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    from auditlog.cli.keys import write_signing_key

    topic = f"audit.fuzz-{secrets.token_hex(4)}"
    asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=1))
    work = tmp_path_factory.mktemp("fuzz-pipeline")
    write_signing_key(work / "log.skey", "fuzz.e2e.test")
    env = pipeline_env(
        services,
        topic,
        "fuzz.e2e.test",
        work / "log.skey",
        AUDITLOG_INGEST_MAX_BODY_BYTES=str(INGEST_LIMIT),
        AUDITLOG_QUERY_MAX_BODY_BYTES=str(QUERY_LIMIT),
    )
    procs, base = start_pipeline(work, env)
    named = {"serve": procs[0], "sealer": procs[1]}
    try:
        query, query_base = _start_query(env, work)
        named["query"] = query
        token = make_token(services, {"log", "search"})
        _sealed_receipt(base, token, _log_one(base, token, "fuzz seed"))
        log = f"{topic}-0"
        yield Deployment(base, query_base, token, log, named, work)
    finally:
        stop_processes(list(named.values()))
        asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


def _generate(
    operation: schemathesis.APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    log: str | None = None,
) -> list[Case[Any]]:
    """Up to EXAMPLES cases, the same every run; with ``log``, its path parameter is that log."""
    cases: list[Case[Any]] = []
    fixed = {"log": log} if log is not None else None

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def collect(case: Case[Any]) -> None:
        cases.append(case)

    # Nothing to make negative (no parameters, no body) raises: the positive cases cover it.
    with contextlib.suppress(HypothesisException):
        collect()
    return cases


def _send_case(
    tally: Tally, session: requests.Session, d: Deployment, case: Case[Any], malformed: bool
) -> None:
    """Send ``case`` with the valid token, then without any Authorization header."""
    plain_ok = case.operation.path in NOT_PANGEA
    case.headers.pop("Authorization", None)  # a generated bearer: http_hostile sends bad ones
    for auth in (True, False):
        headers = {"Authorization": f"Bearer {d.token}"} if auth else None
        what = f"{case.operation.label} {'token' if auth else 'no token'} {case.formatted_path!r}"
        try:
            response = case.call(base_url=d.base, session=session, headers=headers, timeout=15)
        except (requests.ConnectionError, requests.Timeout) as exc:
            tally.crashed(what, exc)
            continue
        except (requests.RequestException, ValueError, UnicodeError):
            continue  # the client refused to send it (a header it cannot encode): nothing sent
        tally.judge(
            f"{what} body={str(case.body)[:200]}", response, malformed=malformed, plain_ok=plain_ok
        )


def _send_hostile(
    tally: Tally, client: httpx.Client, base: str, token: str, h: Hostile, *, both: bool = True
) -> None:
    """Send ``h`` with the token and, if ``both``, without one; judge every answer."""
    plain_ok = h.path.split("?")[0].startswith(("/v1/logs/", "/v1/receipts/", "/v1/proofs/"))
    for auth in (True, False) if both else (True,):
        headers: dict[bytes, bytes] = (
            {b"Authorization": b"Bearer " + token.encode()} if auth else {}
        )
        if not auth and h.authorization is not None:
            headers[b"Authorization"] = h.authorization
        if h.content_type is not None:
            headers[b"Content-Type"] = h.content_type.encode()
        body = h.body
        content: bytes | Iterator[bytes] | None = body
        if h.streamed and body is not None:
            content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
        what = f"{h.method} {base}{h.path[:80]} [{h.name}] {'token' if auth else 'no token'}"
        try:
            response = client.request(h.method, f"{base}{h.path}", content=content, headers=headers)
        except httpx.LocalProtocolError:
            continue  # the client refused to send it: nothing reached the service
        except httpx.TransportError as exc:
            if h.body is not None and len(h.body) > QUERY_LIMIT:
                # A refused large body may close the connection under the rest of the upload.
                tally.tried += 1
                continue
            tally.crashed(what, exc)
            continue
        tally.judge(what, response, malformed=True, plain_ok=plain_ok)
        # The expectation is for the valid token, or for the bad Authorization header if any.
        status = response.status_code
        if auth != (h.authorization is not None) and h.expect not in (None, status):
            tally.problems.append(f"{what}: HTTP {status}, expected {h.expect}")


def _request_fields(path: str) -> tuple[list[str], list[str]]:
    """The documented fields of the operation's request body, and those of an event."""
    doc = openapi.document()
    schemas = doc["components"]["schemas"]
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = schemas[ref["$ref"].rsplit("/", 1)[1]]
    return sorted(body["properties"]), sorted(schemas["Event"]["properties"])


def test_fuzz_every_operation_then_everything_still_answers(deployment: Deployment) -> None:
    d = deployment
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(
        f"{d.base}/v1/openapi.json", config=schemathesis.Config()
    )
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    documented = {f"{m.upper()} {p}" for p, ops in openapi.document()["paths"].items() for m in ops}
    # schemathesis leaves out the document's own URL, which it has just fetched.
    assert {op.label for op in operations} == documented - {"GET /v1/openapi.json"}
    tally = Tally()
    with requests.Session() as session:
        for operation in operations:
            runs: list[tuple[GenerationMode, str | None]] = [
                (GenerationMode.POSITIVE, None),
                (GenerationMode.NEGATIVE, None),
            ]
            if "{log}" in operation.path:  # and once more against the log that has entries
                runs += [(GenerationMode.POSITIVE, d.log), (GenerationMode.NEGATIVE, d.log)]
            for mode, log in runs:
                for case in _generate(operation, mode, log):
                    _send_case(tally, session, d, case, malformed=mode.is_negative)
    fuzzed = tally.tried
    with httpx.Client(timeout=30) as client:
        for path in (*INGEST_POSTS, *QUERY_POSTS):
            for h in post_cases(path, INGEST_LIMIT):
                _send_hostile(tally, client, d.base, d.token, h)
        for h in (*get_cases(d.log), *auth_cases(d.log)):
            _send_hostile(tally, client, d.base, d.token, h)
        for path in (*INGEST_POSTS, *QUERY_POSTS):
            fields, event_fields = _request_fields(path)
            for h in type_cases(path, fields, event_fields):
                _send_hostile(tally, client, d.base, d.token, h, both=False)
        for path in QUERY_POSTS:
            for h in post_cases(path, QUERY_LIMIT):
                _send_hostile(tally, client, d.query_base, d.token, h)
        for h in get_cases(d.log):
            _send_hostile(tally, client, d.query_base, d.token, h)
    print(
        f"HTTP fuzz: {len(operations)} operations, {fuzzed} generated requests,"
        f" {tally.tried - fuzzed} hostile, {time.monotonic() - started:.1f} s"
    )
    dead = {name: p.returncode for name, p in d.procs.items() if p.poll() is not None}
    tally.problems += [f"auditlog {name} died (exit code {code})" for name, code in dead.items()]
    if not dead:
        # Every event the service acknowledged is sealed: none was dead-lettered after a 200.
        tally.problems += _unsealed(d.base, d.token, tally.acknowledged, timeout=30)
    record_fuzz("HTTP fuzz", tally.tried, len(tally.problems))
    assert not dead, f"processes died during the fuzz run: {dead}" + _crashes(d.work)
    # Still serving: a good event is logged, sealed, and its receipt served by both processes.
    digest = _log_one(d.base, d.token, "after the fuzz run")
    _sealed_receipt(d.base, d.token, digest)
    _sealed_receipt(d.query_base, d.token, digest)
    assert not tally.problems, (
        f"{len(tally.problems)} bad answers:\n" + "\n".join(tally.problems[:40]) + _crashes(d.work)
    )


def _crashes(work: Path) -> str:
    """The distinct unhandled exceptions the services logged, last line of each traceback."""
    seen: dict[str, int] = {}
    for name in ("serve", "query"):
        for line in (work / f"{name}.log").read_text(errors="replace").splitlines():
            if '"unhandled"' in line:
                last = orjson.loads(line).get("exception", "").strip().splitlines()[-1:]
                key = f"{name}: {last[0] if last else line[:200]}"
                seen[key] = seen.get(key, 0) + 1
    return "".join(f"\n{n} x {what}" for what, n in seen.items())
