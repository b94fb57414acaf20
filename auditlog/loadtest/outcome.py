"""What one load-test request produced, and how a failure is named in the report.

Errors are grouped by kind: ``HTTP 503 ServiceNotAvailable`` (the status and, when the body is a
Pangea envelope, its ``status`` field), ``timeout``, ``connection refused``, ``connection error
ECONNRESET`` (an OS error by its errno name), or the class name of any other client or Kafka
error. The kinds are what the report's error table and error timeline show; they are chosen to
tell pushback (503), overload (timeouts) and misconfiguration (401, 404, refused connections)
apart at a glance.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import aiohttp
import orjson


@dataclass(frozen=True, slots=True)
class Outcome:
    """``events`` logged (0 for reads and failures), ``error`` kind or None, and what the seal
    sampler needs to follow a logged event: its ``hash`` or, for an async request, the
    ``request_id`` whose result will name it."""

    events: int = 0
    error: str | None = None
    hash: str | None = None
    request_id: str | None = None


def http_error(status: int, body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"HTTP {status}"
    pangea = parsed.get("status") if isinstance(parsed, dict) else None
    return f"HTTP {status} {pangea}" if isinstance(pangea, str) else f"HTTP {status}"


def exception_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno is not None:
        return f"connection error {errno.errorcode.get(exc.errno, exc.errno)}"  # ECONNRESET...
    return type(exc).__name__


def failed(exc: BaseException) -> Outcome:
    return Outcome(error=exception_kind(exc))
