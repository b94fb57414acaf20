"""Who may read an asynchronous request's outcome (``GET /request/{id}``)."""

from __future__ import annotations

import pytest

from auditlog.pg.tokens import TokenInfo
from auditlog.web.requests_store import _may_read


def token(token_id: str, scopes: set[str], tenant: str | None = None) -> TokenInfo:
    return TokenInfo(token_id, "t", frozenset(scopes), tenant)


@pytest.mark.parametrize(
    ("reader", "owner_tenant", "allowed"),
    [
        (token("owner", {"log"}), None, True),
        (token("other", {"log"}), None, False),
        (token("other", {"search"}, "acme"), "acme", False),
        (token("admin", {"admin"}), "acme", True),
        (token("admin", {"admin"}), None, True),
        (token("admin", {"admin"}, "acme"), "acme", True),
        (token("admin", {"admin"}, "acme"), "globex", False),
        (token("admin", {"admin"}, "acme"), None, False),
    ],
)
def test_owner_or_an_admin_within_its_tenant(
    reader: TokenInfo, owner_tenant: str | None, allowed: bool
) -> None:
    assert _may_read(reader, "owner", owner_tenant) is allowed
