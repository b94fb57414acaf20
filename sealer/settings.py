"""Settings of the sealer, read from ``AUDITLOG_*`` once at start."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from auditlog.kafka.security import PLAINTEXT, KafkaSecurity
from auditlog.runtime.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_ORIGIN,
    DEFAULT_TOPIC,
    Env,
    Secret,
    SettingsError,
)
from sealer import faults
from sealer.assignment import DEFAULT_REBALANCE_INTERVAL
from sealer.batcher import (
    DEFAULT_BATCH_MAX_AGE,
    DEFAULT_BATCH_MAX_SIZE,
    DEFAULT_BATCH_MIN_INTERVAL,
)
from sealer.health import DEFAULT_MAX_SEAL_AGE
from sealer.index_merge import DEFAULT_GENERATION_ENTRIES as DEFAULT_SEARCH_GENERATION_ENTRIES
from sealer.index_merge import DEFAULT_INTERVAL as DEFAULT_SEARCH_MERGE_INTERVAL
from sealer.records import DEFAULT_MAX_FUTURE, DEFAULT_MAX_PAST

DEFAULT_GROUP_ID = "auditlog-sealer"
DEFAULT_HASH_SCHEME = "rfc6962-sha256"
DEFAULT_IDEMPOTENCY_WINDOW = 24 * 3600.0
DEFAULT_SIGNING_KEY_FILE = ".auditlog/keys/log.skey"
# A record waits in Kafka while no sealer runs, up to the topic's retention (7 days by default):
# a window shorter than a day would turn an outage into dead letters.
MIN_MAX_PAST = 86_400.0
MIN_GENERATION_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    # TLS and SASL of every Kafka client (docs/kafka-security.md).
    kafka_security: KafkaSecurity = PLAINTEXT
    database_url: Secret = Secret(DEFAULT_DATABASE_URL)
    topic: str = DEFAULT_TOPIC
    group_id: str = DEFAULT_GROUP_ID
    origin: str = DEFAULT_ORIGIN
    signing_key_file: Path = Path(DEFAULT_SIGNING_KEY_FILE)
    hash_scheme: str = DEFAULT_HASH_SCHEME
    # Also sign each checkpoint under the signing key's own (deployment-wide) name, besides the
    # log's origin: the overlap of a key-name rotation (docs/verification.md).
    legacy_key_name: bool = True
    batch_max_size: int = DEFAULT_BATCH_MAX_SIZE
    batch_max_age: float = DEFAULT_BATCH_MAX_AGE
    # A partition's batches close by age at most this often (seconds; sealer/batcher.py).
    batch_min_interval: float = DEFAULT_BATCH_MIN_INTERVAL
    # How often the search blocks' index pending list is merged (seconds; 0: by the seals, at
    # PostgreSQL's 4 MB limit; sealer/index_merge.py).
    search_merge_interval: float = DEFAULT_SEARCH_MERGE_INTERVAL
    # Entries sealed (all logs) after which the search blocks' next generation opens (0: never;
    # auditlog/pg/search_generations.py).
    search_generation_entries: int = DEFAULT_SEARCH_GENERATION_ENTRIES
    # The group's leader asks for a rebalance that evens out the sealers' load at most this
    # often (seconds; 0: never; sealer/assignment.py).
    rebalance_interval: float = DEFAULT_REBALANCE_INTERVAL
    witness_policy_file: Path | None = None  # C2SP tlog-policy with witness URLs and quorum
    witness_timeout: float = 1.0
    schemas_file: Path | None = None  # custom schemas per config_id, as ingest's
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW  # seconds
    # Received times accepted, around the sealer's clock (sealer/records.py: Window); seconds.
    max_past: float = DEFAULT_MAX_PAST
    max_future: float = DEFAULT_MAX_FUTURE
    # The metrics listener (/metrics, /healthz, /readyz); port 0: none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # Not ready once an owned partition's records waited this long (seconds) without a seal.
    ready_max_seal_age: float = DEFAULT_MAX_SEAL_AGE
    log_level: str = "info"
    # A testing aid (sealer/faults.py): crash at a step of the seal. None in production.
    fault: faults.Fault | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        settings = cls(
            kafka_bootstrap=env.text("KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP),
            kafka_security=KafkaSecurity.from_env(env),
            database_url=env.secret("DATABASE_URL", DEFAULT_DATABASE_URL),
            topic=env.text("TOPIC", DEFAULT_TOPIC),
            group_id=env.text("SEALER_GROUP_ID", DEFAULT_GROUP_ID),
            origin=env.text("ORIGIN", DEFAULT_ORIGIN),
            signing_key_file=Path(env.text("SIGNING_KEY_FILE", DEFAULT_SIGNING_KEY_FILE)),
            hash_scheme=env.text("HASH_SCHEME", DEFAULT_HASH_SCHEME),
            legacy_key_name=_on_off("LEGACY_KEY_NAME", env.text("LEGACY_KEY_NAME", "on")),
            batch_max_size=env.integer("BATCH_MAX_SIZE", DEFAULT_BATCH_MAX_SIZE, minimum=1),
            batch_max_age=env.number("BATCH_MAX_AGE", DEFAULT_BATCH_MAX_AGE, minimum=0.001),
            batch_min_interval=env.number(
                "BATCH_MIN_INTERVAL", DEFAULT_BATCH_MIN_INTERVAL, minimum=0
            ),
            search_merge_interval=env.number(
                "SEARCH_MERGE_INTERVAL", DEFAULT_SEARCH_MERGE_INTERVAL, minimum=0
            ),
            search_generation_entries=env.integer(
                "SEARCH_GENERATION_ENTRIES", DEFAULT_SEARCH_GENERATION_ENTRIES, minimum=0
            ),
            rebalance_interval=env.number(
                "SEALER_REBALANCE_INTERVAL", DEFAULT_REBALANCE_INTERVAL, minimum=0
            ),
            witness_policy_file=env.path("WITNESS_POLICY_FILE"),
            witness_timeout=env.number("WITNESS_TIMEOUT", 1.0, minimum=0.05),
            schemas_file=env.path("SCHEMAS_FILE"),
            idempotency_window=env.number(
                "IDEMPOTENCY_WINDOW", DEFAULT_IDEMPOTENCY_WINDOW, minimum=0
            ),
            max_past=env.number("SEALER_MAX_PAST", DEFAULT_MAX_PAST, minimum=MIN_MAX_PAST),
            max_future=env.number("SEALER_MAX_FUTURE", DEFAULT_MAX_FUTURE, minimum=0),
            metrics_host=env.text("SEALER_METRICS_HOST", "127.0.0.1"),
            metrics_port=env.port("SEALER_METRICS_PORT", 0),
            ready_max_seal_age=env.number(
                "SEALER_READY_MAX_SEAL_AGE", DEFAULT_MAX_SEAL_AGE, minimum=1.0
            ),
            log_level=env.text("LOG_LEVEL", "info"),
            fault=_fault(env.text("SEALER_FAULT", "")),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        # A batch must close well inside the consumer's poll interval (300 s) or the group
        # would evict a healthy sealer.
        # Written so that NaN fails too.
        if not self.batch_max_age <= 60:
            raise SettingsError("AUDITLOG_BATCH_MAX_AGE must be at most 60 seconds")
        if not 0 <= self.batch_min_interval <= 60:
            raise SettingsError("AUDITLOG_BATCH_MIN_INTERVAL must be at most 60 seconds")
        if not 0 <= self.search_merge_interval <= 60:
            raise SettingsError("AUDITLOG_SEARCH_MERGE_INTERVAL must be at most 60 seconds")
        if 0 < self.search_generation_entries < MIN_GENERATION_ENTRIES:
            # Each generation is a table a search probes: tiny ones would pile up by thousands.
            raise SettingsError(
                "AUDITLOG_SEARCH_GENERATION_ENTRIES must be 0 (one generation) or at least"
                f" {MIN_GENERATION_ENTRIES:,}"
            )
        if not math.isfinite(self.rebalance_interval):
            raise SettingsError("AUDITLOG_SEALER_REBALANCE_INTERVAL must be a finite number")
        if "/" in self.topic:
            raise SettingsError("AUDITLOG_TOPIC must not contain '/'")
        for name, value in (("MAX_PAST", self.max_past), ("MAX_FUTURE", self.max_future)):
            if not math.isfinite(value):
                raise SettingsError(f"AUDITLOG_SEALER_{name} must be a finite number of seconds")


def _on_off(name: str, text: str) -> bool:
    if text not in ("on", "off"):
        raise SettingsError(f"AUDITLOG_{name} must be on or off, not {text!r}")
    return text == "on"


def _fault(text: str) -> faults.Fault | None:
    if not text:
        return None
    try:
        return faults.parse(text)
    except ValueError as exc:
        raise SettingsError(f"AUDITLOG_SEALER_FAULT: {exc}") from None
