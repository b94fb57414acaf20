"""Pruned bounds and erasure records: one spelling each, signed by the log's key only."""

from __future__ import annotations

import hashlib

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.errors import MalformedNote, SignatureError
from auditlog.core.log_statements import (
    ErasureRecord,
    PrunedBound,
    bound_went_back,
    erased_entry,
    erased_entry_leaf,
    open_erasure,
    open_pruned,
    sign_statement,
)
from auditlog.core.note import NoteSigner

ORIGIN = "example.test/audit.events/0"
ROOT = hashlib.sha256(b"root").digest()
T = "2026-01-02T03:04:05Z"


def _signer() -> NoteSigner:
    return NoteSigner.generate("example.test")


def test_pruned_round_trip_and_signature() -> None:
    signer = _signer()
    bound = PrunedBound(ORIGIN, 512, 700, ROOT, T)
    note = sign_statement(bound, signer)
    # The deployment-wide key and the log's own vkey both verify, as for checkpoints.
    assert open_pruned(note, [signer.verifier]) == bound
    assert open_pruned(note, [signer.verifier.named(ORIGIN)]) == bound
    with pytest.raises(SignatureError):
        open_pruned(note, [_signer().verifier])
    forged = note.replace("below 512", "below 600")
    with pytest.raises(SignatureError):
        open_pruned(forged, [signer.verifier])


def test_statements_are_never_checkpoints() -> None:
    text = PrunedBound(ORIGIN, 1, 2, ROOT, T).to_text()
    with pytest.raises(MalformedNote):
        Checkpoint.from_text(text)
    record = ErasureRecord(ORIGIN, 3, ROOT, ROOT, T, "GDPR art. 17 request 42")
    with pytest.raises(MalformedNote):
        Checkpoint.from_text(record.to_text())
    with pytest.raises(MalformedNote):
        PrunedBound.from_text(record.to_text())


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\nauditlog-pruned/v1\nbelow 05\ncheckpoint 9 {'A' * 43}=\ntime {T}\n",
        f"{ORIGIN}\nauditlog-pruned/v1\nbelow 10\ncheckpoint 9 {'A' * 43}=\ntime {T}\n",
        f"{ORIGIN}\nauditlog-pruned/v1\nbelow 1\ncheckpoint 9 {'A' * 43}=\ntime 2026-1-2\n",
        f"{ORIGIN}\nauditlog-pruned/v1\ncheckpoint 9 {'A' * 43}=\nbelow 1\ntime {T}\n",
        f"{ORIGIN}\nauditlog-pruned/v1\nbelow 1\ncheckpoint 9 {'A' * 43}=\ntime {T}\nextra\n",
    ],
)
def test_pruned_parsing_is_strict(text: str) -> None:
    with pytest.raises(MalformedNote):
        PrunedBound.from_text(text)


def test_erasure_round_trip() -> None:
    signer = _signer()
    leaf = hashlib.sha256(b"leaf").digest()
    record = ErasureRecord(ORIGIN, 7, ROOT, leaf, T, "court order 2026/17")
    assert open_erasure(sign_statement(record, signer), [signer.verifier]) == record
    with pytest.raises(MalformedNote):
        ErasureRecord(ORIGIN, 7, ROOT, leaf, T, "two\nlines")
    upper = record.to_text().replace(ROOT.hex(), ROOT.hex().upper())
    with pytest.raises(MalformedNote):
        ErasureRecord.from_text(upper)


def test_bound_went_back() -> None:
    low = PrunedBound(ORIGIN, 100, 200, ROOT, T)
    high = PrunedBound(ORIGIN, 150, 300, ROOT, T)
    assert not bound_went_back(low, high)
    assert bound_went_back(high, PrunedBound(ORIGIN, 120, 400, ROOT, T))
    assert not bound_went_back(high, PrunedBound(ORIGIN, 150, 400, ROOT, T))


def test_erased_entry_placeholder() -> None:
    leaf = hashlib.sha256(b"x").digest()
    assert erased_entry_leaf(erased_entry(leaf)) == leaf
    assert erased_entry_leaf(b'{"event":{}}') is None
    assert erased_entry_leaf(erased_entry(leaf).upper()) is None
