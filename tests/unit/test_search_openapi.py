"""The OpenAPI document matches the routes the services register and the committed copy."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from ingest import app as ingest_app
from query import app as query_app
from query import openapi

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def _served() -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = {("/metrics", "get")}  # added by auditlog.web.app.build_app
    for route in [*ingest_app.routes(), *query_app.routes()]:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        out.update((path, m.lower()) for m in route.methods or () if m != "HEAD")
    return out


def test_the_document_describes_exactly_the_served_routes() -> None:
    documented = {
        (path, method) for path, ops in openapi.document()["paths"].items() for method in ops
    }
    assert documented == _served()


def test_the_committed_document_is_current() -> None:
    # Regenerate with: python -c "from query import openapi; import sys;
    #   sys.stdout.buffer.write(openapi.render())" > docs/openapi.json
    assert DOCS.read_bytes() == openapi.render()
