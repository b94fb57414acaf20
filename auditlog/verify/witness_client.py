"""Asking witnesses to cosign: the tlog-witness client a log (the sealer) uses.

:func:`add_checkpoint` is one request. :func:`cosign_checkpoint` asks every witness of a policy
in parallel, each from the size it last cosigned (learnt from a 409 when unknown), and returns
the note with the cosignatures it got, but only when the policy's quorum is met: a checkpoint
that misses the quorum must not be published. Each witness's answer is counted in
``auditlog_witness_requests_total{witness,result}`` (``ok``: a cosignature that verifies;
``failed``: anything else) and timed in ``auditlog_witness_request_duration_seconds{witness}``.
"""

from __future__ import annotations

import asyncio
import http.client
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from auditlog.core.cosignature import AddCheckpoint, verified_cosigners
from auditlog.core.errors import AuditLogError
from auditlog.core.policy import Policy

__all__ = [
    "Witness",
    "WitnessConflict",
    "WitnessError",
    "add_checkpoint",
    "cosign_checkpoint",
]

ProofSource = Callable[[int, int], Awaitable[Sequence[bytes]]]

WITNESS_REQUESTS = Counter(
    "auditlog_witness_requests_total",
    "Checkpoints submitted to each witness, by outcome (ok: a valid cosignature)",
    ["witness", "result"],
)
WITNESS_SECONDS = Histogram(
    "auditlog_witness_request_duration_seconds",
    "Time a witness took to cosign a checkpoint (its 409 round trips included), or to fail",
    ["witness"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class WitnessError(AuditLogError):
    """A witness refused (403, 404, 422, 400...), failed or timed out."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WitnessConflict(WitnessError):  # noqa: N818 - the 409 of the protocol
    """409: the witness's last cosigned size is ``size``, not the old size sent."""

    def __init__(self, size: int) -> None:
        super().__init__(f"witness is at size {size}", 409)
        self.size = size


def _post(url: str, body: bytes, timeout: float) -> tuple[int, bytes, str]:
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path.rstrip("/") + "/add-checkpoint"
        conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        # A witness answers a cosignature or a checkpoint: 64 KiB is far more than either.
        return resp.status, resp.read(64 * 1024), resp.getheader("Content-Type") or ""
    finally:
        conn.close()


async def add_checkpoint(
    url: str, old_size: int, proof: Sequence[bytes], note: str, *, seconds: float = 1.0
) -> list[str]:
    """POST ``<url>/add-checkpoint``; the cosignature lines (without newlines) on 200.

    Raises WitnessConflict on 409 (with the witness's size) and WitnessError otherwise.
    """
    body = AddCheckpoint(old_size, tuple(proof), note).to_text().encode("utf-8")
    try:
        status, answer, ctype = await asyncio.wait_for(
            asyncio.to_thread(_post, url, body, seconds), seconds + 0.5
        )
    except (OSError, http.client.HTTPException, TimeoutError) as exc:
        raise WitnessError(f"witness {url}: {exc or type(exc).__name__}") from exc
    text = answer.decode("utf-8", "replace")
    if status == 409 and ctype.startswith("text/x.tlog.size"):
        digits = text.strip()
        if digits.isdigit():
            raise WitnessConflict(int(digits))
    if status != 200:
        raise WitnessError(f"witness {url} answered {status}: {text.strip()[:200]}", status)
    lines = [line for line in text.split("\n") if line]
    if not lines or not all(line.startswith("\u2014 ") for line in lines):
        raise WitnessError(f"witness {url} answered 200 without cosignature lines", status)
    return lines


@dataclass(slots=True)
class Witness:
    """A witness to ask: its policy name, submission prefix URL, and last size it cosigned."""

    name: str
    url: str
    size: int | None = None  # None: unknown until the first answer


async def _timed_ask(
    witness: Witness, note: str, size: int, proofs: ProofSource, seconds: float
) -> list[str]:
    started = time.perf_counter()
    try:
        return await _ask(witness, note, size, proofs, seconds)
    finally:
        WITNESS_SECONDS.labels(witness.name).observe(time.perf_counter() - started)


async def _ask(
    witness: Witness, note: str, size: int, proofs: ProofSource, seconds: float
) -> list[str]:
    old = witness.size or 0
    for _ in range(2):
        proof = await proofs(old, size) if 0 < old < size else ()
        try:
            lines = await add_checkpoint(witness.url, old, proof, note, seconds=seconds)
        except WitnessConflict as conflict:
            if conflict.size > size:
                witness.size = conflict.size
                raise
            old = conflict.size
            continue
        witness.size = size
        return lines
    raise WitnessError(f"witness {witness.url} keeps changing size")


async def cosign_checkpoint(
    note: str,
    size: int,
    witnesses: Sequence[Witness],
    policy: Policy,
    proofs: ProofSource,
    *,
    seconds: float = 1.0,
) -> str | None:
    """The note with the witnesses' cosignatures if ``policy`` is met; None otherwise.

    ``proofs(old, new)`` returns the RFC 6962 consistency proof between two sizes of this log
    (the sealer builds it from its tiles). Each witness's last known size is updated in place.
    ``seconds`` bounds each request (tessera uses 1 s): a slow witness only costs its vote.
    """
    results = await asyncio.gather(
        *(_timed_ask(w, note, size, proofs, seconds) for w in witnesses), return_exceptions=True
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r
    # Keep only lines that verify on their own: one witness's garbage must not sink the rest.
    good = []
    for witness, result in zip(witnesses, results, strict=True):
        valid = [] if isinstance(result, BaseException) else _valid(note, result, policy)
        WITNESS_REQUESTS.labels(witness.name, "ok" if valid else "failed").inc()
        good += valid
    cosigned = note + "".join(line + "\n" for line in good)
    return cosigned if policy.satisfied(verified_cosigners(cosigned, policy.witnesses)) else None


def _valid(note: str, lines: list[str], policy: Policy) -> list[str]:
    """The cosignature lines that verify on ``note`` by a witness of ``policy``."""
    good = []
    for line in lines:
        try:
            if verified_cosigners(note + line + "\n", policy.witnesses):
                good.append(line)
        except AuditLogError:
            continue
    return good
