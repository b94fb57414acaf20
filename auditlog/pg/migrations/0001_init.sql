-- Schema 1: logs, sealed events, tiles, entry bundles, checkpoints, API tokens.
-- The sealer is the only writer of logs/events/tiles/bundles/checkpoints; query and audit read.

CREATE TABLE logs (
    log_id       text PRIMARY KEY,              -- "<topic>-<partition>", Kafka's TopicPartition form
    origin       text NOT NULL UNIQUE,          -- checkpoint origin line
    topic        text NOT NULL,
    kafka_partition integer NOT NULL,
    hash_scheme  text NOT NULL,
    size         bigint NOT NULL DEFAULT 0,
    root         bytea NOT NULL,
    next_offset  bigint NOT NULL DEFAULT 0,     -- first Kafka offset not yet sealed: the source of truth
    checkpoint   text,                          -- latest signed note, NULL until the first batch
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition)
);

-- Partitioned by received_at so that retention can drop whole months; the sealer creates the
-- monthly partitions it needs, and the default partition catches any other time (a plain Kafka
-- event keeps its producer's timestamp). (log_id, idx) is unique by construction: indexes come
-- from the fenced log head.
CREATE TABLE events (
    log_id          text NOT NULL,
    idx             bigint NOT NULL,
    event_hash      bytea NOT NULL,             -- sha256 of the canonical envelope (Pangea's hash)
    envelope        bytea NOT NULL,             -- canonical envelope bytes, byte for byte as hashed
    received_at     timestamptz NOT NULL,
    kafka_offset    bigint NOT NULL,
    -- Searchable copies of the standard fields; the envelope stays the only thing hashed.
    tenant_id       text,
    actor           text,
    action          text,
    target          text,
    status          text,
    source          text,
    message         text,
    new_value       text,
    old_value       text,
    event_time      timestamptz,                -- the event's own `timestamp`, when it parses
    idempotency_key text,
    config_id       text,
    PRIMARY KEY (log_id, idx, received_at)
) PARTITION BY RANGE (received_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
-- Lookups by (log_id, idx) use the primary key's prefix; a separate index would only slow COPY.
-- Hash lookups (receipts by hash) use a hash index: random 32-byte keys wreck a btree's inserts.
CREATE INDEX events_event_hash ON events USING hash (event_hash);
CREATE INDEX events_received_at ON events (received_at);

-- Producers' retry keys, per tenant ('' when none), remembered for the sealer's window.
CREATE TABLE idempotency_keys (
    tenant_id text NOT NULL,
    key       text NOT NULL,
    log_id    text NOT NULL,
    idx       bigint NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_sealed_at ON idempotency_keys (sealed_at);

CREATE TABLE tiles (
    log_id text NOT NULL REFERENCES logs (log_id),
    level  integer NOT NULL,
    idx    bigint NOT NULL,
    data   bytea NOT NULL,                      -- concatenated 32-byte hashes; width = length / 32
    PRIMARY KEY (log_id, level, idx)
);

CREATE TABLE bundles (
    log_id text NOT NULL REFERENCES logs (log_id),
    idx    bigint NOT NULL,
    data   bytea NOT NULL,                      -- uint16-length-prefixed entries, appended per batch
    PRIMARY KEY (log_id, idx)
);

CREATE TABLE checkpoints (
    log_id     text NOT NULL REFERENCES logs (log_id),
    size       bigint NOT NULL,
    root       bytea NOT NULL,
    note       text NOT NULL,
    -- clock_timestamp, not now(): the moment of sealing, not the start of the transaction
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (log_id, size)
);

CREATE TABLE api_tokens (
    token_id   text PRIMARY KEY,                -- public id, shown by `auditlog token list`
    token_hash bytea NOT NULL UNIQUE,           -- sha256 of the secret token; the token itself is never stored
    name       text NOT NULL,
    scopes     text[] NOT NULL,
    tenant_id  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Asynchronous Pangea requests (log_async, export): polled with GET /request/{id} on any replica.
CREATE TABLE async_requests (
    request_id text PRIMARY KEY,
    token_id   text NOT NULL,
    kind       text NOT NULL,
    status     text NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    result     bytea,                          -- the final Pangea result object, JSON
    summary    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX async_requests_expires_at ON async_requests (expires_at);
