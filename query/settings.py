"""Settings of the query service, read from ``AUDITLOG_*`` once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from auditlog.core.errors import NoteError
from auditlog.core.note import NoteVerifier
from auditlog.runtime.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_TOPIC,
    Env,
    Secret,
    SettingsError,
    default_workers,
)
from auditlog.web.ratelimit import RateSettings

# Cost units a second per token and per tenant, in each query process (docs/query.md#rate-limits:
# a receipt costs 1, a search 20). Above what one process serves on the benchmark machine
# (bench_query: 6.2k receipts/s in a closed loop, searches one after another), so no benchmark is
# ever throttled; the burst (default two seconds' worth) absorbs spikes.
DEFAULT_UNITS_PER_SECOND = 20_000
DEFAULT_RATE_LIMITS = RateSettings.defaults(DEFAULT_UNITS_PER_SECOND)
DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: Secret = Secret(DEFAULT_DATABASE_URL)
    host: str = "127.0.0.1"
    port: int = 8001
    # Worker processes answering on host:port, each with its own pool, caches and rate-limit
    # buckets (docs/query.md#worker-processes).
    workers: int = 1
    log_level: str = "info"
    # Search, /v1/root and exports cover the logs of this topic (one per partition).
    topic: str = DEFAULT_TOPIC
    # Base of download URLs; None: the URL the request came in on.
    public_url: str | None = None
    result_ttl_hours: float = 48.0  # Pangea's query_result_retention default, 2 days
    download_ttl_minutes: float = 60.0
    # The deployment's checkpoint verifier key (public): GET /v1/logs lists each log's own vkey,
    # this key under the log's origin (the key-name rule). None: no vkeys listed.
    vkey: str | None = None
    tile_cache_tiles: int = 4096  # at most 8 KiB each: a 32 MiB bound
    node_cache_nodes: int = 65536  # per log, about 100 bytes each
    pool_size: int = 8
    # How long a receipt may reuse a log's signed head instead of reading it again; 0: never.
    head_ttl_seconds: float = 1.0
    # How long the query service trusts what it read about the event-hash index (hash_index).
    hash_index_ttl_seconds: float = 10.0
    # Search, results and export requests are small; larger bodies are refused while read.
    max_body_bytes: int = 1024 * 1024
    # PostgreSQL cancels a statement that runs longer: receipts, tiles, roots and pages take
    # milliseconds, so a few seconds means something is wrong; searches may take longer.
    statement_timeout_seconds: float = 5.0
    search_timeout_seconds: float = 15.0
    # Token buckets in cost units a second (0: none) and bursts, per token and per tenant.
    rate_limits: RateSettings = DEFAULT_RATE_LIMITS
    # What one token may keep stored at once (live, unexpired); 0: no cap.
    max_result_sets: int = 1000
    max_exports: int = 100
    max_downloads: int = 1000
    # A search or results page stops adding events past this many bytes (at least one event).
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    # The metrics listener (/metrics on a port of its own); port 0: none, /metrics is then
    # served on the API port (development).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # A streaming replica that receipts, proofs, tiles and checkpoints are read from while it is
    # at most replica_max_lag seconds behind (query/replica.py); None: the primary only.
    replica_database_url: Secret | None = None
    replica_max_lag: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        public_url = env.optional("PUBLIC_URL")
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise SettingsError("AUDITLOG_PUBLIC_URL must start with http:// or https://")
        replica = env.optional("QUERY_DATABASE_URL")
        vkey = env.optional("VKEY")
        if vkey is not None:
            try:
                NoteVerifier.from_vkey(vkey)
            except NoteError as exc:
                raise SettingsError(f"AUDITLOG_VKEY: {exc}") from None
        return cls(
            database_url=env.secret("DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.text("HOST", "127.0.0.1"),
            port=env.integer("PORT", 8001, minimum=1),
            workers=env.integer("QUERY_WORKERS", default_workers(), minimum=1),
            log_level=env.text("LOG_LEVEL", "info"),
            topic=env.text("TOPIC", DEFAULT_TOPIC),
            public_url=public_url.rstrip("/") if public_url else None,
            result_ttl_hours=env.number("QUERY_RESULT_TTL_HOURS", 48.0, minimum=0.01),
            download_ttl_minutes=env.number("QUERY_DOWNLOAD_TTL_MINUTES", 60.0, minimum=0.1),
            vkey=vkey,
            tile_cache_tiles=env.integer("QUERY_TILE_CACHE", 4096, minimum=16),
            node_cache_nodes=env.integer("QUERY_NODE_CACHE", 65536, minimum=0),
            pool_size=env.integer("QUERY_POOL_SIZE", 8, minimum=1),
            head_ttl_seconds=env.number("QUERY_HEAD_TTL_SECONDS", 1.0, minimum=0.0),
            hash_index_ttl_seconds=env.number("QUERY_HASH_INDEX_TTL_SECONDS", 10.0, minimum=0.0),
            max_body_bytes=env.integer("QUERY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            statement_timeout_seconds=env.number("QUERY_STATEMENT_TIMEOUT", 5.0, minimum=0.1),
            search_timeout_seconds=env.number("QUERY_SEARCH_TIMEOUT", 15.0, minimum=0.1),
            rate_limits=RateSettings.from_env(env, "QUERY", DEFAULT_UNITS_PER_SECOND),
            max_result_sets=env.integer("QUERY_MAX_RESULT_SETS", 1000, minimum=0),
            max_exports=env.integer("QUERY_MAX_EXPORTS", 100, minimum=0),
            max_downloads=env.integer("QUERY_MAX_DOWNLOADS", 1000, minimum=0),
            max_page_bytes=env.integer(
                "QUERY_MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES, minimum=64 * 1024
            ),
            metrics_host=env.text("QUERY_METRICS_HOST", "127.0.0.1"),
            metrics_port=env.port("QUERY_METRICS_PORT", 0),
            replica_database_url=Secret(replica) if replica else None,
            replica_max_lag=env.number("QUERY_REPLICA_MAX_LAG", 5.0, minimum=0.0),
        )
