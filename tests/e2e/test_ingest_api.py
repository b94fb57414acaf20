"""The ingest API driven by the official pangea-sdk 5.5.0, sync and asyncio clients."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pangea.asyncio.services import AuditAsync
from pangea.config import PangeaConfig
from pangea.exceptions import AcceptedRequestException, ValidationException
from pangea.services import Audit
from pangea.services.audit.models import LogBulkResult

from tests.e2e.conftest import CUSTOM_CONFIG, Pipeline, make_token

pytestmark = pytest.mark.e2e


def _audit(pipeline: Pipeline, **kwargs: object) -> Audit:
    return Audit(pipeline.token, config=PangeaConfig(domain=pipeline.base_url), **kwargs)  # type: ignore[arg-type]


def _post(pipeline: Pipeline, path: str, body: object, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{pipeline.base_url}{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token or pipeline.token}"},
    )


def _recompute(envelope: dict[str, object]) -> str:
    canonical = json.dumps(
        envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    return hashlib.sha256(canonical).hexdigest()


def test_bulk_log_returns_one_verifiable_hash_per_event(pipeline: Pipeline) -> None:
    events = [{"message": f"bulk {i}", "actor": "ünïcode 😀", "status": "ok"} for i in range(5)]
    response = _audit(pipeline).log_bulk(events, verbose=True)
    assert response.result is not None
    results = response.result.results
    assert len(results) == 5
    for event, result in zip(events, results, strict=True):
        envelope = result.envelope.model_dump(exclude_none=True)
        assert envelope["event"] == event
        assert _recompute(envelope) == result.hash


def test_bulk_async_answers_202_then_the_poll_returns_the_results(pipeline: Pipeline) -> None:
    audit = _audit(pipeline)
    response = audit.log_bulk_async(
        [{"message": "async one"}, {"message": "async two"}], verbose=True
    )
    assert response.status == "Accepted"
    assert response.result is None
    assert response.accepted_result is not None
    deadline = time.monotonic() + 20
    while True:
        try:
            polled = audit.poll_result(response=response, result_class=LogBulkResult)
            break
        except AcceptedRequestException:
            assert time.monotonic() < deadline, "log_async never completed"
            time.sleep(0.1)
    assert polled.status == "Success"
    assert polled.result is not None
    results = polled.result.results
    assert [r.envelope.event["message"] for r in results] == ["async one", "async two"]
    assert all(_recompute(r.envelope.model_dump(exclude_none=True)) == r.hash for r in results)

    # Another token cannot poll it; it looks exactly like an unknown id.
    other = make_token(pipeline.services, {"log"})
    foreign = httpx.get(
        f"{pipeline.base_url}/request/{response.request_id}",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert foreign.status_code == 404
    assert foreign.json()["status"] == "NotFound"


def test_locally_signed_events_are_verified_and_kept(pipeline: Pipeline, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "privkey"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    audit = _audit(pipeline, private_key_file=str(key_file))
    response = audit.log(message="signed", actor="alice", sign_local=True, verify=True)
    assert response.result is not None
    assert response.result.signature_verification == "pass"
    envelope = response.result.envelope
    assert envelope.signature and envelope.public_key

    # The same event with a signature from another key is a ValidationError.
    bad = base64.b64encode(Ed25519PrivateKey.generate().sign(b'{"message":"signed"}')).decode()
    raw = _post(
        pipeline,
        "/v1/log",
        {"event": {"message": "signed"}, "signature": bad, "public_key": envelope.public_key},
    )
    assert raw.status_code == 400
    body = raw.json()
    assert body["status"] == "ValidationError"
    assert body["result"]["errors"][0]["source"] == "/signature"


def test_bulk_limits_and_per_item_errors(pipeline: Pipeline) -> None:
    too_many = _post(pipeline, "/v2/log", {"events": [{"event": {"message": "m"}}] * 1001})
    assert too_many.json()["status"] == "ValidationError"
    assert too_many.json()["result"]["errors"][0]["code"] == "AboveMaxItems"

    empty = _post(pipeline, "/v2/log", {"events": []})
    assert empty.json()["status"] == "ValidationError"

    mixed = _post(
        pipeline,
        "/v2/log",
        {
            "events": [
                {"event": {"message": "fine"}},
                {"event": {"message": "x", "actor": "a" * 129}},
                {"event": {"colour": "red"}},
            ]
        },
    )
    sources = [e["source"] for e in mixed.json()["result"]["errors"]]
    assert sources == ["/events/1/event/actor", "/events/2/event/message", "/events/2/event/colour"]

    with pytest.raises(ValidationException):
        _audit(pipeline).log_bulk([{"message": ""}])


def test_raw_bodies_without_content_type_and_wrong_types(pipeline: Pipeline) -> None:
    ok = httpx.post(
        f"{pipeline.base_url}/v1/log",
        content=b'{"event":{"message":"raw"}}',
        headers={"Authorization": f"Bearer {pipeline.token}"},
    )
    assert ok.status_code == 200
    assert ok.json()["status"] == "Success"
    assert len(ok.json()["result"]["hash"]) == 64

    typed = _post(pipeline, "/v1/log", {"event": {"message": 12}, "verbose": "yes"})
    codes = sorted(e["code"] for e in typed.json()["result"]["errors"])
    assert codes == ["InvalidBoolean", "InvalidString"]

    missing = httpx.post(f"{pipeline.base_url}/v1/log", content=b"{}")
    assert missing.status_code == 401
    assert missing.json()["status"] == "Unauthorized"


def test_tenant_bound_tokens_log_only_for_their_tenant(pipeline: Pipeline) -> None:
    token = make_token(pipeline.services, {"log"}, tenant="acme")
    stamped = _post(pipeline, "/v1/log", {"event": {"message": "m"}, "verbose": True}, token)
    assert stamped.json()["result"]["envelope"]["event"]["tenant_id"] == "acme"
    other = _post(pipeline, "/v1/log", {"event": {"message": "m", "tenant_id": "globex"}}, token)
    assert other.json()["status"] == "ValidationError"
    search_only = make_token(pipeline.services, {"search"})
    denied = _post(pipeline, "/v1/log", {"event": {"message": "m"}}, search_only)
    assert denied.json()["status"] == "Unauthorized"


def test_auth0_log_stream(pipeline: Pipeline) -> None:
    marker = secrets.token_hex(6)  # the session's log is shared: find our events by it
    login = {
        "date": "2024-05-01T10:00:00.000Z",
        "type": "s",
        "description": f"Success Login {marker}",
        "client_id": "abc",
        "client_name": "Park app",
        "ip": "10.0.0.1",
        "user_id": "auth0|123",
        "user_name": "dennis",
    }
    failed = {"type": "f", "user_id": f"auth0|{marker}", "ip": "10.0.0.2"}  # no description
    payload = {
        "logs": [
            {"log_id": f"900{marker}", "data": login},
            {"log_id": f"901{marker}", "data": failed},
        ]
    }
    response = _audit(pipeline).log_stream(payload)
    assert response.status == "Success"

    # Both entries were sealed, mapped field by field (docs/ingest.md), with verifiable hashes.
    expected = [
        {
            "message": f"Success Login {marker}",
            "actor": "dennis",
            "action": "s",
            "source": "10.0.0.1",
            "target": "Park app",
            "timestamp": "2024-05-01T10:00:00.000Z",
            "new": json.dumps(login, sort_keys=True, separators=(",", ":")),
            "old": f"auth0 log_id 900{marker}",
        },
        {
            "message": "f",
            "actor": f"auth0|{marker}",
            "action": "f",
            "source": "10.0.0.2",
            "new": json.dumps(failed, sort_keys=True, separators=(",", ":")),
            "old": f"auth0 log_id 901{marker}",
        },
    ]
    deadline = time.monotonic() + 30
    while True:
        found = _audit(pipeline).search(query=f'old:"{marker}"', order="asc", limit=10).result
        assert found is not None
        if len(found.events) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    sealed = sorted(
        ((e.envelope.model_dump(exclude_none=True), e.hash) for e in found.events),  # type: ignore[union-attr]
        key=lambda pair: str(pair[0]["event"].get("old")),
    )
    assert [envelope["event"] for envelope, _ in sealed] == expected
    for envelope, event_hash in sealed:
        assert _recompute(envelope) == event_hash
        receipt = httpx.get(
            f"{pipeline.base_url}/v1/receipts/{event_hash}",
            headers={"Authorization": f"Bearer {pipeline.token}"},
        )
        assert receipt.status_code == 200
        assert receipt.text.startswith("c2sp.org/tlog-proof@v1\n")


async def test_the_asyncio_client_logs_too(pipeline: Pipeline) -> None:
    audit = AuditAsync(pipeline.token, config=PangeaConfig(domain=pipeline.base_url))
    try:
        response = await audit.log(message="from asyncio", actor="async", verbose=True)
        assert response.result is not None
        assert (
            _recompute(response.result.envelope.model_dump(exclude_none=True))
            == response.result.hash
        )
        bulk = await audit.log_bulk([{"message": "a1"}, {"message": "a2"}])
        assert bulk.result is not None
        assert len(bulk.result.results) == 2
    finally:
        await audit.close()


def test_custom_schema_per_config_id(pipeline: Pipeline) -> None:
    audit = Audit(
        pipeline.token, config=PangeaConfig(domain=pipeline.base_url), config_id=CUSTOM_CONFIG
    )
    event = {
        "message": "custom",
        "field_int": 7,
        "field_bool": True,
        "field_str_short": "short",
        "field_time": "2024-05-01T10:00:00Z",
    }
    response = audit.log_event(event, verbose=True)
    assert response.result is not None
    assert response.result.envelope.event == event
    with pytest.raises(ValidationException) as invalid:
        audit.log_event({"message": "custom", "field_int": "seven", "actor": "x"})
    assert sorted(e.source for e in invalid.value.errors) == ["/event/actor", "/event/field_int"]
    unknown = _post(pipeline, "/v1/log", {"event": {"message": "m"}, "config_id": "pci_nope"})
    assert unknown.json()["result"]["errors"][0]["source"] == "/config_id"
    # The standard schema still applies without a config_id.
    standard = _post(pipeline, "/v1/log", {"event": {"message": "m", "field_int": 1}})
    assert standard.json()["result"]["errors"][0]["code"] == "UnexpectedProperty"
