"""The native read API (consistency proofs, receipts, OpenAPI) and who may read what: tenant
isolation across search, downloads, exports, receipts and entry bundles, and the search scope.

The module runs its own pipeline (tests/e2e/query_deployment.py): one partition, ``pangea-sha256``
hashes, the reference events. Pangea's search and download API is in test_query_search.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pangea.exceptions import NotFound
from pangea.services import Audit

from auditlog.core.hashing import PANGEA_SHA256
from auditlog.pg import hash_index
from tests.conftest import Services
from tests.e2e.conftest import make_token
from tests.e2e.query_deployment import (
    Deployment,
    deploy,
    sdk,
    sealed_size,
    verify_json_download,
)
from tests.unit.test_search_query import REFERENCE_EVENTS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployment(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """This module's own pipeline and reference events (tests/e2e/query_deployment.py)."""
    yield from deploy(services, tmp_path_factory)


# Native read API -------------------------------------------------------------------------------


def _checkpoint(d: Deployment, note: str) -> object:
    from auditlog.core.checkpoint import Checkpoint
    from auditlog.core.note import NoteVerifier, open_note

    verifier = NoteVerifier.from_vkey(d.vkey_file.read_text().strip())
    return Checkpoint.from_text(open_note(note, [verifier]).text)


def test_consistency_proofs_come_with_the_signed_checkpoint(deployment: Deployment) -> None:
    import base64

    from auditlog.core.hashing import get_hasher
    from auditlog.core.proof import verify_consistency

    audit = sdk(deployment)
    log_id = f"{deployment.topic}-0"
    hasher = get_hasher(PANGEA_SHA256)
    size = audit.root().result.data.size  # type: ignore[union-attr]
    for old in range(size + 1):
        response = httpx.get(
            f"{deployment.base_url}/v1/proofs/consistency", params={"log": log_id, "from": old}
        )
        assert response.status_code == 200, response.text
        head, _, note = response.text.partition("\n\n")
        lines = head.split("\n")
        assert lines[0] == f"old {old}"
        proof = [base64.b64decode(line) for line in lines[1:]]
        checkpoint = _checkpoint(deployment, note)
        old_root = (
            hasher.empty_root()
            if old == 0
            else bytes.fromhex(audit.root(tree_size=old).result.data.root_hash)  # type: ignore[union-attr]
        )
        verify_consistency(
            hasher,
            old,
            checkpoint.size,  # type: ignore[attr-defined]
            old_root,
            checkpoint.root,  # type: ignore[attr-defined]
            proof,
        )

    # An explicit, checkpointed `to` is immutable; a size without a checkpoint is not served.
    pinned = httpx.get(
        f"{deployment.base_url}/v1/proofs/consistency",
        params={"log": log_id, "from": 1, "to": len(REFERENCE_EVENTS)},
    )
    assert pinned.status_code == 200
    assert "immutable" in pinned.headers["cache-control"]
    for params, status in (
        ({"log": log_id, "from": 1, "to": size + 5}, 404),
        ({"log": log_id, "from": size + 1}, 400),
        ({"log": log_id}, 400),
        ({"from": 1}, 400),
        ({"log": "no-such-log", "from": 0}, 404),
        ({"log": log_id, "from": "x"}, 400),
    ):
        bad = httpx.get(f"{deployment.base_url}/v1/proofs/consistency", params=params)
        assert bad.status_code == status, params
        assert "status" in bad.json()


def _verify_receipt(deployment: Deployment, tmp_path: Path, name: str, receipt: str) -> None:
    (tmp_path / "receipt").write_text(receipt)
    (tmp_path / "envelope.json").write_text(json.dumps(deployment.envelopes[name]))
    done = subprocess.run(
        [
            sys.executable, "-m", "auditlog.cli", "verify", "receipt",
            str(tmp_path / "receipt"), "--entry", str(tmp_path / "envelope.json"),
            "--key", str(deployment.vkey_file), "--hash-scheme", PANGEA_SHA256,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert deployment.hashes[name] in done.stdout


def test_receipts_by_hash_and_index_verify_offline(deployment: Deployment, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {deployment.token}"}
    log_id = f"{deployment.topic}-0"
    names = sorted(REFERENCE_EVENTS)
    for name in ("nedry", "unicode"):
        by_hash = httpx.get(
            f"{deployment.base_url}/v1/receipts/{deployment.hashes[name]}", headers=headers
        )
        assert by_hash.status_code == 200
        by_index = httpx.get(
            f"{deployment.base_url}/v1/logs/{log_id}/receipts/{names.index(name)}", headers=headers
        )
        assert by_index.status_code == 200
        for receipt in (by_hash.text, by_index.text):
            _verify_receipt(deployment, tmp_path, name, receipt)


async def _hash_index(database_url: str, keep: bool) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await (hash_index.create(conn, lambda _: None) if keep else hash_index.drop(conn))
    finally:
        await conn.close()


def test_receipts_by_hash_at_received_at_also_without_the_hash_index(
    deployment: Deployment, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {deployment.token}"}
    name = "nedry"
    url = f"{deployment.base_url}/v1/receipts/{deployment.hashes[name]}"
    at = {"received_at": str(deployment.envelopes[name]["received_at"])}
    assert httpx.get(url, params=at, headers=headers).status_code == 200
    elsewhen = httpx.get(
        url, params={"received_at": "2001-01-01T00:00:00.000000Z"}, headers=headers
    )
    assert elsewhen.status_code == 404
    malformed = httpx.get(url, params={"received_at": "yesterday"}, headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["status"] == "ValidationError"

    asyncio.run(_hash_index(deployment.services.database_url, keep=False))
    try:
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 400
        assert refused.json()["status"] == "ValidationError"
        assert "received_at" in refused.json()["summary"]
        found = httpx.get(url, params=at, headers=headers)
        assert found.status_code == 200
        _verify_receipt(deployment, tmp_path, name, found.text)
    finally:
        asyncio.run(_hash_index(deployment.services.database_url, keep=True))
    assert httpx.get(url, headers=headers).status_code == 200


def test_openapi_document_is_served(deployment: Deployment) -> None:
    doc = httpx.get(f"{deployment.base_url}/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v1/search" in doc["paths"]


# Tenant isolation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(deployment: Deployment) -> dict[str, str]:
    """Tokens of two tenants; the clinic logs one event of its own."""
    tokens = {
        "hospital": make_token(deployment.services, {"log", "search"}, "hospital"),
        "clinic": make_token(deployment.services, {"log", "search"}, "clinic"),
    }
    before = sealed_size(deployment.base_url, deployment.topic)
    result = sdk(deployment, tokens["clinic"]).log(message="clinic only", actor="Jane Doe")
    assert result.result is not None
    deployment.hashes["clinic"] = result.result.hash
    deadline = time.monotonic() + 20
    while sealed_size(deployment.base_url, deployment.topic) <= before:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return tokens


def test_a_tenant_searches_only_its_own_events(
    deployment: Deployment, tenants: dict[str, str]
) -> None:
    admin = sdk(deployment)  # no tenant: sees every event, so each query has something to hide
    hospital = sdk(deployment, tenants["hospital"])
    clinic = sdk(deployment, tenants["clinic"])
    own = {"jane", "jane_lower"}  # the reference events logged for the hospital
    by_hash = {h: n for n, h in deployment.hashes.items()}

    def found(audit: Audit, query: str, **kwargs: object) -> set[str]:
        result = audit.search(query=query, limit=100, **kwargs).result  # type: ignore[arg-type]
        assert result is not None
        return {by_hash.get(e.hash, e.hash) for e in result.events}

    seen_by_admin: set[str] = set()
    for query in ("", "jane", '"Jane Doe"', "tenant_id:clinic", "-tenant_id:hospital", "nedry"):
        everyone = found(admin, query)
        seen_by_admin |= everyone
        # Exactly the hospital's share of what the query matches: none of another tenant's
        # events, and none of its own missing.
        assert found(hospital, query) == everyone & own, query
    # The queries did match other tenants' events (so the hospital's answers were filtered),
    # and the hospital's own events (so they were not empty by accident).
    assert {"clinic", "nedry", *own} <= seen_by_admin
    assert found(hospital, "") == own
    assert found(clinic, "") == {"clinic"}
    # A restriction cannot widen the tenant: it is ANDed with it.
    clinic_only = {"tenant_id": ["clinic"]}
    assert found(admin, "", search_restriction=clinic_only) == {"clinic"}
    assert found(hospital, "", search_restriction=clinic_only) == set()


def test_result_sets_downloads_and_exports_belong_to_their_token(
    deployment: Deployment, tenants: dict[str, str]
) -> None:
    owner = sdk(deployment)
    search = owner.search(query="", limit=1).result
    assert search is not None
    export_id = owner.export(format="csv").request_id
    owner.poll_result(request_id=export_id)
    for token in tenants.values():
        other = sdk(deployment, token)
        with pytest.raises(NotFound):
            other.results(id=search.id, limit=10, offset=0)
        with pytest.raises(NotFound):
            other.download_results(result_id=search.id)
        with pytest.raises(NotFound):
            other.download_results(request_id=export_id)
        polled = httpx.get(
            f"{deployment.base_url}/request/{export_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert polled.status_code == 404

    # A tenant's own export holds its events only.
    hospital = sdk(deployment, tenants["hospital"])
    mine = hospital.export(format="json", verbose=False).request_id
    hospital.poll_result(request_id=mine)
    link = hospital.download_results(request_id=mine, format="json").result
    assert link is not None
    payload = json.loads(httpx.get(link.dest_url).content)
    assert sorted(verify_json_download(deployment, payload)) == ["jane", "jane_lower"]


def test_receipts_and_entry_bundles_refuse_other_tenants(
    deployment: Deployment, tenants: dict[str, str]
) -> None:
    log_id = f"{deployment.topic}-0"
    names = sorted(REFERENCE_EVENTS)
    hospital = {"Authorization": f"Bearer {tenants['hospital']}"}
    base = deployment.base_url
    assert httpx.get(f"{base}/v1/receipts/{deployment.hashes['jane']}", headers=hospital).is_success
    for name in ("nedry", "clinic"):
        refused = httpx.get(f"{base}/v1/receipts/{deployment.hashes[name]}", headers=hospital)
        assert refused.status_code == 404
    index = names.index("nedry")
    refused = httpx.get(f"{base}/v1/logs/{log_id}/receipts/{index}", headers=hospital)
    assert refused.status_code == 404
    own = httpx.get(f"{base}/v1/logs/{log_id}/receipts/{names.index('jane')}", headers=hospital)
    assert own.status_code == 200
    bundle = httpx.get(f"{base}/v1/logs/{log_id}/tile/entries/000.p/1", headers=hospital)
    assert bundle.status_code == 403
    # Hash tiles and checkpoints hold no event data: anyone may read them.
    assert httpx.get(f"{base}/v1/logs/{log_id}/tile/0/000.p/1").status_code == 200


def test_every_read_needs_a_token_with_the_search_scope(deployment: Deployment) -> None:
    log_only = make_token(deployment.services, {"log"})
    base = deployment.base_url
    log_id = f"{deployment.topic}-0"
    for token in (None, log_only, "alt_nobody_wrong"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for path, body in (
            ("/v1/search", {"query": ""}),
            ("/v1/results", {"id": "pas_" + "a" * 32}),
            ("/v1/root", {}),
            ("/v1/download_results", {"result_id": "pas_" + "a" * 32}),
            ("/v1/export", {}),
        ):
            response = httpx.post(f"{base}{path}", content=json.dumps(body), headers=headers)
            assert response.status_code == 401, (path, token)
            assert response.json()["status"] == "Unauthorized"
        for path in (
            f"/v1/receipts/{deployment.hashes['jane']}",
            f"/v1/logs/{log_id}/receipts/0",
            f"/v1/logs/{log_id}/tile/entries/000.p/1",
        ):
            assert httpx.get(f"{base}{path}", headers=headers).status_code == 401, (path, token)
