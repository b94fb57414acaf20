"""Splunk HTTP Event Collector: JSON events, batched, with indexer acknowledgement on request.

Each batch is one POST to ``<url>/services/collector/event`` with ``Authorization: Splunk
<token>`` and the destination's channel (``X-Splunk-Request-Channel``): one JSON object per
event, ``{"time", "host"?, "source", "sourcetype", "index"?, "event"}``, where ``time`` is the
received time and ``event`` the forwarded record (log, index, hash, received_at, envelope).
With ``ack = true`` the batch counts as delivered only once ``/services/collector/ack`` says
its ``ackId`` was indexed; without, once HEC answered ``Success``.

HEC's status codes: 400 with code 5, 6, 12 or 13 (no data, invalid data format, event field
missing or blank) refuses the batch's contents for good; every other failure (a bad token,
a wrong index or channel, a busy server) is retried until an operator fixes it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import orjson

from forward.config import SplunkHec
from forward.records import Record, json_record
from forward.sinks.base import DeliveryError, Rejected
from forward.sinks.http import HttpClient, failure

REFUSED_CODES: Final = frozenset({5, 6, 12, 13})
_ACK_POLL: Final = 0.2


def channel_of(name: str, options: SplunkHec) -> str:
    """The configured channel, or a GUID derived from the destination's name (stable across
    restarts, so acknowledgements already pending stay on the same channel)."""
    return options.channel or str(uuid.uuid5(uuid.NAMESPACE_URL, f"auditlog-forward:{name}"))


def hec_event(record: Record, options: SplunkHec) -> bytes:
    head: dict[str, Any] = {
        "time": round(record.received_at.timestamp(), 6),
        "source": options.source,
        "sourcetype": options.sourcetype,
    }
    if options.host:
        head["host"] = options.host
    if options.index:
        head["index"] = options.index
    head["event"] = orjson.Fragment(json_record(record))
    return orjson.dumps(head)


def _code(answer: bytes) -> int | None:
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, int) else None


class HecSink:
    def __init__(self, name: str, options: SplunkHec, timeout: float) -> None:
        self.options = options
        self.deadline = timeout + (options.ack_timeout if options.ack else 0.0)
        self.http = HttpClient(timeout)
        base = options.url.rstrip("/")
        self.channel = channel_of(name, options)
        self.event_url = f"{base}/services/collector/event"
        self.ack_url = f"{base}/services/collector/ack?channel={self.channel}"
        self.headers = {
            "Authorization": f"Splunk {options.token.value}",
            "X-Splunk-Request-Channel": self.channel,
            "Content-Type": "application/json",
        }

    async def deliver(self, records: Sequence[Record]) -> None:
        body = b"\n".join(hec_event(r, self.options) for r in records)
        status, answer = await self.http.exchange(self.event_url, body, self.headers)
        if status != 200:
            reason = failure(self.event_url, status, answer)
            if status == 400 and _code(answer) in REFUSED_CODES:
                raise Rejected(reason)
            raise DeliveryError(reason)
        if not self.options.ack:
            return
        try:
            ack_id = orjson.loads(answer)["ackId"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise DeliveryError(f"HEC answered without an ackId: {answer[:200]!r}") from exc
        await self._wait_ack(int(ack_id))

    async def _wait_ack(self, ack_id: int) -> None:
        body = orjson.dumps({"acks": [ack_id]})
        give_up = time.monotonic() + self.options.ack_timeout
        while time.monotonic() < give_up:
            status, answer = await self.http.exchange(self.ack_url, body, self.headers)
            if status == 200:
                try:
                    acks = orjson.loads(answer).get("acks", {})
                except (orjson.JSONDecodeError, AttributeError):
                    acks = {}
                if acks.get(str(ack_id)) is True:
                    return
            elif status not in (503,):
                raise DeliveryError(failure(self.ack_url, status, answer))
            await asyncio.sleep(_ACK_POLL)
        raise DeliveryError(
            f"HEC did not acknowledge ackId {ack_id} in {self.options.ack_timeout:g} s"
        )

    async def close(self) -> None:
        await self.http.close()
