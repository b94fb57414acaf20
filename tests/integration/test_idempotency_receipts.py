"""The query service's GET /v1/receipts?idempotency_key=: a retry's client finds the receipt of
the event sealed under its key, in its own namespace (its token, its tenant), on PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from auditlog.core.receipt import Receipt, verify_receipt
from auditlog.pg.tokens import create_token
from query.app import create_app, lifespan
from query.settings import Settings
from tests.conftest import Services
from tests.integration.test_idempotency_claims import HASHER, SIGNER, _heads, _item, _seal, pool

pytestmark = pytest.mark.integration

__all__ = ["pool"]  # the fixture, shared


def _with_state(app: Any, state: dict[str, Any]) -> Any:
    """What uvicorn does for a lifespan that yields state: a copy in every request's scope."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["state"] = dict(state)
        await app(scope, receive, send)

    return asgi


async def test_a_retry_finds_the_receipt_of_the_event_sealed_under_its_key(
    services: Services, pool: asyncpg.Pool
) -> None:
    # The retry was answered with the hash of its own envelope, never sealed; the lookup by key
    # (its own token as principal, its tenant) answers the receipt of the one that was.
    producer, producer_info = await create_token(pool, "idem-producer", {"log"})
    tenant, tenant_info = await create_token(pool, "idem-acme", {"log"}, tenant_id="acme")
    reader, _ = await create_token(pool, "idem-reader", {"search"})
    admin, _ = await create_token(pool, "idem-admin", {"admin"})
    mine, theirs = f"token:{producer_info.token_id}", f"token:{tenant_info.token_id}"
    [head] = await _heads(pool, 1)
    first = _item(0, "pay", "order-1", principal=mine)
    retry = _item(1, "pay", "order-1", principal=mine, attempt=1)
    acme = _item(2, "acme pays", "order-1", principal=theirs, tenant="acme")
    result, _ = await _seal(pool, head, [first, retry, acme])
    assert result.duplicates == 1
    settings = Settings.from_env({"AUDITLOG_DATABASE_URL": services.database_url})
    async with lifespan(settings) as state:
        app = _with_state(create_app(settings), state)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def lookup(bearer: str, **params: str) -> httpx.Response:
                return await http.get(
                    "/v1/receipts", params=params, headers={"Authorization": f"Bearer {bearer}"}
                )

            found = await lookup(producer, idempotency_key="order-1")
            assert found.status_code == 200, found.text
            assert found.headers["auditlog-log"] == head.log_id
            assert found.headers["auditlog-index"] == "0"
            assert found.headers["auditlog-event-hash"] == first.envelope.event_hash.hex()
            receipt = Receipt.from_text(found.text)
            verify_receipt(receipt, first.envelope.canonical, [SIGNER.verifier], HASHER)
            # The tenant-bound token finds its own event under the same key, in its tenant.
            own = await lookup(tenant, idempotency_key="order-1")
            assert own.status_code == 200, own.text
            assert own.headers["auditlog-event-hash"] == acme.envelope.event_hash.hex()
            assert (
                await lookup(tenant, idempotency_key="order-1", tenant_id="x")
            ).status_code == 403
            # Another token has no such key of its own; only an admin may name a principal.
            assert (await lookup(reader, idempotency_key="order-1")).status_code == 404
            assert (
                await lookup(reader, idempotency_key="order-1", principal=mine)
            ).status_code == 403
            by_admin = await lookup(admin, idempotency_key="order-1", principal=mine)
            assert by_admin.status_code == 200, by_admin.text
            assert by_admin.text == found.text
            acme_by_admin = await lookup(
                admin, idempotency_key="order-1", principal=theirs, tenant_id="acme"
            )
            assert acme_by_admin.headers["auditlog-event-hash"] == acme.envelope.event_hash.hex()
            # Not sealed (yet), or malformed.
            assert (await lookup(producer, idempotency_key="order-2")).status_code == 404
            assert (await lookup(producer)).status_code == 400
            assert (await lookup(producer, idempotency_key="")).status_code == 400
            assert (await lookup(producer, idempotency_key="a\x00b")).status_code == 400
            assert (await lookup(producer, idempotency_key="k" * 1025)).status_code == 400
            assert (await http.get("/v1/receipts?idempotency_key=order-1")).status_code == 401
