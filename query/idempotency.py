"""``GET /v1/receipts?idempotency_key=K``: the receipt of the event sealed under a retry key.

A client that retried an event with the same idempotency key got, for each attempt, the hash of
that attempt's envelope; the sealer sealed one of them (sealer/claims.py) and skipped the others,
whose hashes are then never found. This lookup leads it to the one sealed: the key's claim names
its log and index, and the answer is that entry's receipt, like ``/v1/logs/{log}/receipts/{i}``,
with the sealed event's log, index and hash in response headers.

Keys are namespaced by (principal, tenant): the principal is the caller's own token
(``token:<token_id>``, the principal ingest gives the records it writes), the tenant the token's
tenant, or for a token without one the ``tenant_id`` parameter (default: none). An admin token
may name another principal (``principal=``, e.g. ``kafka`` for other Kafka writers). Any token
that may log or search may ask, for its own keys. A key not sealed yet (or never sent, or
expired from the sealer's window, ``AUDITLOG_IDEMPOTENCY_WINDOW``) is 404.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.receipt import Receipt
from auditlog.core.schema import error_item
from auditlog.pg.tokens import TokenInfo
from auditlog.web import pangea
from auditlog.web.pangea import PangeaResponse, not_found, validation_error
from query.hashes import find_at
from query.replica import READ_FROM_HEADER
from query.state import COST_READ, authorize, state

# What the sealer accepts as a key and a principal (sealer/records.py) and a tenant (its index).
MAX_KEY_CHARS: Final = 1024
MAX_PRINCIPAL_CHARS: Final = 256
MAX_TENANT_CHARS: Final = 1024

_CLAIM = (
    "SELECT log_id, idx FROM idempotency_keys WHERE principal = $1 AND tenant_id = $2 AND key = $3"
)


def principal_of(token: TokenInfo) -> str:
    """The principal ingest names for what ``token`` logs (ingest/app.py)."""
    return f"token:{token.token_id}"


def _text(request: Request, name: str, limit: int) -> str | list[dict[str, str]] | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value or len(value) > limit or "\x00" in value:
        return [error_item("InvalidString", f"'{name}' must be 1 to {limit} characters", name)]
    return value


async def _token(request: Request) -> TokenInfo | Response:
    token = await authorize(request, "log") or await authorize(request, "search")
    if token is None:
        return pangea.unauthorized(request)
    return pangea.throttle(request, state(request).limits, token, COST_READ) or token


async def receipt_by_key(request: Request) -> Response:
    errors: list[dict[str, str]] = []
    params: dict[str, str | None] = {}
    for name, limit in (
        ("idempotency_key", MAX_KEY_CHARS),
        ("principal", MAX_PRINCIPAL_CHARS),
        ("tenant_id", MAX_TENANT_CHARS),
    ):
        value = _text(request, name, limit)
        if isinstance(value, list):
            errors += value
        else:
            params[name] = value
    key = params.get("idempotency_key")
    if key is None and not errors:
        errors.append(
            error_item("FieldRequired", "'idempotency_key' is required", "idempotency_key")
        )
    if errors or key is None:
        return validation_error(request, errors)
    token = await _token(request)
    if isinstance(token, Response):
        return token
    principal = params["principal"] or principal_of(token)
    tenant = params["tenant_id"]
    if principal != principal_of(token) and "admin" not in token.scopes:
        return PangeaResponse(
            request, "Forbidden", None, "only an admin token may look up another principal's keys"
        )
    if token.tenant_id is not None:
        if tenant is not None and tenant != token.tenant_id:
            return PangeaResponse(
                request, "Forbidden", None, "a tenant-bound token looks up its own tenant's keys"
            )
        tenant = token.tenant_id
    reads = state(request).reads()
    claim = await reads.pool.fetchrow(_CLAIM, principal, tenant or "", key)
    # Read apart, the log a constant of the event's plan: joined to the key's row, PostgreSQL
    # planned (and locked) every partition of events, every month of every log.
    row = None if claim is None else await find_at(reads.pool, claim["log_id"], claim["idx"])
    if row is None:
        return not_found(request, "no event sealed under that idempotency key (yet)")
    log_id, index, event_hash = row["log_id"], row["idx"], row["event_hash"]
    head = await reads.heads.covering(log_id, index, entry_read=True)
    if head is None or head.size <= index:
        return not_found(request, "no event sealed under that idempotency key (yet)")
    proof = await reads.proofs.inclusion(head, index)
    receipt = Receipt(index=index, proof=tuple(proof), checkpoint=head.checkpoint)
    return Response(
        receipt.to_text(),
        media_type="text/plain; charset=utf-8",
        headers={
            "Cache-Control": "private, no-cache",
            "Auditlog-Log": log_id,
            "Auditlog-Index": str(index),
            READ_FROM_HEADER: reads.source,
            "Auditlog-Event-Hash": bytes(event_hash).hex(),
        },
    )
