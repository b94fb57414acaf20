"""Client-side event signatures as Pangea's SDKs make them (``sign_local``).

The signature is Ed25519 over the canonical JSON of the event object (not the envelope), base64;
``public_key`` is a JSON string ``{"algorithm": "ED25519", "key": "<SPKI PEM>", ...}`` or, in the
legacy form, the key itself (PEM, OpenSSH, or base64 whose last 32 bytes are the raw key).
Verification is pure computation: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key, load_ssh_public_key

from auditlog.core.envelope import canonical_json
from auditlog.core.errors import InvalidEvent


class BadClientSignature(InvalidEvent):
    """The event's signature does not verify with its public key, or the key is unusable."""


def _load_key(public_key: str) -> Ed25519PublicKey:
    text = public_key
    try:
        parsed = json.loads(public_key)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        algorithm = parsed.get("algorithm", "ED25519")
        if algorithm != "ED25519":
            raise BadClientSignature(f"unsupported signature algorithm {algorithm!r}")
        text = str(parsed.get("key", ""))
    try:
        if text.startswith("----"):
            key = load_pem_public_key(text.encode())
        elif text.startswith("ssh-"):
            key = load_ssh_public_key(text.encode())
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) < 32:
                raise BadClientSignature("public key is shorter than 32 bytes")
            key = Ed25519PublicKey.from_public_bytes(raw[-32:])
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise BadClientSignature(f"public key cannot be loaded: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BadClientSignature("public key is not an Ed25519 key")
    return key


def verify_event_signature(event: Mapping[str, object], signature: str, public_key: str) -> None:
    """Raise :class:`BadClientSignature` unless ``signature`` signs ``event``."""
    key = _load_key(public_key)
    try:
        sig = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BadClientSignature("signature is not base64") from exc
    try:
        key.verify(sig, canonical_json(event))
    except InvalidSignature as exc:
        raise BadClientSignature("signature does not verify with the event's public key") from exc
