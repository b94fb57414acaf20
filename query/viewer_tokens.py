"""``POST /v1/viewer_tokens``: an admin mints a short-lived, read-only token for one tenant.

This is how a product embeds the console (or an iframe of it) for its own customers, the way
Retraced's viewer tokens work: the product's backend, holding an ``admin`` token, asks for a
viewer token for the customer's tenant and hands it to the customer's browser. The viewer token
has the ``search`` scope only (search, results, receipts, downloads, never logging or minting),
is bound to the tenant (every search carries ``tenant_id = <tenant>``, other tenants' receipts
are not found, entry bundles are refused) and stops working at ``expires_at``.

An admin token bound to a tenant mints only for that tenant.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from auditlog.core.schema import error_item
from auditlog.pg.tokens import VIEWER_TTL_MAX, mint_viewer_token
from auditlog.web import pangea as pangea_http
from auditlog.web.pangea import PangeaResponse, success, validation_error
from query.state import COST_PAGE, state

DEFAULT_TTL_SECONDS: Final = 900
MAX_TENANT_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 128


def _text(value: object, most: int) -> bool:
    # PostgreSQL's text holds no NUL; anything else a tenant id may be, as at ingest.
    return isinstance(value, str) and 0 < len(value) <= most and "\x00" not in value


def _ttl(value: object) -> int | None:
    top = int(VIEWER_TTL_MAX.total_seconds())
    if value is None:
        return DEFAULT_TTL_SECONDS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        return None
    return value


async def mint(request: Request) -> Response:
    st = state(request)
    granted = await pangea_http.authorized_json(request, st.tokens, "admin", st.limits, COST_PAGE)
    if isinstance(granted, Response):
        return granted
    admin, body = granted
    tenant = body.get("tenant_id", admin.tenant_id)
    errors: list[dict[str, str]] = []
    if not _text(tenant, MAX_TENANT_LENGTH):
        errors.append(
            error_item(
                "FieldRequired",
                f"'/tenant_id' is required, a string of 1..{MAX_TENANT_LENGTH} characters",
                "/tenant_id",
            )
        )
    ttl = _ttl(body.get("ttl_seconds"))
    if ttl is None:
        top = int(VIEWER_TTL_MAX.total_seconds())
        errors.append(
            error_item("InvalidInteger", f"'/ttl_seconds' must be 1..{top}", "/ttl_seconds")
        )
    name = body.get("name", "viewer")
    if not _text(name, MAX_NAME_LENGTH):
        errors.append(
            error_item("InvalidString", f"'/name' is 1..{MAX_NAME_LENGTH} characters", "/name")
        )
    if errors or not isinstance(tenant, str) or ttl is None:
        return validation_error(request, errors)
    if admin.tenant_id is not None and tenant != admin.tenant_id:
        return PangeaResponse(
            request, "Forbidden", None, "a tenant-bound admin token mints for its own tenant only"
        )
    secret, info = await mint_viewer_token(st.pool, tenant, timedelta(seconds=ttl), name)
    expires = info.expires_at.isoformat().replace("+00:00", "Z") if info.expires_at else None
    return success(
        request,
        {
            "token": secret,
            "token_id": info.token_id,
            "tenant_id": info.tenant_id,
            "scopes": sorted(info.scopes),
            "expires_at": expires,
        },
    )
