"""Settings of the ingest service, read from ``AUDITLOG_*`` once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from auditlog.kafka.security import PLAINTEXT, KafkaSecurity
from auditlog.runtime.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_TOPIC,
    Env,
    Secret,
    default_workers,
)
from auditlog.web.ratelimit import RateSettings

DEFAULT_MAX_IN_FLIGHT = 4096
DEFAULT_SEND_TIMEOUT = 5.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# How long the producer holds a record for others to share its request to Kafka: Kafka's own
# producer default since 4.0 (KIP-1030). Single-event requests then cost ingest and Kafka ~7-18
# µs less each than at 2 ms, and acknowledgements take a few ms longer (docs/ingest.md#linger).
DEFAULT_KAFKA_LINGER_MS = 5
# Events a second per token and per tenant, in each ingest process: twice what one process
# acknowledges on the benchmark machine (bench_ingest: 44k events/s bulk), so no benchmark is
# ever throttled; the burst (default two seconds' worth) absorbs spikes.
DEFAULT_EVENTS_PER_SECOND = 100_000
DEFAULT_RATE_LIMITS = RateSettings.defaults(DEFAULT_EVENTS_PER_SECOND)


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    # TLS and SASL of every Kafka client (docs/kafka-security.md).
    kafka_security: KafkaSecurity = PLAINTEXT
    database_url: Secret = Secret(DEFAULT_DATABASE_URL)
    topic: str = DEFAULT_TOPIC
    host: str = "127.0.0.1"
    port: int = 8000
    # Worker processes answering on host:port, each with its own Kafka producer, database pool,
    # in-flight bound and rate-limit buckets (docs/ingest.md#worker-processes).
    workers: int = 1
    # Events accepted but not yet acknowledged by Kafka, per worker process; past this, requests
    # get 503 + Retry-After.
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    # How long a request waits for Kafka's ack before answering 503 (Kafka down is not a hang).
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    # Milliseconds the Kafka producer waits for more records before sending a batch.
    kafka_linger_ms: int = DEFAULT_KAFKA_LINGER_MS
    schemas_file: Path | None = None  # custom schemas per config_id (docs/ingest.md)
    # Larger bodies are refused while they are read (413 ValidationError), never parsed.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Token buckets in events a second (0: none) and bursts, per token and per tenant
    # (docs/ingest.md#rate-limits).
    rate_limits: RateSettings = DEFAULT_RATE_LIMITS
    log_level: str = "info"
    # The metrics listener (/metrics on a port of its own); port 0: none, /metrics is then
    # served on the API port (development).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        return cls(
            kafka_bootstrap=env.text("KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP),
            kafka_security=KafkaSecurity.from_env(env),
            database_url=env.secret("DATABASE_URL", DEFAULT_DATABASE_URL),
            topic=env.text("TOPIC", DEFAULT_TOPIC),
            host=env.text("HOST", "127.0.0.1"),
            port=env.integer("PORT", 8000, minimum=1),
            workers=env.integer("INGEST_WORKERS", default_workers(), minimum=1),
            max_in_flight=env.integer("INGEST_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, minimum=1),
            send_timeout=env.number("INGEST_SEND_TIMEOUT", DEFAULT_SEND_TIMEOUT, minimum=0.1),
            kafka_linger_ms=env.integer(
                "INGEST_KAFKA_LINGER_MS", DEFAULT_KAFKA_LINGER_MS, minimum=0, maximum=1000
            ),
            schemas_file=env.path("SCHEMAS_FILE"),
            max_body_bytes=env.integer(
                "INGEST_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024
            ),
            rate_limits=RateSettings.from_env(env, "INGEST", DEFAULT_EVENTS_PER_SECOND),
            log_level=env.text("LOG_LEVEL", "info"),
            metrics_host=env.text("INGEST_METRICS_HOST", "127.0.0.1"),
            metrics_port=env.port("INGEST_METRICS_PORT", 0),
        )
