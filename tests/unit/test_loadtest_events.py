"""The event generator makes what its documentation says: sizes, entropy, variety, determinism."""

from __future__ import annotations

import collections
import math
from datetime import UTC, datetime

import pytest

from auditlog.core.envelope import Envelope
from auditlog.loadtest.events import MAX_ENVELOPE, MIN_ENVELOPE, EventGenerator

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RECEIVED = "2026-12-04T12:00:00.000000Z"


def sample(n: int, **kw: object) -> list[dict[str, object]]:
    gen = EventGenerator(1, **kw)  # type: ignore[arg-type]
    return [gen.event(NOW) for _ in range(n)]


@pytest.fixture(scope="module")
def events() -> list[dict[str, object]]:
    return sample(10_000)


def entropy(text: str) -> float:
    counts = collections.Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def messages(evs: list[dict[str, object]]) -> list[str]:
    return [str(e["message"]) for e in evs]


def test_envelopes_are_200_bytes_to_4_kib_with_a_realistic_spread(
    events: list[dict[str, object]],
) -> None:
    sizes = sorted(len(Envelope(e, RECEIVED).canonical) for e in events)
    assert sizes[0] >= MIN_ENVELOPE
    assert sizes[-1] <= MAX_ENVELOPE
    assert 380 <= sizes[len(sizes) // 2] <= 460  # ~420 B at the median
    assert 1000 <= sizes[int(len(sizes) * 0.99)] <= 1700  # ~1.3 KiB at the 99th percentile


def test_messages_carry_real_text_entropy(events: list[dict[str, object]]) -> None:
    text = "".join(messages(events))
    assert entropy(text) >= 4.8  # ~5 bits per character
    words = {w for m in messages(events) for w in m.split()}
    assert len(words) >= 25_000  # ~35,000
    trigrams = {m[i : i + 3] for m in messages(events) for i in range(len(m) - 2)}
    assert len(trigrams) >= 12_000  # ~17,000


def test_standard_fields_are_filled_as_services_fill_them(
    events: list[dict[str, object]],
) -> None:
    statuses = collections.Counter(e["status"] for e in events)
    assert 0.8 <= statuses["success"] / len(events) <= 0.9
    for optional in ("target", "source", "tenant_id", "timestamp"):
        missing = sum(optional not in e for e in events) / len(events)
        assert 0.07 <= missing <= 0.13, optional
    with_diff = sum("old" in e for e in events) / len(events)
    assert 0.17 <= with_diff <= 0.23
    tenants = collections.Counter(e.get("tenant_id") for e in events if "tenant_id" in e)
    assert len(tenants) == 50
    assert tenants.most_common(1)[0][1] > 5 * tenants.most_common()[-1][1]  # skewed


def test_a_seed_gives_the_same_events() -> None:
    assert sample(200) == sample(200)
    assert sample(50) != [EventGenerator(2).event(NOW) for _ in range(50)]


def test_templated_events_are_the_labelled_best_case() -> None:
    evs = sample(10_000, templated=True)
    words = {w for m in messages(evs) for w in m.split()}
    assert len(words) < 10_100  # one pattern and a counter
    trigrams = {m[i : i + 3] for m in messages(evs) for i in range(len(m) - 2)}
    assert len(trigrams) < 2_000
