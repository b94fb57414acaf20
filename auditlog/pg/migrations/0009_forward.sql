-- Schema 9: the forwarder's state (issue 25): destinations, one cursor per destination and log,
-- and the events a destination rejected for good.
--
-- A cursor is the first index of its log the destination has not yet acknowledged: everything
-- below it was delivered (or filtered out, or dead-lettered). It only moves forward, except by
-- an operator's replay, which also bumps the generation so that a forwarder still delivering the
-- old position cannot overwrite it. Retention must keep every entry at or above
-- `min(next_idx)` of a log (`forward_cursors_log` answers that per log) unless told otherwise.
CREATE TABLE forward_destinations (
    name       text PRIMARY KEY,
    kind       text NOT NULL,
    paused     boolean NOT NULL DEFAULT false,
    paused_at  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE forward_cursors (
    destination  text NOT NULL REFERENCES forward_destinations (name) ON DELETE CASCADE,
    log_id       text NOT NULL REFERENCES logs (log_id),
    next_idx     bigint NOT NULL CHECK (next_idx >= 0),
    generation   bigint NOT NULL DEFAULT 0,         -- bumped by each replay
    owner        text,                              -- the forwarder process delivering it
    lease_until  timestamptz,                       -- another process may take it over after
    delivered_at timestamptz,                       -- the last acknowledged batch
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, log_id)
);
CREATE INDEX forward_cursors_log ON forward_cursors (log_id, next_idx);

-- The forwarder processes alive, each renewing its row: the cursors are shared out among them.
CREATE TABLE forward_workers (
    owner   text PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE forward_dead_letters (
    destination text NOT NULL REFERENCES forward_destinations (name) ON DELETE CASCADE,
    log_id      text NOT NULL,
    idx         bigint NOT NULL,
    event_hash  bytea NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, log_id, idx)
);
