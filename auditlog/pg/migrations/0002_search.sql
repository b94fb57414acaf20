-- Schema 2: search indexes, stored search result sets, exports and download capabilities.
-- The query service writes only the three tables created here, never the log tables.

-- The order every search and export pages in: (received_at, log_id, idx), both directions.
-- It replaces the plain received_at index, which it covers.
CREATE INDEX events_time_order ON events (received_at, log_id COLLATE "C", idx);
DROP INDEX events_received_at;
-- Tenant-bound tokens always filter on tenant_id, newest first.
CREATE INDEX events_tenant_time ON events (tenant_id, received_at);
CREATE INDEX events_event_time ON events (event_time);

-- Substring search (`field:value`, bare terms) uses trigram indexes when pg_trgm can be
-- created. It is a trusted extension since PostgreSQL 13, so a database owner without superuser
-- can create it; where even that is refused, search still works, by scanning.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
    RAISE NOTICE 'pg_trgm unavailable (%): substring search will scan', SQLERRM;
END
$$;
DO $$
DECLARE
    col text;
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm') THEN
        -- new/old are left out: up to 32 KiB each, their trigram lists would dominate the
        -- index and the sealer's write cost.
        FOREACH col IN ARRAY ARRAY['actor', 'action', 'target', 'status', 'source', 'message']
        LOOP
            EXECUTE format(
                'CREATE INDEX %I ON events USING gin (%I gin_trgm_ops)', 'events_trgm_' || col, col
            );
        END LOOP;
    END IF;
END
$$;

-- A search's result set: the matching events in order, capped at max_results, with the log
-- sizes and roots it was taken against, so /v1/results pages the same events with the same
-- proofs until it expires.
CREATE TABLE search_results (
    id           text PRIMARY KEY,              -- pas_<32 [a-z0-9]>
    token_id     text NOT NULL,                 -- only this token may page or download it
    tenant_id    text,
    is_verbose   boolean NOT NULL,
    restriction  jsonb NOT NULL,                -- search_restriction as applied, for assert_*
    snapshot     jsonb NOT NULL,                -- per log: size, root, checkpoint
    log_ids      text[] NOT NULL,
    idxs         bigint[] NOT NULL,
    received_ats timestamptz[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX search_results_expires_at ON search_results (expires_at);

-- An export (POST /v1/export): its filter and the log sizes it covers. The rows are read when
-- downloaded; sealed rows never change, so every download of an export is the same.
CREATE TABLE exports (
    request_id text PRIMARY KEY,
    token_id   text NOT NULL,
    tenant_id  text,
    params     jsonb NOT NULL,
    snapshot   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX exports_expires_at ON exports (expires_at);

-- Download capabilities: whoever holds the URL may fetch it until it expires, without a token
-- (the Pangea SDK downloads with no Authorization header). Only sha256 of the secret is kept.
CREATE TABLE downloads (
    secret_hash bytea PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('search', 'export')),
    source_id   text NOT NULL,                  -- search_results.id or exports.request_id
    format      text NOT NULL CHECK (format IN ('csv', 'json')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX downloads_expires_at ON downloads (expires_at);
