"""Realistic events for the Kafka-path benchmarks, as a file ``bench/kafkaload`` reads.

``bench/kafkaload`` (Go) sends a few million records a minute and cannot run Python's event
generator, so the events are made here once (:mod:`auditlog.loadtest.events`) and written one
JSON object a line: ``{"key": tenant_id or null, "head": ..., "tail": ...}``, where ``head`` and
``tail`` are the event's canonical JSON cut just inside its ``message`` string. Record ``i`` is
line ``i mod lines`` with ``"<tag> <i> "`` put at the start of its message, so every record is
distinct and the benchmarks still find their events by message prefix; the envelope is then
``{"event":`` + head + ``"<tag> <i> "`` + tail + ``,"received_at":"…"}``, which is canonical as it
stands (``event`` sorts before ``received_at``, and the prefix needs no escaping).
:func:`record_value` is that splice in Python; tests/unit/test_bench_corpus.py checks it against
:class:`~auditlog.core.envelope.Envelope`, and kafkaload's Go test pins one line's bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from auditlog.core.envelope import canonical_json
from auditlog.loadtest.events import EventGenerator

_MESSAGE_KEY = b'"message":"'
# What a tag may hold: printable ASCII that needs no JSON escaping.
_TAG = re.compile(r"[A-Za-z0-9._:/-]{1,64}")


def corpus_line(event: dict[str, Any]) -> dict[str, Any]:
    """One line of the corpus for ``event`` (which must have a string ``message``)."""
    canonical = canonical_json(event)
    # Keys are sorted and every value of the standard schema is a string, whose quotes are
    # escaped: the unescaped key can only be the message's own.
    cut = canonical.index(_MESSAGE_KEY) + len(_MESSAGE_KEY)
    tenant = event.get("tenant_id")
    return {
        "key": tenant if isinstance(tenant, str) else None,
        "head": canonical[:cut].decode("utf-8"),
        "tail": canonical[cut:].decode("utf-8"),
    }


def write_corpus(path: Path, lines: int, *, seed: int = 1) -> Path:
    """Write ``lines`` realistic events to ``path``; returns ``path``."""
    generator = EventGenerator(seed)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(lines):
            out.write(json.dumps(corpus_line(generator.event()), ensure_ascii=False) + "\n")
    return path


def record_value(line: dict[str, Any], tag: str, i: int, received_at: str) -> bytes:
    """The record value kafkaload builds for event ``i`` from ``line``."""
    if not _TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r} must match {_TAG.pattern}")
    return (
        b'{"event":'
        + line["head"].encode()
        + f"{tag} {i} ".encode()
        + line["tail"].encode()
        + b',"received_at":"'
        + received_at.encode()
        + b'"}'
    )
