"""What the HTTP destinations (webhooks, Splunk HEC, OTLP) share: one session each, one POST.

Statuses: 2xx is an acknowledgement; 400, 413, 415 and 422 say the batch's contents are
refused for good (:class:`Rejected`, so the forwarder narrows it down to the events at fault);
everything else, 401 and 403 included (a wrong secret is fixed by an operator, not by dropping
events), and every connection failure, is retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp

from forward.sinks.base import DeliveryError, Rejected

PERMANENT: Final = frozenset({400, 413, 415, 422})


class HttpClient:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def exchange(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """POST ``body``; the answer's status and body, whatever the status."""
        try:
            async with self.session().post(url, data=body, headers=dict(headers)) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"POST {url}: {exc!r}") from exc

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        """POST ``body``; the response body of a 2xx answer (see the module docstring)."""
        status, answer = await self.exchange(url, body, headers)
        if 200 <= status < 300:
            return answer
        reason = failure(url, status, answer)
        if status in PERMANENT:
            raise Rejected(reason)
        raise DeliveryError(reason)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def failure(url: str, status: int, answer: bytes) -> str:
    return f"POST {url}: {status} {answer[:200].decode('utf-8', 'replace')}"
