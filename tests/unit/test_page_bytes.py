"""A page's byte cap counts each event's envelope plus a bound on everything else it renders
(query/events.py ``overhead_bytes``): the bound must hold for the largest event answer, proofs
included, or pages could grow past ``AUDITLOG_QUERY_MAX_PAGE_BYTES``."""

from __future__ import annotations

import orjson
import pytest

from auditlog.core.hashing import PANGEA_SHA256, RFC6962_SHA256
from query.events import SealedEvent as Ev
from query.events import consumed, overhead_bytes
from query.proofs import LogHead
from query.snapshot import Snapshot

ENVELOPE = b'{"event":{"message":"m"},"received_at":"2026-12-04T00:00:00.000000Z"}'


def head(scheme: str, size: int, log_id: str = "audit.events-0") -> LogHead:
    return LogHead(log_id, f"o/{log_id}", scheme, size, bytes(32), "c\n")


def rendered(log_id: str, idx: int, proof_items: int | None) -> int:
    """The bytes one SearchEvent takes in a page, as query/events.py renders it."""
    item: dict[str, object] = {
        "envelope": orjson.Fragment(ENVELOPE),
        "hash": "ab" * 32,
        "log": log_id,
        "leaf_index": idx,
    }
    if proof_items is not None:
        item["membership_proof"] = ",".join(["l:" + "cd" * 32] * proof_items)
        item["published"] = True
    # Events are separated by a comma in the page's list.
    return len(orjson.dumps(item)) + 1 - len(ENVELOPE)


@pytest.mark.parametrize("size", [1, 2, 1000, 2**31 - 1, 2**62])
def test_the_bound_covers_the_largest_event_with_and_without_proofs(size: int) -> None:
    log_id = "t" * 249 + "-2147483647"  # Kafka's longest topic name and partition
    pangea = Snapshot((head(PANGEA_SHA256, size, log_id),), {})
    depth = (size - 1).bit_length()  # an inclusion proof has at most this many hashes
    assert rendered(log_id, size - 1, depth) <= overhead_bytes(pangea, verbose=True)
    assert rendered(log_id, size - 1, None) <= overhead_bytes(pangea, verbose=False)
    several = Snapshot((head(RFC6962_SHA256, size, log_id), head(RFC6962_SHA256, 5, "b-1")), {})
    assert rendered(log_id, size - 1, None) <= overhead_bytes(several, verbose=True)
    # …and stays a bound, not a guess several times too large.
    assert overhead_bytes(several, verbose=True) < 2 * rendered(log_id, size - 1, None)


def test_consumed_is_the_position_after_the_last_event_returned() -> None:
    keys = [("a", i, None) for i in range(5)]
    found = [Ev("a", 0, b"", b""), Ev("a", 1, b"", b"")]
    assert consumed(keys, found) == 2  # type: ignore[arg-type]
    assert consumed(keys, []) == 0  # type: ignore[arg-type]
    # A key without a row (never, in a sealed log) is passed over, not asked for again.
    assert consumed(keys, [Ev("a", 0, b"", b""), Ev("a", 2, b"", b"")]) == 3  # type: ignore[arg-type]
