-- Schema 7: the search-block index replaces the trigram index as the default (issue 29).
--
-- With real event text, pg_trgm's index over every text field cost PostgreSQL ~120-200 µs per
-- sealed event (about 8x the rest of a seal) and ~40 KB of WAL. The sealer now writes, in the
-- seal's transaction, one row per block of up to 64 consecutive entries of a log: the keys of
-- every token in their text fields (auditlog/core/search_keys.py). A search whose value shows a
-- whole token reads only the blocks holding its keys, then checks each event's fields exactly;
-- other values read the events of the search's range, or pg_trgm's index where an operator
-- builds it again (`auditlog search-index create`).
CREATE TABLE search_blocks (
    log_id    text NOT NULL,
    first_idx bigint NOT NULL,
    last_idx  bigint NOT NULL,
    first_at  timestamptz NOT NULL,             -- the block's earliest and latest received_at:
    last_at   timestamptz NOT NULL,             -- they let search skip months that cannot match
    keys      integer[] NOT NULL,
    PRIMARY KEY (log_id, first_idx)
);
-- Only the GIN index reads the keys; compressing them costs the sealer CPU for nothing.
ALTER TABLE search_blocks ALTER COLUMN keys SET STORAGE EXTERNAL;
CREATE INDEX search_blocks_keys ON search_blocks USING gin (keys);

-- Entries sealed before this migration have no blocks: search reads them as it did before
-- (all of them, below `below`) until `auditlog search-index backfill` writes their blocks.
CREATE TABLE search_coverage (
    log_id text PRIMARY KEY,
    below  bigint NOT NULL CHECK (below >= 0)
);
INSERT INTO search_coverage (log_id, below) SELECT log_id, size FROM logs WHERE size > 0;

DROP INDEX IF EXISTS events_search_text;
