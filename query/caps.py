"""Caps on what one token can make the query service store: live result sets, exports, downloads.

Every search stores a result set (up to 10,000 keys), every export a row, every
``/v1/download_results`` a capability; all of them live until they expire (48 hours, 2 days and
60 minutes by default), so without a cap one token could fill the database at its rate limit.
Before storing one more, the handler counts the token's live (unexpired) rows of that table
(through the ``(token_id, expires_at)`` indexes of migration 0005); at the cap the answer is 429
``TooManyRequests``, with ``Retry-After`` saying when the oldest of them expires.

The count and the insert are separate statements, so requests of one token that run at the very
same moment can each pass the count: the cap can be overshot by the number of such requests
(bounded by the connection pool and the token's rate limit), never more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from auditlog.pg.tokens import TokenInfo
from auditlog.web.pangea import too_many_requests
from query.state import QueryState


@dataclass(frozen=True, slots=True)
class Cap:
    table: str
    what: str  # for the summary
    setting: str

    def limit(self, st: QueryState) -> int:
        value: int = getattr(st.settings, self.setting)
        return value


RESULT_SETS: Final = Cap("search_results", "search result sets", "max_result_sets")
EXPORTS: Final = Cap("exports", "exports", "max_exports")
DOWNLOADS: Final = Cap("downloads", "download URLs", "max_downloads")


async def refuse_at_cap(
    request: Request, st: QueryState, token: TokenInfo, cap: Cap
) -> Response | None:
    """The 429 to send when ``token`` already holds its cap of ``cap``'s rows; else None."""
    limit = cap.limit(st)
    if limit <= 0:
        return None
    # Counting stops at the cap: a token's rows past it (a lowered setting) cost nothing more.
    held: int = await st.pool.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {cap.table}"  # noqa: S608 - fixed table names
        " WHERE token_id = $1 AND expires_at > now() LIMIT $2) AS held",
        token.token_id,
        limit,
    )
    if held < limit:
        return None
    first: float | None = await st.pool.fetchval(
        f"SELECT extract(epoch FROM min(expires_at) - now())::float8 FROM {cap.table}"  # noqa: S608
        " WHERE token_id = $1 AND expires_at > now()",
        token.token_id,
    )
    retry_after = max(1, math.ceil(first or 1))
    env = "AUDITLOG_QUERY_" + cap.setting.upper()
    return too_many_requests(
        request,
        f"This token holds {held} unexpired {cap.what}, the most it may ({env});"
        f" the oldest expires in {retry_after} s",
        retry_after,
    )
