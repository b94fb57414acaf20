"""The named scenarios of ``auditlog loadtest``: which operations a run draws, and how often.

=========  ==========================================================================
``single``  ``POST /v1/log``, one event per request (what the Pangea SDK's ``log`` does)
``bulk``    ``POST /v2/log``, ``--bulk`` events per request (default 100)
``async``   ``POST /v2/log_async``, ``--bulk`` events per request, answered 202
``kafka``   the producer library straight to the topic (``--kafka-bootstrap``, ``--topic``)
``read``    searches 10 %, receipts by hash 60 %, tiles and checkpoints 30 %
``mixed``   single 70 %, bulk 10 %, async 5 %, and the read mix 15 %
=========  ==========================================================================

``mixed`` is the standard scenario (``make loadtest``): mostly single events, as services log
them, some batches, and reads while it runs. Receipts and tiles (clients and monitors checking
the log) far outnumber searches (people), as they would: a search costs the database far more
than a receipt (on the development machine, with 250,000 events logged, a search took 20-300
ms where a receipt took a few), so a few searches a second already load a 2-vCPU machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from auditlog.loadtest.engine import Operation
from auditlog.loadtest.reads import ReadTarget
from auditlog.loadtest.writes import HttpLog, KafkaLog
from auditlog.producer import AuditProducer

SCENARIOS: Final = ("single", "bulk", "async", "kafka", "read", "mixed")


@dataclass(frozen=True, slots=True)
class Clients:
    """What the operations talk through (the producer only for the ``kafka`` scenario)."""

    ingest: aiohttp.ClientSession
    ingest_url: str
    reads: ReadTarget
    producer: AuditProducer | None


def operations(
    scenario: str, clients: Clients, events: list[dict[str, Any]], bulk: int
) -> list[Operation]:
    def log(name: str, weight: float, *, per_request: int, asynchronous: bool = False) -> Operation:
        call = HttpLog(
            clients.ingest, clients.ingest_url, events, bulk=per_request, asynchronous=asynchronous
        )
        return Operation(name, weight, call, logs_events=True)

    def reads(share: float) -> list[Operation]:
        r = clients.reads
        return [
            Operation("search", 0.1 * share, r.search, logs_events=False),
            Operation("receipt", 0.6 * share, r.receipt, logs_events=False),
            Operation("tile", 0.3 * share, r.tile, logs_events=False),
        ]

    match scenario:
        case "single":
            return [log("log", 1, per_request=1)]
        case "bulk":
            return [log("bulk", 1, per_request=bulk)]
        case "async":
            return [log("async", 1, per_request=bulk, asynchronous=True)]
        case "kafka":
            if clients.producer is None:
                raise ValueError("the kafka scenario needs --kafka-bootstrap")
            return [Operation("kafka", 1, KafkaLog(clients.producer, events), logs_events=True)]
        case "read":
            return reads(1.0)
        case "mixed":
            return [
                log("log", 0.70, per_request=1),
                log("bulk", 0.10, per_request=bulk),
                log("async", 0.05, per_request=bulk, asynchronous=True),
                *reads(0.15),
            ]
    raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")


def read_rng(seed: int) -> random.Random:
    # Its own stream, so adding a read does not shift which operation each request draws.
    return random.Random(seed ^ 0x5EAD)
