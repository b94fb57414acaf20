"""``GET /console``: the web console's static files (query/console/), served by the query service.

The console is plain ES modules, HTML and CSS, written in the repository and served as they are:
nothing is built, fetched from a CDN or loaded from another origin. The browser calls the same
service's JSON endpoints with the token the user signed in with, and verifies receipts itself
(query/console/verify.js). The policy below tells the browser so: scripts, styles and requests
come from this origin only; embedding the console in a product's page (an iframe) is allowed.

Only the files the directory holds (read once, at the first request for one) are served, by
name, so no path can climb out of it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auditlog.web.pangea import not_found

ASSETS: Final = Path(__file__).resolve().parent / "console"
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'none'; base-uri 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Assets change with the service's version; a reload must never mix old and new modules.
    "Cache-Control": "no-cache",
}


@functools.cache
def _files() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(ASSETS.iterdir()):
        media = MEDIA_TYPES.get(path.suffix)
        if media is not None and path.is_file():
            files[path.name] = (path.read_bytes(), media)
    return files


async def to_index(request: Request) -> Response:
    # The page's modules are named relative to it, so it must be at /console/, not /console.
    return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), 308)


async def index(request: Request) -> Response:
    body, media = _files()["index.html"]
    return Response(body, media_type=media, headers=HEADERS)


async def asset(request: Request) -> Response:
    found = _files().get(request.path_params["name"])
    if found is None:
        return not_found(request, "no such console file")
    body, media = found
    return Response(body, media_type=media, headers=HEADERS)
