"""Hand-picked hostile HTTP requests for tests/e2e/test_http_fuzz.py.

What schemathesis does not send: bodies that are not JSON or not UTF-8, the wrong content type,
JSON nested past any parser's comfort, integers past 64 bits, empty bodies, bodies past the
service's limit (announced and streamed), and path or query parameters out of range. Every one
of them is the caller's mistake: the service must answer it with a 4xx, never a 5xx or a 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

HUGE = 10**40  # past int64, uint64 and double's exact range
INT64_OVER = 2**63  # one past PostgreSQL's bigint


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str  # already percent-encoded where it needs to be
    body: bytes | None = None
    content_type: str | None = "application/json"
    streamed: bool = False  # send the body chunked, without Content-Length
    expect: int | None = None  # the one status it must get (with a valid token), when known
    authorization: bytes | None = None  # sent instead of no Authorization header at all


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def _raw_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# A well-shaped body per POST operation, and where in it a hostile value fits.
_SHAPES: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {
    "/v1/log": ({"event": {"message": "fuzz"}}, ("event", "new")),
    "/v2/log": ({"events": [{"event": {"message": "fuzz"}}]}, ("events", 0, "event", "old")),
    "/v2/log_async": ({"events": [{"event": {"message": "fuzz"}}]}, ("events", 0, "event", "x")),
    "/v1/log_stream": ({"logs": [{"log_id": "1", "data": {"type": "s"}}]}, ("logs", 0, "data")),
    "/v1/search": ({"query": "message:fuzz", "limit": 5}, ("search_restriction",)),
    "/v1/results": ({"id": "pas_nothing", "limit": 5}, ("assert_search_restriction",)),
    "/v1/root": ({"tree_size": 1}, ("tree_name",)),
    "/v1/download_results": ({"result_id": "pas_nothing", "format": "csv"}, ("request_id",)),
    "/v1/export": ({"format": "json", "start": "1d"}, ("end",)),
}

# Integer fields per operation, each set to values no 64-bit column holds.
_INT_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/search": ("limit", "max_results"),
    "/v1/results": ("limit", "offset"),
    "/v1/root": ("tree_size",),
}


def _with(shape: dict[str, Any], where: tuple[Any, ...], value: Any) -> bytes:
    body = orjson.loads(orjson.dumps(shape))
    node = body
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return orjson.dumps(body)


def post_cases(path: str, limit: int) -> Iterator[Hostile]:
    """The hostile requests for one POST operation of a service refusing bodies over ``limit``."""
    shape, where = _SHAPES[path]
    good = orjson.dumps(shape)
    yield Hostile("text/plain", "POST", path, good, "text/plain")
    yield Hostile("form", "POST", path, b"event=1&message=x", "application/x-www-form-urlencoded")
    yield Hostile(
        "multipart", "POST", path, b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    )  # fmt: skip
    yield Hostile("no content type", "POST", path, good, None)
    yield Hostile("json charset latin-1", "POST", path, good, "application/json; charset=latin-1")
    yield Hostile("invalid utf-8 body", "POST", path, b"\xff\xfe\xfd", expect=400)
    for name, literal, expect in (
        ("invalid utf-8 in a string", b'"f\xc3\x28z"', 400),
        ("overlong utf-8 in a string", b'"\xc0\xaf"', 400),
        ("lone surrogate", b'"\\ud800"', None),
        ("nul in a string", b'"f\\u0000z"', None),
        ("bidi override", '"\u202e\ufeff"'.encode(), None),
    ):
        yield Hostile(name, "POST", path, _with_literal(shape, where, literal), expect=expect)
    yield Hostile("empty body", "POST", path, b"", expect=400)
    yield Hostile("empty body, no type", "POST", path, b"", None, expect=400)
    yield Hostile("whitespace body", "POST", path, b" \r\n\t ", expect=400)
    yield Hostile("json null", "POST", path, b"null", expect=400)
    yield Hostile("json array", "POST", path, b"[]", expect=400)
    yield Hostile("truncated json", "POST", path, good[:-3], expect=400)
    yield Hostile("raw nesting 100k", "POST", path, _raw_nested(100_000), expect=400)
    yield Hostile("nested 60 inside", "POST", path, _with(shape, where, _nested(60)))
    for depth in (120, 500, 1000, 2000):  # orjson writes 255 levels at most, reads 1024
        yield Hostile(f"nested {depth} inside", "POST", path, _with_raw(shape, where, depth))
    yield Hostile("huge integer inside", "POST", path, _with(shape, where, INT64_OVER))
    yield Hostile("huge literal inside", "POST", path, _with_literal(shape, where, b"9" * 40))
    yield Hostile("float literal 1e400", "POST", path, _with_literal(shape, where, b"1e400"))
    yield Hostile("negative zero", "POST", path, _with_literal(shape, where, b"-0.0"))
    for field in _INT_FIELDS.get(path, ()):
        for value in (b"9" * 40, b"-" + b"9" * 40, str(INT64_OVER).encode(), b"1e400", b"-1"):
            body = _with_literal(shape, (field,), value)
            yield Hostile(f"{field}={value[:12].decode()}", "POST", path, body)
    yield Hostile("over the limit", "POST", path, b" " * (limit + 1), expect=413)
    yield Hostile(
        "over the limit, streamed", "POST", path, good + b" " * limit, streamed=True, expect=413
    )
    yield Hostile("at the limit", "POST", path, good + b" " * (limit - len(good)))


_WRONG_TYPES: tuple[Any, ...] = ([], ["x"], {}, {"k": []}, 1, -1, 1.5, True, None, "", "x" * 300)


def type_cases(path: str, fields: list[str], event_fields: list[str]) -> Iterator[Hostile]:
    """Each documented field of the request (and of its event) set to each JSON type in turn."""
    shape, _ = _SHAPES[path]
    places: list[tuple[Any, ...]] = [(name,) for name in fields]
    if "event" in shape:
        places += [("event", name) for name in event_fields]
    elif "events" in shape:
        places += [("events", 0, "event", name) for name in event_fields]
    for where in places:
        for value in _WRONG_TYPES:
            name = "/".join(map(str, where))
            yield Hostile(f"{name}={str(value)[:10]}", "POST", path, _with(shape, where, value))


def _with_literal(shape: dict[str, Any], where: tuple[Any, ...], literal: bytes) -> bytes:
    marker = "\u2603hostile\u2603"
    return _with(shape, where, marker).replace(orjson.dumps(marker), literal)


def _with_raw(shape: dict[str, Any], where: tuple[Any, ...], depth: int) -> bytes:
    # Past orjson's own nesting limit for dumps, so written as text.
    return _with_literal(shape, where, b'{"k":[' * depth + b"1" + b"]}" * depth)


def auth_cases(log: str) -> Iterator[Hostile]:
    """Authorization headers that are not a valid bearer token, on endpoints of each kind."""
    targets = (
        ("POST", "/v1/log", b'{"event":{"message":"m"}}'),
        ("POST", "/v1/search", b'{"query":"m"}'),
        ("GET", f"/v1/logs/{log}/receipts/0", None),
        ("GET", f"/v1/logs/{log}/tile/entries/000", None),
        ("GET", "/request/prq_00", None),
    )
    values = (
        b"Bearer", b"Bearer x y", b"Basic Zm9vOmJhcg==", b"Bearer " + b"x" * 10_000, b"Bearer \t x",
        b"Bearer \xff\xfe", b"Bearer alt_" + b"0" * 64, b"Bearer a b c", b"BEARER x", b"\x80",
    )  # fmt: skip
    for method, path, body in targets:
        for value in values:
            name = f"auth {value[:16]!r}"
            yield Hostile(name, method, path, body, expect=401, authorization=value)


def get_cases(log: str) -> Iterator[Hostile]:
    """Path and query parameters out of range, for every GET operation."""
    over = str(INT64_OVER)
    huge = "9" * 40
    for size in (over, huge, "-1", "1e3", "%D9%A3", "0x10", " 1", "%00", "1" * 5000):
        yield Hostile(f"checkpoint size {size[:12]}", "GET", f"/v1/logs/{log}/checkpoints/{size}")
        yield Hostile(f"receipt index {size[:12]}", "GET", f"/v1/logs/{log}/receipts/{size}")
    for rest in (
        f"0/{huge}", "0/x001/x002/x003/x004/x005/x006/x007/x008/x009/x010/x011/x012/x013/x014",
        "99/000", "-1/000", "0/000.p/0", "0/000.p/257", "0/000.p/-1", f"0/000.p/{huge}",
        f"entries/{huge}", "entries/000.p/999", "entries/x999/000", "0/%FF", "%00/000", "../../x",
        "0/" + "x123/" * 2000 + "000",
    ):  # fmt: skip
        yield Hostile(f"tile {rest[:20]}", "GET", f"/v1/logs/{log}/tile/{rest}")
    for bad_log in ("%00", "%FF%FE", "x" * 10_000, "..", "a%2Fb", "%E2%80%AE", "'; --"):
        yield Hostile(f"log {bad_log[:12]}", "GET", f"/v1/logs/{bad_log}/checkpoint")
        yield Hostile(f"log {bad_log[:12]} receipt", "GET", f"/v1/logs/{bad_log}/receipts/0")
        yield Hostile(f"log {bad_log[:12]} tile", "GET", f"/v1/logs/{bad_log}/tile/0/000")
        yield Hostile(f"log {bad_log[:12]} size", "GET", f"/v1/logs/{bad_log}/checkpoints/1")
    q = f"/v1/proofs/consistency?log={log}"
    for params in (
        f"&from=-1&to={huge}", f"&from={over}", f"&from=1&to={over}", "&from=%00", "&from=1e3",
        "&from=2&to=1", "&from=0&to=0", f"&from={huge}&to={huge}", "&from=%FF", "&to=1",
    ):  # fmt: skip
        yield Hostile(f"consistency {params[:20]}", "GET", q + params)
    yield Hostile("consistency no log", "GET", "/v1/proofs/consistency?from=1")
    yield Hostile("consistency log nul", "GET", "/v1/proofs/consistency?log=%00&from=1")
    digest = "ab" * 32
    for received in (
        "9999-99-99", "0001-01-01T00:00:00Z", "99999-01-01T00:00:00Z", "%00", "%FF",
        "2026-01-01T00:00:00.0000000000000000001Z", "2026-01-01T25:61:61Z", "-1", huge,
    ):  # fmt: skip
        yield Hostile(f"receipt received_at {received[:12]}", "GET", f"/v1/receipts/{digest}"
                      f"?received_at={received}")  # fmt: skip
    for digest_text in ("%00" * 32, "zz" * 32, "ab" * 33, "AB" * 32, "a" * 10_000, "%FF"):
        yield Hostile(f"receipt hash {digest_text[:12]}", "GET", f"/v1/receipts/{digest_text}")
    for request_id in ("%00", "x" * 10_000, "prq_%FF", "..", "prq_" + "0" * 32):
        yield Hostile(f"request {request_id[:12]}", "GET", f"/request/{request_id}")
    for secret, name in (("%00", "x"), ("x" * 5000, "y.csv"), ("%FF", "%FE"), ("a", "..")):
        yield Hostile(f"download {secret[:12]}", "GET", f"/v1/downloads/{secret}/{name}")
    yield Hostile("logs with a body", "GET", "/v1/logs", b"{}")
    yield Hostile("logs with query junk", "GET", "/v1/logs?%FF=%FE&a=" + "b" * 5000)
    yield Hostile("search by GET", "GET", "/v1/search", expect=404)
    yield Hostile("log by PUT", "PUT", "/v1/log", b"{}", expect=404)
    yield Hostile("unknown path", "GET", "/v1/" + "x" * 3000, expect=404)
