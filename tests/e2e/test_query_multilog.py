"""Search on the default deployment shape: several logs (one per partition), RFC 6962 hashes.

Pangea's responses carry one root, so events from several logs come without Pangea proofs; each
event still names its log and index, and its native receipt proves it.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from pangea.config import PangeaConfig
from pangea.services import Audit
from pangea.services.audit.models import EventVerification

from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e


def test_multi_log_search_has_no_pangea_proofs_but_native_receipts(pipeline: Pipeline) -> None:
    audit = Audit(pipeline.token, config=PangeaConfig(domain=pipeline.base_url))
    marker = f"multilog-{secrets.token_hex(4)}"
    # Different tenants are different Kafka keys, so the events spread over the partitions.
    events = [{"message": f"{marker} {i}", "tenant_id": f"t{i}"} for i in range(8)]
    logged = audit.log_bulk(events).result
    assert logged is not None
    deadline = time.monotonic() + 30
    while True:
        found = audit.search(query=marker, limit=100, verify_consistency=True).result
        assert found is not None
        if found.count == len(events):
            break
        assert time.monotonic() < deadline, found.count
        time.sleep(0.1)
    assert found.root is None
    logs = {e.model_extra["log"] for e in found.events}  # type: ignore[index]
    assert len(logs) > 1
    for event in found.events:
        assert event.membership_proof is None
        assert event.membership_verification == EventVerification.NONE
        receipt = httpx.get(
            f"{pipeline.base_url}/v1/receipts/{event.hash}",
            headers={"Authorization": f"Bearer {pipeline.token}"},
        )
        assert receipt.status_code == 200
        assert f"index {event.leaf_index}\n" in receipt.text

    root = httpx.post(
        f"{pipeline.base_url}/v1/root",
        content=b"{}",
        headers={"Authorization": f"Bearer {pipeline.token}"},
    ).json()
    assert root["status"] == "ValidationError"
    assert "tree_name" in root["summary"]
