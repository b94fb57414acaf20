"""The by-hand verifier in docs/verification.md works, on real receipts, and rejects tampering."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

ROOT = Path(__file__).resolve().parent.parent.parent
ORIGIN = "example.com/audit.events/0"


@pytest.fixture(scope="module")
def verify_by_hand() -> Callable[[str, dict[str, Any], str, str], int]:
    doc = (ROOT / "docs" / "verification.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n# verify_by_hand\n(.*?)```", doc, re.DOTALL)
    assert match, "docs/verification.md lost its verify_by_hand block"
    namespace: dict[str, Any] = {}
    # Runs the code block of our own documentation, nothing from outside the repository.
    exec(compile(match[1], "docs/verification.md", "exec"), namespace)
    fn: Callable[[str, dict[str, Any], str, str], int] = namespace["verify_by_hand"]
    return fn


@pytest.fixture(scope="module")
def vector() -> tuple[str, dict[str, Any], str]:
    notes = json.loads((ROOT / "tests" / "vectors" / "notes.json").read_text(encoding="utf-8"))
    receipt = notes["receipts"]["rfc6962-sha256"]
    return receipt["receipt"], json.loads(receipt["envelope"]), notes["vkey"]


def test_the_documented_verifier_accepts_a_real_receipt(
    verify_by_hand: Callable[[str, dict[str, Any], str, str], int],
    vector: tuple[str, dict[str, Any], str],
) -> None:
    receipt, envelope, vkey = vector
    assert verify_by_hand(receipt, envelope, vkey, ORIGIN) == 11


def test_the_documented_verifier_rejects_tampering(
    verify_by_hand: Callable[[str, dict[str, Any], str, str], int],
    vector: tuple[str, dict[str, Any], str],
) -> None:
    receipt, envelope, vkey = vector
    other = json.loads(json.dumps(envelope))
    other["event"]["message"] = "receipt event 6"
    with pytest.raises(ValueError, match="signed root"):
        verify_by_hand(receipt, other, vkey, ORIGIN)
    with pytest.raises(ValueError, match="signed root"):
        verify_by_hand(receipt.replace("index 7", "index 6"), envelope, vkey, ORIGIN)
    with pytest.raises(InvalidSignature):
        verify_by_hand(receipt.replace("\n11\n", "\n12\n"), envelope, vkey, ORIGIN)
    with pytest.raises(ValueError, match="checkpoint of"):
        verify_by_hand(receipt, envelope, vkey, "example.com/other")
