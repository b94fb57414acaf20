"""CSV downloads: no field cell reaches a spreadsheet as a formula; the envelope stays exact."""

from __future__ import annotations

import csv
import io
import json

import pytest

from query.downloads import _csv_line, spreadsheet_safe
from query.events import SealedEvent


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("plain text", "plain text"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_formula_starts_are_neutralised(text: str, safe: str) -> None:
    assert spreadsheet_safe(text) == safe


def test_a_csv_line_neutralises_fields_and_keeps_the_envelope() -> None:
    envelope = json.dumps(
        {"event": {"actor": "=cmd|' /C calc'!A0", "message": "@evil"},
         "received_at": "2026-12-04T00:00:00.000000Z"},
        sort_keys=True, separators=(",", ":"),
    ).encode()
    ev = SealedEvent("l-0", 7, b"\x01" * 32, envelope)
    row = next(csv.reader(io.StringIO(_csv_line(ev, None))))
    assert row[5] == "'=cmd|' /C calc'!A0"  # actor
    assert row[11] == "'@evil"  # message
    assert row[-1].encode() == envelope
