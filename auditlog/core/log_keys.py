"""The key-name rule: the names a log's checkpoints are signed under, the ones verifiers accept.

C2SP's clients name a log's key after its origin: Tessera's client checks the checkpoint's
origin line against the verifier's key name, and the witness network's log lists take a log's
origin from its vkey's name. So every log signs its checkpoints under a key name equal to its
origin (``<AUDITLOG_ORIGIN>/<topic>/<partition>``). One Ed25519 key serves all the logs of a
deployment, each under its own name, so each log has its own vkey (the key ID covers the name)::

    <origin>+<key ID of (origin, key)>+<base64(0x01 || public key)>

Before this rule one name, the signing key file's own (the deployment-wide name, usually
``AUDITLOG_ORIGIN``), signed every log. A sealer can sign each checkpoint under both names for
a while (a key-name rotation): the two signature lines carry the same Ed25519 signature, since a
note's signature covers its text only, and differ only in name and key ID.

What a verifier accepts, given trusted keys: a checkpoint of origin ``O`` verifies when one of
them (its name, and so its key ID, as given) signed it, as for any note; and also when a trusted
key whose name covers ``O`` (is ``O``, or a ``/``-separated prefix of it) signed it under a name
that covers ``O`` too. So the deployment-wide vkey keeps verifying every log, whichever names
the sealer signs under now, and a log's own vkey verifies that log's checkpoints signed before
the change. Trust never widens: the key must cover the origin, exactly as a tlog-policy ``log``
line's name must (:func:`key_covers_origin`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.note import Note, NoteSigner, NoteVerifier, open_note, parse_note

__all__ = [
    "checkpoint_signers",
    "checkpoint_verifiers",
    "key_covers_origin",
    "log_vkey",
    "open_checkpoint_note",
]


def key_covers_origin(key_name: str, origin: str) -> bool:
    """Whether a log key named ``key_name`` may sign checkpoints of ``origin``."""
    return origin == key_name or origin.startswith(key_name + "/")


def log_vkey(key: NoteVerifier, origin: str) -> str:
    """The verifier key of the log ``origin``: ``key``'s public key under the origin's name."""
    return key.named(origin).vkey()


def checkpoint_signers(signer: NoteSigner, origin: str, *, legacy_name: bool) -> list[NoteSigner]:
    """Who signs a checkpoint of ``origin``: the key under the origin's name, and with
    ``legacy_name`` under its own (deployment-wide) name as well."""
    signers = [signer.named(origin)]
    if legacy_name and signer.name != origin:
        signers.append(signer)
    return signers


def checkpoint_verifiers(
    origin: str, trusted: Sequence[NoteVerifier], names: Iterable[str]
) -> list[NoteVerifier]:
    """The verifiers to open a checkpoint of ``origin`` with, whose signature lines carry
    ``names``: ``trusted`` as given, and each trusted key covering the origin under every one of
    ``names`` that covers it too."""
    covering = sorted({name for name in names if key_covers_origin(name, origin)})
    out = list(trusted)
    seen = {(v.name, v.key_id) for v in trusted}
    for key in trusted:
        if not key_covers_origin(key.name, origin):
            continue
        for name in covering:
            renamed = key.named(name)
            if (renamed.name, renamed.key_id) not in seen:
                seen.add((renamed.name, renamed.key_id))
                out.append(renamed)
    return out


def open_checkpoint_note(note: str, trusted: Sequence[NoteVerifier]) -> Note:
    """Open a signed checkpoint with the verifiers the key-name rule allows for its origin.

    As :func:`~auditlog.core.note.open_note`: SignatureError when a known key's signature is bad
    or no trusted key signed; MalformedNote when it is not a signed checkpoint.
    """
    parsed = parse_note(note)
    # The origin picks the keys to try; the note is verified before anything in it is trusted.
    origin = Checkpoint.from_text(parsed.text).origin
    names = {sig.name for sig in parsed.signatures}
    return open_note(note, checkpoint_verifiers(origin, trusted, names))
