"""``auditlog verify``: a receipt for an envelope, or one checkpoint extending another, offline.

These trust only the verifier keys (and the policy) given on the command line. ``--origin`` pins
the one log a receipt or checkpoint may come from; a policy's ``log`` lines pin the origins their
keys may sign (the key name, or below it); ``--max-cosignature-age`` makes stale witness
cosignatures not count toward the policy's quorum.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from auditlog.cli.args import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    UsageError,
    freshness,
    hasher,
    policy,
    read_arg_file,
    vkeys,
)


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    import sys

    from auditlog.core.envelope import Envelope
    from auditlog.core.errors import AuditLogError, InvalidEvent
    from auditlog.core.log_keys import open_checkpoint_note
    from auditlog.core.receipt import Receipt, verify_receipt

    log_policy = policy(args.policy)
    keys = vkeys(args.key or [])
    verifiers = [*keys, *log_policy.logs] if log_policy is not None else keys
    if not verifiers:
        raise UsageError("give the log's verifier key with --key (or a policy with a log line)")
    fresh = freshness(args, log_policy)
    log_hasher = hasher(args.hash_scheme)
    if args.erasure:
        return _verify_erased(args, verifiers, log_hasher)
    if not args.entry:
        raise UsageError("give the event's envelope with --entry (or --erasure for an erased one)")
    try:
        envelope_obj = json.loads(read_arg_file(args.entry, "envelope"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"envelope is not JSON: {exc}") from exc
    if isinstance(envelope_obj, dict) and "envelope" in envelope_obj:
        envelope_obj = envelope_obj["envelope"]  # accept a Pangea log/search result as well
    receipt_text = read_arg_file(args.receipt, "receipt")
    try:
        envelope = Envelope.from_obj(envelope_obj)
        receipt = Receipt.from_text(receipt_text)
        verified = verify_receipt(receipt, envelope.canonical, verifiers, log_hasher, args.origin)
        signers = [
            sig.name for sig in open_checkpoint_note(receipt.checkpoint, verifiers).signatures
        ]
        # Fail closed: with a policy, the log's signature alone is not enough, and a policy log
        # key signs only the origins its name covers (keys from --key are pinned by --origin).
        cosigned = (
            log_policy.verify(receipt.checkpoint, keys, args.origin, fresh)
            if log_policy is not None
            else None
        )
    except InvalidEvent as exc:
        print(f"FAILED: the envelope is not a valid audit envelope: {exc}")
        return EXIT_FAILED
    except AuditLogError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    cp = verified.checkpoint
    print(
        f"OK: event {envelope.event_hash.hex()} is entry {verified.index} of {cp.origin} "
        f"at size {cp.size}, root {cp.root.hex()}, signed by {', '.join(signers)}"
        + (
            f"; witness quorum met ({', '.join(sorted(cosigned.cosigners)) or 'none needed'})"
            if cosigned is not None
            else ""
        )
    )
    # A log's own vkey (its name is the origin) pins that one log; any other key set may cover
    # several logs.
    if args.origin is None and [v.name for v in verifiers] != [cp.origin]:
        print(
            f"note: the origin was not pinned; --origin {cp.origin} (or this log's own vkey as"
            " --key) accepts this log's receipts only, not those of any log the keys sign",
            file=sys.stderr,
        )
    return EXIT_OK


def _verify_erased(args: argparse.Namespace, verifiers: list[Any], log_hasher: Any) -> int:
    """``verify receipt --erasure RECORD``: the erased entry's receipt, with its record."""
    from auditlog.core.errors import AuditLogError
    from auditlog.core.log_statements import verify_erased_receipt
    from auditlog.core.receipt import Receipt

    record_note = read_arg_file(args.erasure, "erasure record")
    try:
        receipt = Receipt.from_text(read_arg_file(args.receipt, "receipt"))
        cp, record = verify_erased_receipt(receipt, record_note, verifiers, log_hasher, args.origin)
    except AuditLogError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    print(
        f"OK: an entry with hash {record.event_hash.hex()} is entry {record.index} of"
        f" {cp.origin} at size {cp.size}, root {cp.root.hex()}; its content was erased at"
        f" {record.time}: {record.reason}"
    )
    return EXIT_OK


def _consistency_proof(args: argparse.Namespace, old_note: str, new_note: str) -> list[bytes]:
    """The proof from --proof (base64 lines, or an add-checkpoint body) or fetched from --url."""
    import base64
    import binascii

    from auditlog.core.checkpoint import Checkpoint
    from auditlog.core.cosignature import AddCheckpoint
    from auditlog.core.errors import AuditLogError
    from auditlog.core.note import parse_note

    if args.proof:
        text = read_arg_file(args.proof, "proof")
        if text.startswith("old "):
            try:
                return list(AddCheckpoint.from_text(text).proof)
            except AuditLogError as exc:
                raise UsageError(f"proof file: {exc}") from exc
        try:
            return [base64.b64decode(line, validate=True) for line in text.split()]
        except (ValueError, binascii.Error) as exc:
            raise UsageError(f"proof file: not base64 lines: {exc}") from exc
    if not args.url:
        raise UsageError("give the proof with --proof FILE or fetch it with --url")
    from auditlog.verify.monitor import proof_from_tiles
    from auditlog.verify.read_api import ReadApi, ReadApiError

    try:
        old = Checkpoint.from_text(parse_note(old_note).text)
        new = Checkpoint.from_text(parse_note(new_note).text)
    except AuditLogError as exc:
        raise UsageError(f"not a checkpoint: {exc}") from exc
    if new.size <= old.size or old.size == 0:
        return []
    try:
        with ReadApi(args.url) as api:
            log = args.log or next(
                (str(e["log"]) for e in api.logs() if e.get("origin") == old.origin), None
            )
            if log is None:
                raise UsageError(f"{args.url} serves no log with origin {old.origin!r}")
            answer = api.consistency(log, old.size, new.size)
            if answer is not None:
                return answer.proof
            return proof_from_tiles(api, log, hasher(args.hash_scheme), old.size, new.size)
    except ReadApiError as exc:
        raise UsageError(str(exc)) from exc


def cmd_verify_consistency(args: argparse.Namespace) -> int:
    from auditlog.core.consistency import verify_checkpoints
    from auditlog.core.errors import AuditLogError

    log_policy = policy(args.policy)
    verifiers = vkeys(args.key or [])
    if not verifiers and not (log_policy and log_policy.logs):
        raise UsageError("give the log's verifier key with --key (or a policy with a log line)")
    old_note = read_arg_file(args.old, "old checkpoint")
    new_note = read_arg_file(args.new, "new checkpoint")
    fresh = freshness(args, log_policy)
    proof = _consistency_proof(args, old_note, new_note)
    try:
        result = verify_checkpoints(
            old_note,
            new_note,
            proof,
            verifiers,
            hasher(args.hash_scheme),
            log_policy,
            origin=args.origin,
            freshness=fresh,
        )
    except AuditLogError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    print(
        f"OK: {result.new.origin} at size {result.new.size} (root {result.new.root.hex()}) "
        f"extends size {result.old.size} (root {result.old.root.hex()})"
    )
    return EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    ver = sub.add_parser("verify", help="verify receipts offline")
    vers = ver.add_subparsers(dest="verify_cmd", required=True)
    rec = vers.add_parser("receipt", help="verify a c2sp.org/tlog-proof@v1 receipt for an envelope")
    rec.add_argument("receipt", help="receipt file ('-' for stdin)")
    rec.add_argument("--entry", help="the event's envelope as JSON (file)")
    rec.add_argument(
        "--erasure",
        metavar="RECORD",
        help="an erased entry's signed erasure record (file), instead of --entry",
    )
    rec.add_argument("--key", action="append", help="verifier key or key file (repeatable)")
    rec.add_argument("--hash-scheme", default="rfc6962-sha256")
    rec.add_argument("--origin", help="accept only a checkpoint of this log (its origin line)")
    rec.add_argument(
        "--policy", help="C2SP tlog-policy file: also require its witness quorum (fail closed)"
    )
    rec.add_argument(
        "--max-cosignature-age",
        type=int,
        metavar="SECONDS",
        help="with --policy: witness cosignatures older than this do not count toward the quorum",
    )
    rec.set_defaults(func=cmd_verify_receipt)

    con = vers.add_parser("consistency", help="verify that checkpoint NEW extends checkpoint OLD")
    con.add_argument("old", help="the older signed checkpoint (file, '-' for stdin)")
    con.add_argument("new", help="the newer signed checkpoint (file)")
    con.add_argument("--key", action="append", help="verifier key or key file (repeatable)")
    con.add_argument("--proof", help="proof file: base64 hashes, or a tlog-witness request body")
    con.add_argument("--url", help="fetch the proof from this read API instead")
    con.add_argument(
        "--log", help="log id at --url (default: the log with the checkpoint's origin)"
    )
    con.add_argument("--hash-scheme", default="rfc6962-sha256")
    con.add_argument("--origin", help="accept only checkpoints of this log (its origin line)")
    con.add_argument("--policy", help="C2SP tlog-policy file both checkpoints must satisfy")
    con.add_argument(
        "--max-cosignature-age",
        type=int,
        metavar="SECONDS",
        help="with --policy: the new checkpoint's witness cosignatures must be this recent",
    )
    con.set_defaults(func=cmd_verify_consistency)
