"""The OpenAPI 3.1 document of the HTTP API: Pangea-compatible, native and operations endpoints.

One document for the whole API as ``auditlog serve`` exposes it (ingest and query on one base
URL). It is served at ``GET /v1/openapi.json`` and committed as ``docs/openapi.json``; a test
keeps both equal to this module's output and to the routes the services register.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

_STR: Final = {"type": "string"}
_INT: Final = {"type": "integer"}
_BOOL: Final = {"type": "boolean"}
_TEXT: Final = {"text/plain": {"schema": _STR}}
_HTML: Final = {"text/html": {"schema": _STR}}
_BYTES: Final = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _envelope(result: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "allOf": [
            _ref("PangeaEnvelope"),
            {"type": "object", "properties": {"result": result or {"type": ["object", "null"]}}},
        ]
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _pangea(
    summary: str, request: str | None, result: dict[str, Any] | None, *, accepted: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["Pangea-compatible"],
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "Success", "content": _json(_envelope(result))},
            "400": {"description": "ValidationError", "content": _json(_ref("PangeaEnvelope"))},
            "401": {"description": "Unauthorized", "content": _json(_ref("PangeaEnvelope"))},
        },
    }
    if accepted:
        op["responses"]["202"] = {
            "description": "Accepted: poll GET /request/{request_id}",
            "content": _json(_envelope(_ref("AcceptedResult"))),
        }
    if request is not None:
        # Pangea's SDKs send these without a JSON content type; any type is parsed as JSON.
        op["requestBody"] = {"required": True, "content": _json(_ref(request))}
    return op


def _native(
    summary: str, content: dict[str, Any], params: list[dict[str, Any]], *, auth: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["Native"],
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": content},
            "404": {"description": "NotFound", "content": _json(_ref("PangeaEnvelope"))},
        },
    }
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def _path(name: str, description: str = "", schema: dict[str, Any] = _STR) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(name: str, required: bool, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_EVENT_FIELDS: Final = (
    "message", "actor", "action", "new", "old", "source", "status", "target", "tenant_id",
    "timestamp",
)  # fmt: skip
_ORDER_BY: Final = [
    "received_at", "timestamp", "actor", "action", "message", "source", "status", "target",
]  # fmt: skip
_LOG = _path("log", "log id, `<topic>-<partition>`")
_UINT63: Final = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_HASH: Final = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}


def _bounded(chars: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": chars}


_SCHEMAS: Final[dict[str, Any]] = {
    "PangeaEnvelope": _obj(
        {
            "request_id": _STR,
            "request_time": _STR,
            "response_time": _STR,
            "status": _STR,
            "summary": _STR,
            "result": {},
        },
        ("request_id", "request_time", "response_time", "status", "summary", "result"),
    ),
    "AcceptedResult": _obj(
        {"ttl_mins": _INT, "retry_counter": _INT, "location": _STR},
        ("ttl_mins", "retry_counter", "location"),
    ),
    "Event": {
        "type": "object",
        "description": "Standard schema; other keys are kept verbatim.",
        "properties": dict.fromkeys(_EVENT_FIELDS, _STR),
        "required": ["message"],
    },
    "Envelope": _obj(
        {"event": _ref("Event"), "received_at": _STR, "signature": _STR, "public_key": _STR},
        ("event", "received_at"),
    ),
    "LogRequest": _obj(
        {
            "event": _ref("Event"),
            "verbose": _BOOL,
            "signature": _STR,
            "public_key": _STR,
            "prev_root": _STR,
        },
        ("event",),
    ),
    "LogResult": _obj(
        {"hash": _STR, "envelope": _ref("Envelope"), "unpublished_root": _STR},
        ("hash",),
    ),
    "BulkLogRequest": _obj(
        {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": _obj(
                    {"event": _ref("Event"), "signature": _STR, "public_key": _STR}, ("event",)
                ),
            },
            "verbose": _BOOL,
        },
        ("events",),
    ),
    "LogStreamRequest": _obj({"logs": {"type": "array", "items": {"type": "object"}}}, ("logs",)),
    "Restriction": {"type": "object", "additionalProperties": {"type": "array", "items": _STR}},
    "SearchRequest": _obj(
        {
            "query": {**_STR, "description": "grammar: docs/query.md"},
            "order": {"enum": ["asc", "desc"]},
            "order_by": {"enum": _ORDER_BY},
            "start": {**_STR, "description": "RFC 3339 time or duration ago (7d)"},
            "end": {**_STR, "description": "RFC 3339 time or duration ago (7d)"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 10000},
            "search_restriction": _ref("Restriction"),
            "verbose": _BOOL,
        },
        ("query",),
    ),
    "Root": _obj(
        {
            "tree_name": _STR,
            "size": _INT,
            "root_hash": _STR,
            "url": _STR,
            "published_at": _STR,
            "consistency_proof": {"type": ["array", "null"], "items": _STR},
            "checkpoint": {**_STR, "description": "the signed checkpoint of this size"},
        },
        ("tree_name", "size", "root_hash"),
    ),
    "SearchEvent": _obj(
        {
            "envelope": _ref("Envelope"),
            "hash": _STR,
            "log": _STR,
            "leaf_index": _INT,
            "membership_proof": _STR,
            "published": _BOOL,
        },
        ("envelope", "hash"),
    ),
    "SearchResults": _obj(
        {
            "count": _INT,
            "events": {"type": "array", "items": _ref("SearchEvent")},
            "root": _ref("Root"),
        },
        ("count", "events"),
    ),
    "ResultsRequest": _obj(
        {
            "id": _STR,
            "limit": _INT,
            "offset": _INT,
            "assert_search_restriction": _ref("Restriction"),
        },
        ("id",),
    ),
    "RootRequest": _obj({"tree_size": _INT, "tree_name": _STR}),
    "ViewerTokenRequest": _obj({"tenant_id": _STR, "ttl_seconds": _INT, "name": _STR}),
    "ViewerToken": _obj(
        {
            "token": _STR,
            "token_id": _STR,
            "tenant_id": _STR,
            "scopes": {"type": "array", "items": _STR},
            "expires_at": _STR,
        },
        ("token", "token_id", "tenant_id", "scopes", "expires_at"),
    ),
    "DownloadRequest": _obj(
        {"result_id": _STR, "request_id": _STR, "format": {"enum": ["csv", "json"]}}
    ),
    "ExportRequest": _obj(
        {
            "format": {"enum": ["csv", "json"]},
            "start": _STR,
            "end": _STR,
            "order": {"enum": ["asc", "desc"]},
            "order_by": {"enum": ["received_at"]},
            "verbose": _BOOL,
        }
    ),
}


def document() -> dict[str, Any]:
    search_output = {
        "allOf": [
            _ref("SearchResults"),
            _obj({"id": _STR, "expires_at": _STR}, ("id", "expires_at")),
        ]
    }
    paths: dict[str, Any] = {
        "/v1/log": {"post": _pangea("Log one event", "LogRequest", _ref("LogResult"))},
        "/v2/log": {
            "post": _pangea(
                "Log up to 1000 events",
                "BulkLogRequest",
                _obj({"results": {"type": "array", "items": _ref("LogResult")}}),
            )
        },
        "/v2/log_async": {
            "post": _pangea("Log events, answer at once", "BulkLogRequest", None, accepted=True)
        },
        "/v1/log_stream": {"post": _pangea("Auth0 log stream", "LogStreamRequest", None)},
        "/v1/search": {"post": _pangea("Search", "SearchRequest", search_output)},
        "/v1/results": {"post": _pangea("Page a search", "ResultsRequest", _ref("SearchResults"))},
        "/v1/root": {"post": _pangea("A tree root", "RootRequest", _obj({"data": _ref("Root")}))},
        "/v1/download_results": {
            "post": _pangea(
                "A download URL for a search or export",
                "DownloadRequest",
                _obj({"dest_url": _STR, "expires_at": _STR}, ("dest_url", "expires_at")),
            )
        },
        "/v1/export": {"post": _pangea("Export", "ExportRequest", None, accepted=True)},
        "/request/{request_id}": {
            "get": {
                **_pangea("Poll an asynchronous request", None, None, accepted=True),
                "parameters": [_path("request_id")],
            }
        },
        "/v1/logs": {
            "get": _native(
                "The logs: id, origin, hash scheme, size, topic, partition, verifier key (vkey)",
                _json(_envelope(_obj({"logs": {"type": "array", "items": {"type": "object"}}}))),
                [],
            )
        },
        "/v1/logs/{log}/checkpoint": {
            "get": _native("The latest signed checkpoint (C2SP signed note)", _TEXT, [_LOG])
        },
        "/v1/logs/{log}/pruned": {
            "get": _native(
                "The log's latest pruned-bound statement (auditlog-pruned/v1 signed note):"
                " entries below its bound may be absent, pruned by retention",
                _TEXT,
                [_LOG],
            )
        },
        "/v1/logs/{log}/erasures": {
            "get": _native(
                "The log's erasure records (auditlog-erasure/v1 signed notes), a tenant-bound"
                " token's own only",
                _json(_obj({"erasures": {"type": "array", "items": _STR}})),
                [_LOG],
                auth=True,
            )
        },
        "/v1/logs/{log}/checkpoints/{size}": {
            "get": _native(
                "The signed checkpoint of one size",
                _TEXT,
                [_LOG, _path("size", "a checkpointed tree size", _UINT63)],
            )
        },
        "/v1/logs/{log}/tile/{rest}": {
            "get": _native(
                "C2SP tlog-tiles: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]"
                " (entry bundles need a token without tenant)",
                _BYTES,
                [_LOG, _path("rest", "the tile path after tile/")],
            )
        },
        "/v1/logs/{log}/receipts/{index}": {
            "get": _native(
                "Receipt (c2sp.org/tlog-proof@v1) of an entry",
                _TEXT,
                [_LOG, _path("index", "the entry's index", _UINT63)],
                auth=True,
            )
        },
        "/v1/receipts/{hash}": {
            "get": _native(
                "Receipt of an event by its hash; with the envelope's `received_at`, found by"
                " time (needed where `auditlog hash-index drop` removed the hash index)",
                _TEXT,
                [
                    _path("hash", "the event hash, hex", _HASH),
                    _query("received_at", False, _STR),
                ],
                auth=True,
            )
        },
        "/v1/receipts": {
            "get": _native(
                "Receipt of the event sealed under an idempotency key (of the caller's token as"
                " principal, and its tenant); the sealed event's log, index and hash in the"
                " `Auditlog-Log`, `Auditlog-Index`, `Auditlog-Event-Hash` headers; 404 while"
                " not sealed. An admin token may name another `principal` (`kafka`,"
                " `token:<token_id>`)",
                _TEXT,
                [
                    _query("idempotency_key", True, _bounded(1024)),
                    _query("principal", False, _bounded(256)),
                    _query("tenant_id", False, _bounded(1024)),
                ],
                auth=True,
            )
        },
        "/v1/proofs/consistency": {
            "get": _native(
                "Consistency proof, then the signed checkpoint of size `to`",
                _TEXT,
                [
                    _query("log", True, _STR),
                    _query("from", True, _UINT63),
                    _query("to", False, _UINT63),
                ],
            )
        },
        "/v1/downloads/{secret}/{name}": {
            "get": _native(
                "A download (capability URL from /v1/download_results; no token)",
                {"text/csv": {"schema": _STR}, "application/json": {"schema": {}}},
                [_path("secret"), _path("name")],
            )
        },
        "/v1/openapi.json": {"get": _native("This document", _json({"type": "object"}), [])},
        "/v1/viewer_tokens": {
            "post": _pangea(
                "Mint a viewer token: read-only (scope search), bound to one tenant, expiring"
                " after `ttl_seconds` (default 900, at most 86400). Needs an admin token",
                "ViewerTokenRequest",
                _ref("ViewerToken"),
            )
        },
        "/console": {"get": _native("The web console (redirects to /console/)", _HTML, [])},
        "/console/": {"get": _native("The web console's page", _HTML, [])},
        "/console/{name}": {
            "get": _native(
                "A file of the web console (ES module, style sheet)",
                {"text/javascript": {"schema": _STR}, "text/css": {"schema": _STR}},
                [_path("name")],
            )
        },
        "/healthz": {"get": _native("Liveness", _json(_ref("PangeaEnvelope")), [])},
        "/readyz": {"get": _native("Readiness", _json(_ref("PangeaEnvelope")), [])},
        "/metrics": {"get": _native("Prometheus metrics", _TEXT, [])},
    }
    for name in ("/healthz", "/readyz", "/metrics"):
        paths[name]["get"]["tags"] = ["Operations"]
    for name in ("/console", "/console/", "/console/{name}"):
        paths[name]["get"]["tags"] = ["Console"]
    paths["/console"]["get"]["responses"]["308"] = {"description": "Redirect to /console/"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "auditlog",
            "version": "1",
            "description": "Self-hosted tamper-evident audit log; Pangea Secure Audit Log"
            " compatible. Every Pangea-style answer is the Pangea JSON envelope.",
        },
        "servers": [{"url": "http://127.0.0.1:8000"}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


async def endpoint(_: Request) -> Response:
    return Response(render(), media_type="application/json")
