-- Schema 8: retention, erasure and archives (issue 24; docs/retention.md).
--
-- Retention drops whole monthly partitions of events; the hash tiles and checkpoints stay, so
-- every retained event's receipt and every consistency proof still verify. What was pruned is
-- said by a signed note per log (auditlog-pruned/v1, docs/verification.md): entries below its
-- bound may be absent. Every statement ever made is kept, so an auditor can see a bound that
-- went backwards.
CREATE TABLE retention_policies (
    scope       text NOT NULL CHECK (scope IN ('default', 'log', 'tenant')),
    name        text NOT NULL DEFAULT '',        -- the log id or tenant id; '' for the default
    keep_months integer NOT NULL CHECK (keep_months >= 1),
    require_archive boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name)
);

CREATE TABLE pruned_bounds (
    log_id     text NOT NULL REFERENCES logs (log_id),
    below      bigint NOT NULL CHECK (below >= 0),
    size       bigint NOT NULL,                  -- the checkpoint the statement was made against
    note       text NOT NULL,                    -- the signed auditlog-pruned/v1 note
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (log_id, below)
);

-- One erasure record per erased entry: the envelope and its searchable copies are gone, the
-- leaf stays in the tiles, and this signed note says whose leaf it is and why it was erased.
-- event_hash stays queryable here, so the entry's receipt is still served by hash.
CREATE TABLE erasures (
    log_id     text NOT NULL REFERENCES logs (log_id),
    idx        bigint NOT NULL,
    event_hash bytea NOT NULL,
    tenant_id  text,                             -- whose receipt it is, for tenant-bound tokens
    note       text NOT NULL,                    -- the signed auditlog-erasure/v1 note
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (log_id, idx)
);
CREATE INDEX erasures_event_hash ON erasures (event_hash);

-- Archives written by `auditlog archive`: retention with require_archive prunes only entries
-- an archive holds.
CREATE TABLE archives (
    log_id     text NOT NULL REFERENCES logs (log_id),
    first_idx  bigint NOT NULL,
    end_idx    bigint NOT NULL,                  -- exclusive
    size       bigint NOT NULL,                  -- the checkpoint the archive verifies against
    sha256     bytea NOT NULL,                   -- of the archive file as written
    location   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (log_id, first_idx, end_idx, size)
);
