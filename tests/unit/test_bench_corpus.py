"""The realistic-event corpus of the Kafka-path benchmarks makes canonical envelopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditlog.core.envelope import Envelope
from auditlog.loadtest.events import EventGenerator
from bench.corpus import corpus_line, record_value, write_corpus

RECEIVED = "2026-12-04T21:00:00.123456Z"


def test_spliced_records_are_the_canonical_envelopes_of_the_prefixed_events() -> None:
    generator = EventGenerator(3)
    for i in range(2000):
        event = generator.event()
        value = record_value(corpus_line(event), "live", i, RECEIVED)
        expected = Envelope({**event, "message": f"live {i} {event['message']}"}, RECEIVED)
        assert value == expected.canonical
        assert Envelope.from_bytes(value).canonical == value  # the sealer takes it as it is


def test_the_key_is_the_tenant(tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "corpus.jsonl", 500)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 500
    with_tenant = [line for line in lines if line["key"] is not None]
    assert 0.85 <= len(with_tenant) / len(lines) <= 0.95  # one event in ten has no tenant_id
    assert all(f'"tenant_id":"{line["key"]}"' in line["tail"] for line in with_tenant)


@pytest.mark.parametrize("tag", ["", 'a"b', "a\\b", "a b", "é"])
def test_a_tag_that_would_need_escaping_is_refused(tag: str) -> None:
    line = corpus_line(EventGenerator(1).event())
    with pytest.raises(ValueError, match="tag"):
        record_value(line, tag, 0, RECEIVED)
