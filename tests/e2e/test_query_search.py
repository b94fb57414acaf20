"""Search, results, root, downloads and exports, driven by the official pangea-sdk 5.5.0.

The module runs its own pipeline (tests/e2e/query_deployment.py): one partition, ``pangea-sha256``
hashes, the reference events. The SDK's Arweave lookup is pointed at this service's own
(404-answering) URL, so it falls back to ``/v1/root`` without reaching the internet
(pangea-audit-api.md §4.5). The native read API and tenant isolation are in test_query_reads.py.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pangea.exceptions import BadOffsetException, NotFound, PangeaAPIException
from pangea.services.audit import util as pangea_util
from pangea.services.audit.models import EventVerification

from tests.conftest import Services
from tests.e2e.query_deployment import (
    ORIGIN,
    Deployment,
    deploy,
    names_of,
    post,
    sdk,
    sealed_size,
    verify_json_download,
)
from tests.unit.test_search_query import EXPECTED, REFERENCE_EVENTS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployment(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """This module's own pipeline and reference events (tests/e2e/query_deployment.py)."""
    yield from deploy(services, tmp_path_factory)


@pytest.fixture
def offline_arweave(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any non-200 answer makes the SDK fall back to /v1/root; this service answers 404 here.
    monkeypatch.setattr(pangea_util, "ARWEAVE_BASE_URL", f"{deployment.base_url}/arweave")


# Search semantics ------------------------------------------------------------------------------


def test_every_grammar_form_returns_exactly_the_expected_events(deployment: Deployment) -> None:
    audit = sdk(deployment)
    for query, expected in sorted(EXPECTED.items()):
        response = audit.search(query=query, limit=100, verbose=False)
        assert response.result is not None
        assert set(names_of(deployment, response.result.events)) == expected, query
        assert response.result.count == len(expected)


def test_search_parameters_order_window_restriction_and_caps(deployment: Deployment) -> None:
    audit = sdk(deployment)
    names = sorted(REFERENCE_EVENTS)
    # One bulk request: the same received_at, so log order decides, in both directions.
    asc = audit.search(query="", order="asc", order_by="received_at", limit=100).result
    desc = audit.search(query="", order="desc", limit=100).result
    assert asc is not None and desc is not None
    assert names_of(deployment, asc.events) == names
    assert names_of(deployment, desc.events) == names[::-1]

    by_actor = audit.search(query="", order="asc", order_by="actor", limit=100).result
    assert by_actor is not None
    actors = [REFERENCE_EVENTS[n].get("actor") for n in names_of(deployment, by_actor.events)]
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
    assert set(names_of(deployment, restricted.events)) == {"jane", "jane_lower"}

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
        response = post(deployment, "/v1/search", body)
        assert response.status_code == 400, body
        assert response.json()["status"] == "ValidationError"
        assert response.json()["result"]["errors"]


# Verification with the official SDK ------------------------------------------------------------


@pytest.mark.usefixtures("offline_arweave")
def test_search_and_results_verify_membership_and_consistency(deployment: Deployment) -> None:
    audit = sdk(deployment)
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
    assert names_of(deployment, seen) == sorted(REFERENCE_EVENTS)
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
    audit = sdk(deployment)
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
    beyond = post(deployment, "/v1/root", {"tree_size": root.size + 1})
    assert beyond.json()["status"] == "ValidationError"


def test_the_search_root_is_the_signed_checkpoint(deployment: Deployment) -> None:
    from auditlog.core.checkpoint import Checkpoint
    from auditlog.core.note import NoteVerifier, open_note

    body = post(deployment, "/v1/search", {"query": "", "limit": 1}).json()["result"]
    verifier = NoteVerifier.from_vkey(deployment.vkey_file.read_text().strip())
    checkpoint = Checkpoint.from_text(open_note(body["root"]["checkpoint"], [verifier]).text)
    assert checkpoint.size == body["root"]["size"]
    assert checkpoint.root.hex() == body["root"]["root_hash"]
    served = httpx.get(body["root"]["url"])
    assert served.status_code == 200
    assert served.text == body["root"]["checkpoint"]
    assert "immutable" in served.headers["cache-control"]


# Downloads and exports -------------------------------------------------------------------------


def test_download_results_as_csv_and_json_through_capability_urls(deployment: Deployment) -> None:
    audit = sdk(deployment)
    search = audit.search(query="status:ok OR status:failed", order="asc", limit=1).result
    assert search is not None
    expected = sorted(EXPECTED["status:ok"] | {"jane_lower", "unicode"})
    assert search.count == len(expected)

    as_json = audit.download_results(result_id=search.id, format="json").result
    assert as_json is not None
    assert as_json.dest_url.endswith(f"/search_results_{search.id}.json")
    file = audit.download_file(as_json.dest_url)
    assert file.filename == f"search_results_{search.id}.json"
    assert sorted(verify_json_download(deployment, json.loads(file.file))) == expected

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
    audit = sdk(deployment)
    accepted = audit.export(format="json", verbose=True)
    assert accepted.status == "Accepted"
    request_id = accepted.request_id
    done = audit.poll_result(request_id=request_id)
    assert done.status == "Success"
    link = audit.download_results(request_id=request_id, format="json").result
    assert link is not None
    payload = json.loads(httpx.get(link.dest_url).content)
    assert verify_json_download(deployment, payload) == sorted(REFERENCE_EVENTS)

    # The export is pinned to the log's size when it was made: later events stay out.
    late = audit.log(message="after the export", verbose=False).result
    assert late is not None
    deadline = time.monotonic() + 20
    while sealed_size(deployment.base_url, deployment.topic) <= len(REFERENCE_EVENTS):
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
        assert post(deployment, "/v1/download_results", body).status_code == 400, body
    assert post(deployment, "/v1/download_results", {"result_id": "pas_nope"}).status_code == 404
    assert post(deployment, "/v1/export", {"order_by": "actor"}).status_code == 400
    assert post(deployment, "/v1/export", {"format": "xml"}).status_code == 400
    with pytest.raises(PangeaAPIException):
        sdk(deployment).download_results(request_id="prq_unknown")
