"""``auditlog witness``: a C2SP tlog-witness serving ``POST /add-checkpoint``.

The verdict is :func:`auditlog.core.cosignature.decide_add_checkpoint`; this module is its edge.
State (the last cosigned size, root and note per origin) lives in an SQLite file. Each request
is decided inside ``BEGIN IMMEDIATE``, which takes SQLite's write lock before reading, so
checking the old size and storing the new one are one atomic step across threads *and*
processes: two concurrent requests can never roll the witness back.

Also serves ``GET /checkpoint/<sha256(origin) hex>``-style reads for monitors
(``GET /checkpoints/{origin_hash}``: the last cosigned note, with this witness's cosignature).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auditlog.core.cosignature import AddCheckpoint, Cosigner, WitnessAnswer, decide_add_checkpoint
from auditlog.core.errors import NoteError
from auditlog.core.hashing import LogHasher
from auditlog.core.note import NoteVerifier
from auditlog.web.limits import BodyLimit, BodyTooLarge

__all__ = ["WitnessState", "create_app"]

MAX_BODY = 64 * 1024  # 63 proof lines and a note with 100 signatures fit many times over


class WitnessState:
    """The SQLite file holding, per origin, the latest cosigned checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS witnessed ("
                " origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,"
                " note TEXT NOT NULL, cosigned TEXT NOT NULL, updated_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def add_checkpoint(
        self,
        request: AddCheckpoint,
        logs: Mapping[str, Sequence[NoteVerifier]],
        hasher: LogHasher,
        cosigner: Cosigner,
    ) -> WitnessAnswer:
        """Decide and persist under SQLite's write lock (blocking: run it in a thread)."""
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:

                def stored(origin: str) -> tuple[int, bytes] | None:
                    row = conn.execute(
                        "SELECT size, root FROM witnessed WHERE origin = ?", (origin,)
                    ).fetchone()
                    return None if row is None else (int(row[0]), bytes(row[1]))

                answer = decide_add_checkpoint(
                    request, logs, stored, hasher, cosigner, int(time.time())
                )
                if answer.store is not None:
                    size, root, note = answer.store
                    origin = note.split("\n", 1)[0]
                    conn.execute(
                        "INSERT INTO witnessed (origin, size, root, note, cosigned, updated_at)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET"
                        " size = excluded.size, root = excluded.root, note = excluded.note,"
                        " cosigned = excluded.cosigned, updated_at = excluded.updated_at",
                        (origin, size, root, note, answer.body, time.time()),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return answer

    def latest(self, origin_hash: str) -> str | None:
        """The last cosigned note (with our cosignature) for ``sha256(origin)`` in hex."""
        with contextlib.closing(self._connect()) as conn:
            for origin, note, cosigned in conn.execute(
                "SELECT origin, note, cosigned FROM witnessed"
            ):
                if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                    return str(note) + str(cosigned)
        return None


def create_app(
    state: WitnessState,
    logs: Mapping[str, Sequence[NoteVerifier]],
    hasher: LogHasher,
    cosigner: Cosigner,
) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()  # at most MAX_BODY: BodyLimit refuses more while reading
        try:
            parsed = AddCheckpoint.from_text(body.decode("utf-8"))
        except (UnicodeDecodeError, NoteError) as exc:
            return Response(f"malformed request: {exc}\n", status_code=400)
        answer = await asyncio.to_thread(state.add_checkpoint, parsed, logs, hasher, cosigner)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def latest(request: Request) -> Response:
        note = await asyncio.to_thread(state.latest, request.path_params["origin_hash"])
        if note is None:
            return Response("unknown origin\n", status_code=404)
        return Response(note, media_type="text/plain; charset=utf-8")

    async def healthz(_: Request) -> Response:
        return Response("ok\n")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {}

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/checkpoints/{origin_hash}", latest, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=[Middleware(BodyLimit, max_bytes=MAX_BODY, too_large=_too_large)],
        exception_handlers={BodyTooLarge: _body_too_large},
    )


def _too_large(_: Request, limit: int) -> Response:
    return Response(f"request body exceeds {limit} bytes\n", status_code=413)


async def _body_too_large(request: Request, _: Exception) -> Response:
    return _too_large(request, MAX_BODY)
