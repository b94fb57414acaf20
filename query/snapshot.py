"""The logs a search covers, as of one moment, and the Pangea root objects built from them.

A snapshot holds, for every log of the configured topic with something sealed, its head: the
size, root and signed checkpoint of the latest batch. It is read in the same repeatable-read
transaction as the search itself, so every event found is below its log's snapshot size, and
it is stored with the result set, so later pages carry the same roots and proofs.

Pangea's responses carry one root. A snapshot of exactly one ``pangea-sha256`` log (a
one-partition topic) is *Pangea-verifiable*: events get membership proofs and the root; with
several logs, or another hash scheme, events come without Pangea proofs (native receipts by
hash still prove each one).

Published roots: every signed checkpoint is a published root. ``published_at`` of a tree size
is when the first checkpoint at least that large was signed, i.e. when that tree became
committed to by a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from auditlog.core.hashing import PANGEA_SHA256
from query.proofs import LogHead, head_from_row


def rfc3339(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Snapshot:
    heads: tuple[LogHead, ...]
    published_at: dict[str, str]  # log_id -> when its head's checkpoint was signed

    @property
    def pangea(self) -> LogHead | None:
        """The one pangea-sha256 log when the snapshot is Pangea-verifiable, else None."""
        if len(self.heads) == 1 and self.heads[0].hash_scheme == PANGEA_SHA256:
            return self.heads[0]
        return None

    def head(self, log_id: str) -> LogHead | None:
        return next((h for h in self.heads if h.log_id == log_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "logs": [
                {
                    "log_id": h.log_id,
                    "origin": h.origin,
                    "hash_scheme": h.hash_scheme,
                    "size": h.size,
                    "root": h.root.hex(),
                    "checkpoint": h.checkpoint,
                    "published_at": self.published_at.get(h.log_id),
                }
                for h in self.heads
            ]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        heads = tuple(
            LogHead(
                d["log_id"],
                d["origin"],
                d["hash_scheme"],
                d["size"],
                bytes.fromhex(d["root"]),
                d["checkpoint"],
            )
            for d in data["logs"]
        )
        published = {d["log_id"]: d["published_at"] for d in data["logs"] if d["published_at"]}
        return cls(heads, published)


async def take(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool, topic: str
) -> Snapshot:
    """The heads of ``topic``'s logs now; call it inside the search's transaction."""
    rows = await conn.fetch(
        "SELECT l.log_id, l.origin, l.hash_scheme, l.size, l.root, l.checkpoint, c.created_at"
        " FROM logs l LEFT JOIN checkpoints c ON c.log_id = l.log_id AND c.size = l.size"
        " WHERE l.topic = $1 AND l.checkpoint IS NOT NULL AND l.size > 0"
        ' ORDER BY l.log_id COLLATE "C"',
        topic,
    )
    published = {r["log_id"]: rfc3339(r["created_at"]) for r in rows if r["created_at"]}
    return Snapshot(tuple(head_from_row(r) for r in rows), published)


def checkpoint_url(base: str, log_id: str, size: int) -> str:
    return f"{base}/v1/logs/{log_id}/checkpoints/{size}"


def root_object(head: LogHead, published_at: str | None, base: str) -> dict[str, Any]:
    """Pangea's Root for a head, with the signed checkpoint it stands for."""
    root: dict[str, Any] = {
        "tree_name": head.origin,
        "size": head.size,
        "root_hash": head.root.hex(),
        "url": checkpoint_url(base, head.log_id, head.size),
        "checkpoint": head.checkpoint,
    }
    if published_at is not None:
        root["published_at"] = published_at
    return root
