"""What one ``auditlog loadtest`` run is asked to do: the command line, gathered."""

from __future__ import annotations

from dataclasses import dataclass, field

from auditlog.loadtest.pacing import Plan
from auditlog.producer import KafkaSecurity


@dataclass(frozen=True, slots=True)
class Config:
    scenario: str
    url: str
    token: str
    query_url: str
    read_token: str
    plan: Plan | None  # None: closed loop
    concurrency: int = 0
    seconds: float = 0.0  # closed loop only; an open loop lasts as long as its plan
    max_requests: int | None = None
    bulk: int = 100
    max_in_flight: int = 1000
    timeout: float = 30.0
    seal_samples: int = 200
    seal_wait: float = 30.0
    kafka_bootstrap: str | None = None
    # TLS and SASL of the kafka scenario's producer, from AUDITLOG_KAFKA_* (the CLI reads them)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    topic: str = "audit.events"
    seed: int = 0
    templated: bool = False
    tenant: str | None = None
    stop_on_errors: float | None = None  # stop sending when the last seconds' error rate passes


def planned_requests(config: Config) -> int:
    if config.plan is not None:
        return config.plan.planned_requests
    if config.max_requests is not None:
        return config.max_requests
    return int(config.seconds * config.concurrency * 100)  # a guess: 10 ms per request
