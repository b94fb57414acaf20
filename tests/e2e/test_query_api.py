"""Search, results, root, downloads and exports, driven by the official pangea-sdk 5.5.0.

The module runs its own pipeline on a one-partition topic whose log uses ``pangea-sha256``:
the deployment shape in which Pangea's SDK verifies membership and consistency proofs. The SDK's
Arweave lookup is pointed at this service's own (404-answering) URL, so it falls back to
``/v1/root`` without reaching the internet (pangea-audit-api.md §4.5).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from pangea.config import PangeaConfig
from pangea.exceptions import BadOffsetException, NotFound, PangeaAPIException
from pangea.services import Audit
from pangea.services.audit import util as pangea_util
from pangea.services.audit.models import EventVerification

from auditlog.core.hashing import PANGEA_SHA256
from auditlog.kafka.clients import dlq_topic, ensure_topics
from auditlog.pg import hash_index
from tests.conftest import Services, delete_topics
from tests.e2e.conftest import _free_port, make_token, start_pipeline, stop_processes
from tests.unit.test_search_query import EXPECTED, REFERENCE_EVENTS

pytestmark = pytest.mark.e2e

ORIGIN = "query.e2e.test"


@dataclass(frozen=True)
class Deployment:
    base_url: str
    token: str
    vkey_file: Path
    services: Services
    topic: str
    hashes: dict[str, str]  # reference event name -> event hash
    envelopes: dict[str, dict[str, object]]


def _wire_event(name: str) -> dict[str, object]:
    event = dict(REFERENCE_EVENTS[name])
    stamp = event.get("timestamp")
    if isinstance(stamp, datetime):
        event["timestamp"] = stamp.isoformat()
    return {k: v for k, v in event.items() if v is not None}


def _start(services: Services, work: Path, topic: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    from auditlog.cli.keys import write_signing_key

    key = work / "log.skey"
    write_signing_key(key, ORIGIN)
    port = _free_port()
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": services.database_url,
        "AUDITLOG_TOPIC": topic,
        "AUDITLOG_ORIGIN": ORIGIN,
        "AUDITLOG_SIGNING_KEY_FILE": str(key),
        "AUDITLOG_HASH_SCHEME": PANGEA_SHA256,
        "AUDITLOG_PORT": str(port),
        "AUDITLOG_SEALER_GROUP_ID": f"sealer-{topic}",
        "AUDITLOG_BATCH_MAX_AGE": "0.05",
        # The hash index is dropped and rebuilt below: receipts must see it at once.
        "AUDITLOG_QUERY_HASH_INDEX_TTL_SECONDS": "0",
    }
    return start_pipeline(work, env)


def _sealed_size(base: str, topic: str) -> int:
    logs = httpx.get(f"{base}/v1/logs").json()["result"]["logs"]
    return sum(entry["size"] for entry in logs if entry["topic"] == topic)


@pytest.fixture(scope="module")
def deployment(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    topic = f"audit.query-{secrets.token_hex(4)}"
    asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=1))
    work = tmp_path_factory.mktemp("query-pipeline")
    procs, base = _start(services, work, topic)
    try:
        token = make_token(services, {"log", "search"})
        audit = Audit(token, config=PangeaConfig(domain=base))
        names = sorted(REFERENCE_EVENTS)
        response = audit.log_bulk([_wire_event(n) for n in names], verbose=True)
        assert response.result is not None
        results = response.result.results
        hashes = {n: r.hash for n, r in zip(names, results, strict=True)}
        envelopes = {
            n: r.envelope.model_dump(exclude_none=True) for n, r in zip(names, results, strict=True)
        }
        deadline = time.monotonic() + 30
        while _sealed_size(base, topic) < len(names):
            assert time.monotonic() < deadline, "reference events were not sealed"
            time.sleep(0.1)
        yield Deployment(base, token, work / "log.vkey", services, topic, hashes, envelopes)
    finally:
        stop_processes(procs)
        asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


@pytest.fixture
def offline_arweave(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any non-200 answer makes the SDK fall back to /v1/root; this service answers 404 here.
    monkeypatch.setattr(pangea_util, "ARWEAVE_BASE_URL", f"{deployment.base_url}/arweave")


def _audit(d: Deployment, token: str | None = None) -> Audit:
    return Audit(token or d.token, config=PangeaConfig(domain=d.base_url))


def _names(d: Deployment, events: list[object]) -> list[str]:
    by_hash = {h: n for n, h in d.hashes.items()}
    return [by_hash[e.hash] for e in events]  # type: ignore[attr-defined]


def _post(d: Deployment, path: str, body: object, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{d.base_url}{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token or d.token}"},
    )


# Search semantics ------------------------------------------------------------------------------


def test_every_grammar_form_returns_exactly_the_expected_events(deployment: Deployment) -> None:
    audit = _audit(deployment)
    for query, expected in sorted(EXPECTED.items()):
        response = audit.search(query=query, limit=100, verbose=False)
        assert response.result is not None
        assert set(_names(deployment, response.result.events)) == expected, query
        assert response.result.count == len(expected)


def test_search_parameters_order_window_restriction_and_caps(deployment: Deployment) -> None:
    audit = _audit(deployment)
    names = sorted(REFERENCE_EVENTS)
    # One bulk request: the same received_at, so log order decides, in both directions.
    asc = audit.search(query="", order="asc", order_by="received_at", limit=100).result
    desc = audit.search(query="", order="desc", limit=100).result
    assert asc is not None and desc is not None
    assert _names(deployment, asc.events) == names
    assert _names(deployment, desc.events) == names[::-1]

    by_actor = audit.search(query="", order="asc", order_by="actor", limit=100).result
    assert by_actor is not None
    actors = [REFERENCE_EVENTS[n].get("actor") for n in _names(deployment, by_actor.events)]
    present = [a for a in actors if a is not None]
    assert present == sorted(present)
    assert actors[len(present) :] == [None] * (len(actors) - len(present))

    capped = audit.search(query="", limit=2, max_results=3).result
    assert capped is not None
    assert (capped.count, len(capped.events)) == (3, 2)

    restricted = audit.search(
        query="",
        limit=100,
        search_restriction={"status": ["ok", "failed"], "tenant_id": ["hospital"]},
    ).result
    assert restricted is not None
    assert set(_names(deployment, restricted.events)) == {"jane", "jane_lower"}

    assert audit.search(query="", start="1d", limit=100).result.count == len(names)  # type: ignore[union-attr]
    assert audit.search(query="", end="1d").result.count == 0  # type: ignore[union-attr]
    future = audit.search(query="", start="2999-01-01T00:00:00Z").result
    assert future is not None and future.count == 0


def test_invalid_searches_are_validation_errors(deployment: Deployment) -> None:
    for body in (
        {"query": "foo:bar"},
        {"query": "(a"},
        {"query": "", "order": "sideways"},
        {"query": "", "order_by": "hash"},
        {"query": "", "max_results": 10001},
        {"query": "", "limit": 0},
        {"query": "", "start": "yesterday"},
        {"query": "", "search_restriction": {"message": ["x"]}},
        {"limit": 5},
    ):
        response = _post(deployment, "/v1/search", body)
        assert response.status_code == 400, body
        assert response.json()["status"] == "ValidationError"
        assert response.json()["result"]["errors"]


# Verification with the official SDK ------------------------------------------------------------


@pytest.mark.usefixtures("offline_arweave")
def test_search_and_results_verify_membership_and_consistency(deployment: Deployment) -> None:
    audit = _audit(deployment)
    total = len(REFERENCE_EVENTS)
    first = audit.search(query="", order="asc", limit=2, verify_consistency=True)
    result = first.result
    assert result is not None
    assert result.id.startswith("pas_") and len(result.id) == 36
    assert result.count == total
    assert result.root is not None and result.root.size == total
    assert result.root.published_at
    seen = list(result.events)
    offset = len(seen)
    while offset < result.count:
        page = audit.results(id=result.id, limit=2, offset=offset, verify_consistency=True).result
        assert page is not None and page.count == total
        # Later pages carry the root of the search, not a newer one.
        assert page.root is not None and page.root.root_hash == result.root.root_hash
        seen.extend(page.events)
        offset += len(page.events)
    assert _names(deployment, seen) == sorted(REFERENCE_EVENTS)
    for event in seen:
        assert event.membership_verification == EventVerification.PASS, event.leaf_index
        assert event.consistency_verification == EventVerification.PASS, event.leaf_index
        assert event.published is True

    # A non-verbose search carries no proofs, and the SDK then verifies nothing.
    plain = audit.search(query="", verbose=False, verify_consistency=False).result
    assert plain is not None and plain.root is None
    assert all(e.membership_proof is None for e in plain.events)

    with pytest.raises(BadOffsetException):
        audit.results(id=result.id, limit=1, offset=total + 1)
    with pytest.raises(NotFound):
        audit.results(id="pas_" + "0" * 32, limit=1, offset=0)


def test_root_of_every_size_is_consistent_with_the_one_before(deployment: Deployment) -> None:
    audit = _audit(deployment)
    latest = audit.root().result
    assert latest is not None
    root = latest.data
    assert (root.tree_name, root.size) == (ORIGIN + f"/{deployment.topic}/0", len(REFERENCE_EVENTS))
    assert root.url and root.published_at
    previous = None
    for size in range(1, root.size + 1):
        data = audit.root(tree_size=size).result.data  # type: ignore[union-attr]
        assert data.size == size
        if size == 1:
            assert data.consistency_proof is None
        else:
            assert previous is not None
            proof = pangea_util.decode_consistency_proof(data.consistency_proof)
            assert pangea_util.verify_consistency_proof(
                pangea_util.decode_hash(data.root_hash), pangea_util.decode_hash(previous), proof
            )
        previous = data.root_hash
    assert previous == root.root_hash
    beyond = _post(deployment, "/v1/root", {"tree_size": root.size + 1})
    assert beyond.json()["status"] == "ValidationError"


def test_the_search_root_is_the_signed_checkpoint(deployment: Deployment) -> None:
    from auditlog.core.checkpoint import Checkpoint
    from auditlog.core.note import NoteVerifier, open_note

    body = _post(deployment, "/v1/search", {"query": "", "limit": 1}).json()["result"]
    verifier = NoteVerifier.from_vkey(deployment.vkey_file.read_text().strip())
    checkpoint = Checkpoint.from_text(open_note(body["root"]["checkpoint"], [verifier]).text)
    assert checkpoint.size == body["root"]["size"]
    assert checkpoint.root.hex() == body["root"]["root_hash"]
    served = httpx.get(body["root"]["url"])
    assert served.status_code == 200
    assert served.text == body["root"]["checkpoint"]
    assert "immutable" in served.headers["cache-control"]


# Downloads and exports -------------------------------------------------------------------------


def _verify_json_download(d: Deployment, payload: dict[str, object]) -> list[str]:
    events = payload["events"]
    assert isinstance(events, list)
    root = payload.get("root")
    for item in events:
        canonical = json.dumps(
            item["envelope"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        assert pangea_util.hash_bytes(canonical).hex() == item["hash"]
        if root is not None:
            proof = pangea_util.decode_membership_proof(item["membership_proof"])
            assert pangea_util.verify_membership_proof(
                pangea_util.decode_hash(item["hash"]),
                pangea_util.decode_hash(root["root_hash"]),  # type: ignore[index]
                proof,
            )
    by_hash = {h: n for n, h in d.hashes.items()}
    return [by_hash[item["hash"]] for item in events]


def test_download_results_as_csv_and_json_through_capability_urls(deployment: Deployment) -> None:
    audit = _audit(deployment)
    search = audit.search(query="status:ok OR status:failed", order="asc", limit=1).result
    assert search is not None
    expected = sorted(EXPECTED["status:ok"] | {"jane_lower", "unicode"})
    assert search.count == len(expected)

    as_json = audit.download_results(result_id=search.id, format="json").result
    assert as_json is not None
    assert as_json.dest_url.endswith(f"/search_results_{search.id}.json")
    file = audit.download_file(as_json.dest_url)
    assert file.filename == f"search_results_{search.id}.json"
    assert sorted(_verify_json_download(deployment, json.loads(file.file))) == expected

    as_csv = audit.download_results(result_id=search.id).result
    assert as_csv is not None
    text = httpx.get(as_csv.dest_url).text  # no Authorization header: the URL is the right
    rows = list(csv.DictReader(io.StringIO(text)))
    by_hash = {h: n for n, h in deployment.hashes.items()}
    assert sorted(by_hash[r["hash"]] for r in rows) == expected
    for row in rows:
        envelope = json.loads(row["envelope"])
        assert envelope == deployment.envelopes[by_hash[row["hash"]]]
        assert row["membership_proof"]

    # A mangled capability is refused.
    bad = as_csv.dest_url.replace("/v1/downloads/", "/v1/downloads/x")
    assert httpx.get(bad).status_code == 404


def test_export_is_accepted_then_downloadable(deployment: Deployment) -> None:
    audit = _audit(deployment)
    accepted = audit.export(format="json", verbose=True)
    assert accepted.status == "Accepted"
    request_id = accepted.request_id
    done = audit.poll_result(request_id=request_id)
    assert done.status == "Success"
    link = audit.download_results(request_id=request_id, format="json").result
    assert link is not None
    payload = json.loads(httpx.get(link.dest_url).content)
    assert _verify_json_download(deployment, payload) == sorted(REFERENCE_EVENTS)

    # The export is pinned to the log's size when it was made: later events stay out.
    late = audit.log(message="after the export", verbose=False).result
    assert late is not None
    deadline = time.monotonic() + 20
    while _sealed_size(deployment.base_url, deployment.topic) <= len(REFERENCE_EVENTS):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    again = audit.download_results(request_id=request_id, format="csv").result
    assert again is not None
    rows = list(csv.DictReader(io.StringIO(httpx.get(again.dest_url).text)))
    assert len(rows) == len(REFERENCE_EVENTS)
    assert late.hash not in {r["hash"] for r in rows}
    deployment.hashes["late"] = late.hash


def test_bad_download_and_export_requests(deployment: Deployment) -> None:
    for body in ({}, {"result_id": "pas_x", "request_id": "prq_y"}, {"result_id": 5}):
        assert _post(deployment, "/v1/download_results", body).status_code == 400, body
    assert _post(deployment, "/v1/download_results", {"result_id": "pas_nope"}).status_code == 404
    assert _post(deployment, "/v1/export", {"order_by": "actor"}).status_code == 400
    assert _post(deployment, "/v1/export", {"format": "xml"}).status_code == 400
    with pytest.raises(PangeaAPIException):
        _audit(deployment).download_results(request_id="prq_unknown")


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

    audit = _audit(deployment)
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
    before = _sealed_size(deployment.base_url, deployment.topic)
    result = _audit(deployment, tokens["clinic"]).log(message="clinic only", actor="Jane Doe")
    assert result.result is not None
    deployment.hashes["clinic"] = result.result.hash
    deadline = time.monotonic() + 20
    while _sealed_size(deployment.base_url, deployment.topic) <= before:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return tokens


def test_a_tenant_searches_only_its_own_events(
    deployment: Deployment, tenants: dict[str, str]
) -> None:
    hospital = _audit(deployment, tenants["hospital"])
    clinic = _audit(deployment, tenants["clinic"])
    for query in ("", "jane", '"Jane Doe"', "tenant_id:clinic", "-tenant_id:hospital", "nedry"):
        found = hospital.search(query=query, limit=100).result
        assert found is not None
        assert set(_names(deployment, found.events)) <= {"jane", "jane_lower"}, query
    assert _names(deployment, clinic.search(query="", limit=100).result.events) == ["clinic"]  # type: ignore[union-attr]
    # A restriction cannot widen the tenant: it is ANDed with it.
    widened = hospital.search(query="", search_restriction={"tenant_id": ["clinic"]}).result
    assert widened is not None and widened.count == 0


def test_result_sets_downloads_and_exports_belong_to_their_token(
    deployment: Deployment, tenants: dict[str, str]
) -> None:
    owner = _audit(deployment)
    search = owner.search(query="", limit=1).result
    assert search is not None
    export_id = owner.export(format="csv").request_id
    owner.poll_result(request_id=export_id)
    for token in tenants.values():
        other = _audit(deployment, token)
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
    hospital = _audit(deployment, tenants["hospital"])
    mine = hospital.export(format="json", verbose=False).request_id
    hospital.poll_result(request_id=mine)
    link = hospital.download_results(request_id=mine, format="json").result
    assert link is not None
    payload = json.loads(httpx.get(link.dest_url).content)
    assert sorted(_verify_json_download(deployment, payload)) == ["jane", "jane_lower"]


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
