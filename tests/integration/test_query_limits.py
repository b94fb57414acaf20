"""What one token can make the query service do and keep, on PostgreSQL (issue 21).

* Pages: a search or results page stops at ``AUDITLOG_QUERY_MAX_PAGE_BYTES`` of events (always
  one), and a client that pages by offset, going on from ``offset + len(events)``, sees every
  event once, in order; downloads of a result set and of an export stream every event too.
* Caps: a token holds at most ``AUDITLOG_QUERY_MAX_RESULT_SETS`` live result sets,
  ``_MAX_EXPORTS`` exports and ``_MAX_DOWNLOADS`` download URLs; the next one is 429
  ``TooManyRequests`` with ``Retry-After``, other tokens are unaffected, an expired one frees
  its place.
* Rate limits: past its budget a token gets 429 ``TooManyRequests``; unknown tokens get 401.

The query app runs in process (httpx's ASGITransport) over the session's database, with a log of
its own topic written directly (no sealer, no Kafka).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from auditlog.core.hashing import RFC6962_SHA256
from auditlog.pg.tokens import TokenInfo, create_token
from query.app import create_app, lifespan
from query.events import EVENT_OVERHEAD_BYTES
from query.settings import Settings
from tests.conftest import Services

pytestmark = pytest.mark.integration

PAGE_BYTES = 1024 * 1024
BIG = 300_000
HUGE = 1_200_000  # more than a whole page
# The log, in received_at order: envelope padding of each event.
SIZES = [BIG] * 4 + [HUGE] + [BIG] * 3 + [200] * 30
# A month no sealer writes: the rows stay in events' default partition.
BASE = datetime(2001, 1, 1, tzinfo=UTC)


def envelope(idx: int, pad: int) -> bytes:
    received = (BASE + timedelta(seconds=idx)).isoformat().replace("+00:00", "Z")
    return orjson.dumps(
        {"event": {"message": f"m{idx}", "new": "x" * pad}, "received_at": received},
        option=orjson.OPT_SORT_KEYS,
    )


async def write_log(conn: asyncpg.Connection, topic: str) -> list[bytes]:
    """A log of SIZES' events in ``topic``; returns their envelopes in order."""
    log_id = f"{topic}-0"
    envelopes = [envelope(i, pad) for i, pad in enumerate(SIZES)]
    await conn.execute(
        "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, root, size,"
        " checkpoint) VALUES ($1, $2, $3, 0, $4, $5, $6, $7)",
        log_id, f"limits.test/{log_id}", topic, RFC6962_SHA256, bytes(32), len(SIZES),
        f"limits.test/{log_id}\n{len(SIZES)}\n\n",
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,"
        " message) VALUES ($1, $2, $3, $4, $5, $2, $6)",
        [
            (log_id, i, hashlib.sha256(env).digest(), env, BASE + timedelta(seconds=i), f"m{i}")
            for i, env in enumerate(envelopes)
        ],
    )
    return envelopes


def settings(services: Services, topic: str, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "AUDITLOG_DATABASE_URL": services.database_url,
            "AUDITLOG_TOPIC": topic,
            "AUDITLOG_QUERY_MAX_PAGE_BYTES": str(PAGE_BYTES),
            **{f"AUDITLOG_QUERY_{k.upper()}": v for k, v in extra.items()},
        }
    )


def _with_state(app: Any, state: dict[str, Any]) -> Any:
    """What uvicorn does for a lifespan that yields state: a copy in every request's scope."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["state"] = dict(state)
        await app(scope, receive, send)

    return asgi


class Client:
    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http, self.token = http, token

    async def post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return await self.http.post(path, content=orjson.dumps(body), headers=headers)

    async def download(self, dest_url: str) -> bytes:
        resp = await self.http.get(dest_url.removeprefix("http://test"))
        assert resp.status_code == 200, resp.text
        return resp.content


@asynccontextmanager
async def query_service(
    services: Services, **extra: str
) -> AsyncIterator[tuple[Client, asyncpg.Connection, list[bytes], list[tuple[str, TokenInfo]]]]:
    """The query app over a fresh topic's log; yields a client (first token), a connection, the
    log's envelopes and two tokens (secret and grant), neither bound to a tenant."""
    topic = f"limits-{secrets.token_hex(4)}"
    conn = await asyncpg.connect(services.database_url)
    try:
        envelopes = await write_log(conn, topic)
        tokens = [await create_token(conn, f"limits-{i}", {"search"}) for i in range(2)]
        config = settings(services, topic, **extra)
        async with lifespan(config) as state:
            transport = httpx.ASGITransport(app=_with_state(create_app(config), state))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield Client(http, tokens[0][0]), conn, envelopes, tokens
    finally:
        await conn.close()


def expected_pages(sizes: Sequence[int], limit: int, cap: int, log_id: str) -> list[int]:
    """The page lengths the byte cap gives, paging on from where each page stopped (no proofs:
    the log is not Pangea-verifiable)."""
    overhead = EVENT_OVERHEAD_BYTES + len(log_id)
    pages, start = [], 0
    while start < len(sizes):
        used, n = 0, 0
        for size in sizes[start : start + limit]:
            if n and used + size + overhead > cap:
                break
            used += size + overhead
            n += 1
        pages.append(n)
        start += n
    return pages


async def test_pages_stop_at_the_byte_cap_and_paging_by_offset_sees_every_event(
    services: Services,
) -> None:
    async with query_service(services) as (client, _, envelopes, _tokens):
        sizes = [len(e) for e in envelopes]
        first = await client.post(
            "/v1/search", {"query": 'message:""', "order": "asc", "limit": 10}
        )
        assert first.status_code == 200, first.text
        result = first.json()["result"]
        assert result["count"] == len(envelopes)
        log_id = result["events"][0]["log"]
        want = expected_pages(sizes, 10, PAGE_BYTES, log_id)
        assert want[:4] == [3, 1, 1, 10]  # the cap, not the limit, ends the first pages
        pages = [result["events"]]
        assert len(first.content) < PAGE_BYTES + 64 * 1024
        offset = len(result["events"])
        while offset < result["count"]:
            resp = await client.post(
                "/v1/results", {"id": result["id"], "limit": 10, "offset": offset}
            )
            assert resp.status_code == 200, resp.text
            page = resp.json()["result"]
            assert page["count"] == len(envelopes) and page["events"]
            pages.append(page["events"])
            if len(page["events"]) > 1:
                assert len(resp.content) < PAGE_BYTES + 64 * 1024
            offset += len(page["events"])
        assert [len(p) for p in pages] == want
        # The estimate bounds what the events really take in the answer.
        overhead = EVENT_OVERHEAD_BYTES + len(log_id)
        for event in (e for p in pages for e in p):
            assert len(orjson.dumps(event)) <= len(orjson.dumps(event["envelope"])) + overhead
        seen = [orjson.dumps(e["envelope"], option=orjson.OPT_SORT_KEYS) for p in pages for e in p]
        assert seen == envelopes  # every event once, in order
        assert [e["leaf_index"] for p in pages for e in p] == list(range(len(envelopes)))
        # Small events fill a page to its limit.
        tail = await client.post("/v1/results", {"id": result["id"], "limit": 10, "offset": 8})
        assert len(tail.json()["result"]["events"]) == 10

        # Downloads stream the whole result set, and a whole export, in chunks of the cap.
        link = await client.post(
            "/v1/download_results", {"result_id": result["id"], "format": "json"}
        )
        assert link.status_code == 200, link.text
        payload = orjson.loads(await client.download(link.json()["result"]["dest_url"]))
        assert [
            orjson.dumps(e["envelope"], option=orjson.OPT_SORT_KEYS) for e in payload["events"]
        ] == envelopes
        export = await client.post("/v1/export", {"format": "json", "order": "asc"})
        assert export.status_code == 202, export.text
        request_id = export.json()["request_id"]
        link = await client.post(
            "/v1/download_results", {"request_id": request_id, "format": "json"}
        )
        assert link.status_code == 200, link.text
        payload = orjson.loads(await client.download(link.json()["result"]["dest_url"]))
        assert [
            orjson.dumps(e["envelope"], option=orjson.OPT_SORT_KEYS) for e in payload["events"]
        ] == envelopes
        csv_link = await client.post(
            "/v1/download_results", {"request_id": request_id, "format": "csv"}
        )
        lines = (await client.download(csv_link.json()["result"]["dest_url"])).decode().splitlines()
        assert len(lines) == 1 + len(envelopes)


def assert_too_many(resp: httpx.Response, what: str) -> int:
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["status"] == "TooManyRequests"
    assert what in body["summary"], body["summary"]
    return int(resp.headers["retry-after"])


async def test_a_token_holds_at_most_its_caps_of_result_sets_exports_and_downloads(
    services: Services,
) -> None:
    caps = {"max_result_sets": "3", "max_exports": "2", "max_downloads": "2"}
    async with query_service(services, **caps) as (client, conn, _, tokens):
        token_ids = [info.token_id for _, info in tokens]
        search = {"query": "m1", "limit": 1}
        ids = []
        for _ in range(3):
            resp = await client.post("/v1/search", search)
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["result"]["id"])
        full = await client.post("/v1/search", search)
        wait = assert_too_many(full, "AUDITLOG_QUERY_MAX_RESULT_SETS")
        assert 47 * 3600 < wait <= 48 * 3600  # when the oldest result set expires
        assert (
            await conn.fetchval("SELECT count(*) FROM search_results WHERE id = ANY($1)", ids) == 3
        )
        # Another token has its own cap; an expired result set frees its place.
        assert (await client.post("/v1/search", search, token=tokens[1][0])).status_code == 200
        await conn.execute(
            "UPDATE search_results SET expires_at = now() - interval '1 second' WHERE id = $1",
            ids[0],
        )
        assert (await client.post("/v1/search", search)).status_code == 200
        assert (await client.post("/v1/search", search)).status_code == 429

        exports = []
        for _ in range(2):
            resp = await client.post("/v1/export", {"format": "csv"})
            assert resp.status_code == 202, resp.text
            exports.append(resp.json()["request_id"])
        assert_too_many(
            await client.post("/v1/export", {"format": "csv"}), "AUDITLOG_QUERY_MAX_EXPORTS"
        )
        assert (
            await client.post("/v1/export", {"format": "csv"}, token=tokens[1][0])
        ).status_code == 202

        # Downloads count whichever search or export they were minted for.
        for body in ({"result_id": ids[1]}, {"request_id": exports[0]}):
            resp = await client.post("/v1/download_results", body)
            assert resp.status_code == 200, resp.text
        wait = assert_too_many(
            await client.post("/v1/download_results", {"result_id": ids[2]}),
            "AUDITLOG_QUERY_MAX_DOWNLOADS",
        )
        assert 3000 < wait <= 3600  # 60 minutes
        # Each download names the token that minted it (migration 0005).
        owners = await conn.fetch(
            "SELECT DISTINCT token_id FROM downloads WHERE source_id = ANY($1)", ids + exports
        )
        assert [r["token_id"] for r in owners] == [token_ids[0]]
        await conn.execute(
            "UPDATE downloads SET expires_at = now() - interval '1 second' WHERE source_id = $1",
            ids[1],
        )
        assert (await client.post("/v1/download_results", {"result_id": ids[2]})).status_code == 200


async def test_past_its_rate_a_token_gets_429_and_an_unknown_token_401(services: Services) -> None:
    # One unit a second, 45 saved up: two searches (20 each) and five receipts, then nothing.
    limits = {"rate_per_token": "1", "burst_per_token": "45"}
    async with query_service(services, **limits) as (client, _, _envelopes, tokens):
        for _ in range(2):
            assert (await client.post("/v1/search", {"query": "m1"})).status_code == 200
        wait = assert_too_many(await client.post("/v1/search", {"query": "m1"}), "token")
        assert 14 <= wait <= 15  # 15 units short at one a second
        # A poll costs one unit (an unknown request: 404 once admitted).
        headers = {"Authorization": f"Bearer {client.token}"}
        codes = [
            (await client.http.get("/request/prq_none", headers=headers)).status_code
            for _ in range(8)
        ]
        assert codes[:5] == [404] * 5 and codes[-1] == 429, codes
        assert (
            await client.post("/v1/search", {"query": "m1"}, token=tokens[1][0])
        ).status_code == 200
        nobody = await client.post("/v1/search", {"query": "m1"}, token="alt_nobody_x")
        assert nobody.status_code == 401
