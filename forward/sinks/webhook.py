"""Webhooks: each batch is one HTTP POST of JSON, signed with HMAC-SHA256 over a timestamp.

Body: ``{"events": [{"log", "index", "hash", "received_at", "envelope"}, ...]}``, one log's
events in index order. Headers:

* ``X-Auditlog-Timestamp``: Unix seconds when the request was signed;
* ``X-Auditlog-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the shared secret, of
  the timestamp, a ``.``, and the body's exact bytes;
* ``X-Auditlog-Batch``: ``<log>/<first index>-<last index>``.

A receiver recomputes the HMAC, compares it in constant time and refuses a timestamp more than
five minutes from its clock, so a captured request cannot be replayed later
(docs/forwarding.md#verifying-a-webhook).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from forward.config import Webhook
from forward.records import Record, json_record
from forward.sinks.http import HttpClient


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Auditlog-Signature`` value of ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def body_of(records: Sequence[Record]) -> bytes:
    return b'{"events":[' + b",".join(json_record(r) for r in records) + b"]}"


class WebhookSink:
    def __init__(self, options: Webhook, timeout: float) -> None:
        self.options = options
        self.deadline = timeout
        self.http = HttpClient(timeout)
        self._secret = options.secret.value.encode()

    async def deliver(self, records: Sequence[Record]) -> None:
        body = body_of(records)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Auditlog-Timestamp": str(timestamp),
            "X-Auditlog-Signature": sign(self._secret, timestamp, body),
            "X-Auditlog-Batch": f"{records[0].log_id}/{records[0].index}-{records[-1].index}",
        }
        await self.http.post(self.options.url, body, headers)

    async def close(self) -> None:
        await self.http.close()
