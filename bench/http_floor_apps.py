"""The ASGI apps bench_http_floor serves: each answers a Pangea ``/v1/log`` request with a
fixed success, without Kafka or PostgreSQL, so their costs are the HTTP path's alone.

* ``bare``: a hand-written ASGI callable, uvicorn's own floor;
* ``direct``: the services' shell (auditlog/web/app.py) with ``/v1/log`` an exact-path route,
  which its edge calls directly, as ingest's ``/v1/log`` is;
* ``routed``: the same shell and handler under a templated path (``/v1/{name}``), which goes
  through Starlette's router and exception middleware, as every route did before the edge.

The shell ones parse the body and write the service's request log line, as ingest does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auditlog.runtime.observability import configure_logging
from auditlog.web.app import build_app
from auditlog.web.pangea import parse_json_object, success, validation_error

_ANSWER = b'{"status":"Success","summary":"Success","result":{"hash":"00"}}'


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _ANSWER})


async def _log(request: Request) -> Response:
    body, errors = parse_json_object(await request.body())
    if body is None:
        return validation_error(request, errors)
    return success(request, {"hash": "00"})


configure_logging("info")
direct = build_app([Route("/v1/log", _log, methods=["POST"])], None, "bench")
routed = build_app([Route("/v1/{name}", _log, methods=["POST"])], None, "bench")
