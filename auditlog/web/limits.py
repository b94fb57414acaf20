"""A request body limit enforced while the body is read, before anything parses it.

A body is refused as soon as it is known to be too large: at once when ``Content-Length`` says
so (nothing of the body is read), otherwise when the bytes received pass the limit (nothing
past the limit is kept). Reading the whole body first and then checking its size, as handlers
did before, let one client make a service hold any amount of memory.

The middleware sits inside the application's request-id middleware, so the refusal is a
normal answer of the service: a Pangea ``ValidationError`` (HTTP 413) from ingest and query,
plain text from the witness. A body that grows past the limit mid-stream raises
:class:`BodyTooLarge` out of ``receive``; the application maps that class to the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.errors import AuditLogError

__all__ = ["BodyLimit", "BodyTooLarge"]

Scope = dict[str, Any]


class BodyTooLarge(AuditLogError):  # noqa: N818 - reads as a verdict, like the core tree
    """The request body passed the service's limit; ``limit`` is that limit in bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BodyLimit:
    """ASGI middleware: bodies of at most ``max_bytes`` reach the application.

    ``too_large(request, limit)`` builds the refusal for bodies announced too large.
    """

    def __init__(
        self, app: Any, max_bytes: int, too_large: Callable[[Request, int], Response]
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.max_bytes:
            # Answering without reading: uvicorn closes the connection after a response that
            # left a body unread, so the client cannot make us drain a gigabyte either.
            response = self.too_large(Request(scope), self.max_bytes)
            await response(scope, receive, send)
            return
        limit = self.max_bytes
        seen = 0

        async def bounded_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded_receive, send)


def _content_length(scope: Scope) -> int | None:
    """The announced body length; a malformed header counts as unbounded (the server refuses it
    before we run, but a proxy in front might not)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                return 1 << 62
            return int(text)
    return None
