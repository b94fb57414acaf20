"""A small blocking client for the public read API (C2SP tlog-tiles under ``/v1/logs/{log}/``).

Verifiers use it to fetch what they then check with the pure core; nothing it returns is
trusted. One keep-alive connection per client (an audit fetches thousands of tiles), standard
library only, so a verifier machine needs nothing but this package.

Errors: :class:`ReadApiError` for transport failures and unexpected statuses; a resource that
does not exist (404) is ``None``, because a missing tile is a finding, not an I/O error.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from auditlog.core.cosignature import AddCheckpoint
from auditlog.core.errors import NoteError
from auditlog.core.tiles import TILE_WIDTH, entries_path, tile_path

__all__ = ["ConsistencyAnswer", "ReadApi", "ReadApiError"]


# The largest answer a verifier needs: a full entry bundle of 256 large envelopes. Compressed or
# not, nothing bigger is read: a hostile server cannot make a verifier hold more.
MAX_BODY = 64 * 1024 * 1024


def _gunzip(data: bytes, what: str) -> bytes:
    """Decompress at most MAX_BODY bytes (a few KiB of gzip can expand to gigabytes)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_BODY + 1)
    except zlib.error as exc:
        raise ReadApiError(f"{what}: malformed gzip: {exc}") from exc
    if len(out) > MAX_BODY or inflater.unconsumed_tail:
        raise ReadApiError(f"{what}: answer inflates past {MAX_BODY} bytes")
    return out


class ReadApiError(Exception):
    """The read API could not be reached or answered something unusable."""


@dataclass(frozen=True, slots=True)
class ConsistencyAnswer:
    """``GET /v1/proofs/consistency``: the proof and the signed checkpoint it leads to."""

    log: str
    old_size: int
    proof: list[bytes]
    checkpoint: str


class ReadApi:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReadApiError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._token = token
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def __enter__(self) -> ReadApi:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def get(self, path: str, *, auth: bool = False) -> tuple[int, bytes, str]:
        """GET ``path`` (below the base URL): (status, body, content type)."""
        headers = {"Accept-Encoding": "gzip", "User-Agent": "auditlog-verifier"}
        if auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("GET", self._prefix + path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(MAX_BODY + 1)
            except (OSError, http.client.HTTPException) as exc:
                # A keep-alive connection the server closed meanwhile: retry once on a new one.
                self.close()
                if attempt == 2 or isinstance(exc, socket.timeout):
                    raise ReadApiError(f"GET {self.base_url}{path}: {exc}") from exc
                continue
            if len(body) > MAX_BODY:
                self.close()
                raise ReadApiError(f"GET {self.base_url}{path}: answer past {MAX_BODY} bytes")
            if resp.getheader("Content-Encoding") == "gzip":
                body = _gunzip(body, f"GET {self.base_url}{path}")
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return resp.status, body, resp.getheader("Content-Type") or ""
        raise AssertionError("unreachable")  # pragma: no cover

    def _expect(self, path: str, *, auth: bool = False) -> bytes | None:
        status, body, _ = self.get(path, auth=auth)
        if status == 404:
            return None
        if status in (401, 403):
            raise ReadApiError(f"GET {path}: {status}; the token lacks the search scope")
        if status != 200:
            raise ReadApiError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return body

    @staticmethod
    def _log(log: str) -> str:
        return urllib.parse.quote(log, safe="")

    def logs(self) -> list[dict[str, Any]]:
        body = self._expect("/v1/logs")
        try:
            logs = json.loads(body or b"")["result"]["logs"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReadApiError(f"GET /v1/logs: unexpected answer: {exc}") from exc
        if not isinstance(logs, list):
            raise ReadApiError("GET /v1/logs: unexpected answer")
        return logs

    def checkpoint(self, log: str) -> str | None:
        body = self._expect(f"/v1/logs/{self._log(log)}/checkpoint")
        return None if body is None else body.decode("utf-8", "replace")

    def pruned(self, log: str) -> str | None:
        """The log's latest pruned-bound statement (unverified), or None when nothing was."""
        body = self._expect(f"/v1/logs/{self._log(log)}/pruned")
        return None if body is None else body.decode("utf-8", "replace")

    def erasures(self, log: str) -> list[str]:
        """The log's erasure records (unverified); needs a token."""
        body = self._expect(f"/v1/logs/{self._log(log)}/erasures", auth=True)
        try:
            notes = json.loads(body or b'{"erasures": []}')["erasures"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReadApiError(f"GET erasures of {log}: unexpected answer: {exc}") from exc
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ReadApiError(f"GET erasures of {log}: unexpected answer")
        return notes

    def tile(self, log: str, level: int, index: int, width: int = TILE_WIDTH) -> bytes | None:
        return self._expect(f"/v1/logs/{self._log(log)}/{tile_path(level, index, width)}")

    def bundle(self, log: str, index: int, width: int = TILE_WIDTH) -> bytes | None:
        return self._expect(f"/v1/logs/{self._log(log)}/{entries_path(index, width)}", auth=True)

    def consistency(
        self, log: str, old_size: int, new_size: int | None = None
    ) -> ConsistencyAnswer | None:
        """``GET /v1/proofs/consistency``, or None when the server has no such checkpoint.

        The body is a tlog-witness add-checkpoint body: ``old <from>``, the proof lines, a
        blank line and the signed checkpoint of size ``to`` (the latest when ``new_size`` is
        None). Nothing in it is trusted; the caller verifies both.
        """
        params: dict[str, object] = {"log": log, "from": old_size}
        if new_size is not None:
            params["to"] = new_size
        body = self._expect(f"/v1/proofs/consistency?{urllib.parse.urlencode(params)}")
        if body is None:
            return None
        try:
            parsed = AddCheckpoint.from_text(body.decode("utf-8"))
        except (UnicodeDecodeError, NoteError) as exc:
            raise ReadApiError(f"consistency proof answer is malformed: {exc}") from exc
        if parsed.old_size != old_size:
            raise ReadApiError(f"asked for a proof from {old_size}, got one from {parsed.old_size}")
        return ConsistencyAnswer(log, parsed.old_size, list(parsed.proof), parsed.note)
