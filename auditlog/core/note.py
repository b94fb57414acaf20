"""C2SP signed notes with Ed25519 keys, byte-compatible with Go's ``golang.org/x/mod/sumdb/note``.

A signed note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key ID || signature)>`` (U+2014 em dash). The signature covers the text
including its final newline. Keys are written as Go writes them::

    vkey: <name>+<hex key ID>+<base64(0x01 || 32-byte public key)>
    skey: PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>

with ``key ID = SHA-256(name || "\\n" || 0x01 || public key)[:4]``.

Opening a note follows Go's rules: signatures from unknown keys are ignored (that is what lets a
log rotate keys and witnesses add cosignatures); a known key whose signature fails rejects the
whole note; repeated signatures by one key are ignored after the first; at most 100 signatures
(the spec requires accepting at least 16).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditlog.core.errors import MalformedNote, SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

ALG_ED25519: Final = 0x01
MAX_SIGNATURES: Final = 100
_SIG_PREFIX: Final = "\u2014 "
_KEY_ID_SIZE: Final = 4


def key_id(name: str, key: bytes) -> bytes:
    """The 4-byte key ID of ``key`` (signature type byte included) under ``name``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:_KEY_ID_SIZE]


def _valid_name(name: str) -> bool:
    # Non-empty, no Unicode white space, no "+": str.isspace agrees with Go's unicode.IsSpace
    # on every code point that can appear in valid UTF-8.
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and _utf8(name)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"bad base64 {text!r}") from exc


def _check_text(text: str) -> None:
    if not _utf8(text) or any(c < " " and c != "\n" for c in text):
        raise MalformedNote("note must be UTF-8 without control characters other than newline")


class NoteVerifier:
    """A trusted Ed25519 public key under a name; built from a vkey string."""

    __slots__ = ("_public", "key_id", "name")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not _valid_name(name):
            raise MalformedNote(f"invalid key name {name!r}")
        self.name = name
        self._public = public_key
        self.key_id = key_id(name, bytes([ALG_ED25519]) + self.public_bytes)

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``; MalformedNote if invalid."""
        name, _, rest = vkey.partition("+")
        hex_id, _, key64 = rest.partition("+")
        try:
            key = _b64decode(key64)
            expected_id = bytes.fromhex(hex_id) if len(hex_id) == 8 else b""
        except ValueError as exc:
            raise MalformedNote(f"malformed verifier key {vkey!r}") from exc
        if len(expected_id) != _KEY_ID_SIZE or not _valid_name(name) or not key:
            raise MalformedNote(f"malformed verifier key {vkey!r}")
        if key[0] != ALG_ED25519 or len(key) != 33:
            raise MalformedNote(f"verifier key {name!r} is not an Ed25519 key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(key[1:]))
        if verifier.key_id != expected_id:
            raise MalformedNote(f"verifier key {name!r}: key ID does not match the key")
        return verifier

    def named(self, name: str) -> NoteVerifier:
        """The same public key under another name (and so another key ID)."""
        return NoteVerifier(name, self._public)

    def vkey(self) -> str:
        """The vkey string for this key."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_bytes).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (without the key ID) is this key's signature over ``text``."""
        try:
            self._public.verify(sig, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey()!r})"


class NoteSigner:
    """An Ed25519 signing key under a name."""

    __slots__ = ("_private", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._verifier = NoteVerifier(name, private_key.public_key())

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    @property
    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return self._verifier

    def named(self, name: str) -> NoteSigner:
        """The same key material signing under another name (and so another key ID)."""
        return NoteSigner(name, self._private)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A new random key (from the OS CSPRNG, via ``cryptography``)."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``; MalformedNote if bad.

        The key ID is checked against the public key derived from the seed, as Go does.
        """
        private, _, rest = skey.partition("+")
        key_word, _, rest = rest.partition("+")
        name, _, rest = rest.partition("+")
        hex_id, _, key64 = rest.partition("+")
        try:
            key = _b64decode(key64)
            expected_id = bytes.fromhex(hex_id) if len(hex_id) == 8 else b""
        except ValueError as exc:
            raise MalformedNote("malformed signer key") from exc
        if private != "PRIVATE" or key_word != "KEY" or len(expected_id) != _KEY_ID_SIZE:
            raise MalformedNote("malformed signer key")
        if not _valid_name(name) or len(key) != 33 or key[0] != ALG_ED25519:
            # The message never includes the key material itself.
            raise MalformedNote(f"signer key {name!r} is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
        if signer.key_id != expected_id:
            raise MalformedNote(f"signer key {name!r}: key ID does not match the key")
        return signer

    def skey(self) -> str:
        """The Go-compatible private key string. Secret: handle like a password."""
        seed = self._private.private_bytes_raw()
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def vkey(self) -> str:
        """The public vkey string to hand to verifiers."""
        return self._verifier.vkey()

    def sign(self, text: str) -> str:
        """The signature line for ``text`` (no trailing newline): ``— <name> <base64>``."""
        _check_text(text)
        sig = self._private.sign(text.encode("utf-8"))
        encoded = base64.b64encode(self.key_id + sig).decode("ascii")
        return f"{_SIG_PREFIX}{self.name} {encoded}"

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()!r})"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, and the signature bytes after the ID."""

    name: str
    key_id: bytes
    sig: bytes

    def line(self) -> str:
        """The signature line without its trailing newline."""
        encoded = base64.b64encode(self.key_id + self.sig).decode("ascii")
        return f"{_SIG_PREFIX}{self.name} {encoded}"


@dataclass(frozen=True)
class Note:
    """A note's text (with its final newline) and signatures.

    From :func:`parse_note` the signatures are all those present; from :func:`open_note` only
    the verified ones.
    """

    text: str
    signatures: list[NoteSignature]


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` (which must end in a newline) with every signer; returns the whole note."""
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    if not signers:
        raise SignatureError("a note needs at least one signature")
    lines = [signer.sign(text) for signer in signers]
    return text + "\n" + "".join(line + "\n" for line in lines)


def parse_note(data: str) -> Note:
    """Split a signed note into text and signatures without verifying anything."""
    _check_text(data)
    split = data.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line before the signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote("a note must end with signature lines, each ending in a newline")
    signatures: list[NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNote(f"not a signature line: {line!r}")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = _b64decode(encoded)
        except ValueError as exc:
            raise MalformedNote(f"bad signature encoding for key {name!r}") from exc
        if not _valid_name(name) or not encoded or len(raw) <= _KEY_ID_SIZE:
            raise MalformedNote(f"malformed signature line: {line!r}")
        signatures.append(NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
        if len(signatures) > MAX_SIGNATURES:
            raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    return Note(text, signatures)


def open_note(data: str, verifiers: Sequence[NoteVerifier]) -> Note:
    """Parse and verify a note against trusted keys; returns it with its verified signatures.

    Unknown keys are ignored. SignatureError when a known key's signature is bad or when no
    known key signed at all; MalformedNote when the note cannot be parsed.
    """
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        if verifier is None or ident in seen:
            continue
        seen.add(ident)
        if not verifier.verify(message, sig.sig):
            raise SignatureError(f"signature by {sig.name} ({sig.key_id.hex()}) does not verify")
        verified.append(sig)
    if not verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "none given"
        raise SignatureError(f"note is not signed by any trusted key ({names})")
    return Note(note.text, verified)
