"""A stand-in HTTP server for tests: a request handler served on a thread of its own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from socketserver import BaseRequestHandler


@contextlib.contextmanager
def standing(handler: Callable[..., BaseRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` (a handler class, or a ``partial`` of one) on a free loopback port until
    the block ends; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
