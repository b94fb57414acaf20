-- Schema 11: the search blocks in generations (issue 29).
--
-- One GIN index over every block made each sealed event dearer as the database grew: PostgreSQL's
-- CPU per event rose from ~30 µs to ~78 µs between 100k and 10M events, and its WAL from 2.8 to
-- 6.1 KB, all of it inside the blocks' index (bench/JOURNAL.md, 2026-12-05 23:05). The blocks
-- are now a table partitioned by generation: the sealers write into the newest one, whose index
-- stays small; one sealer opens the next generation once the logs have grown by a set number of
-- entries (auditlog/pg/search_generations.py); a search probes every generation's index.
--
-- The blocks written so far become generation 0.
ALTER TABLE search_blocks RENAME TO search_blocks_g0;
ALTER INDEX search_blocks_keys RENAME TO search_blocks_g0_keys;
ALTER TABLE search_blocks_g0 DROP CONSTRAINT search_blocks_pkey;
ALTER TABLE search_blocks_g0 ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE search_blocks_g0
    ADD CONSTRAINT search_blocks_g0_pkey PRIMARY KEY (log_id, first_idx, generation);

-- Generation n holds the blocks written while it was the newest; entries_at_open is how many
-- entries all logs held then (the sum of logs.size), so that the next one opens after a set
-- number more. Generation 0 counts from nothing: a database already past that number opens
-- generation 1 at the first turn. first_at and last_at: once no longer among the two newest
-- (nothing writes there any more), its blocks' earliest first_at and latest last_at, so that a
-- search with a time range skips the generations outside it; NULL until then.
CREATE TABLE search_generations (
    generation      integer PRIMARY KEY CHECK (generation >= 0),
    opened_at       timestamptz NOT NULL DEFAULT now(),
    entries_at_open bigint NOT NULL CHECK (entries_at_open >= 0),
    first_at        timestamptz,
    last_at         timestamptz
);
INSERT INTO search_generations (generation, entries_at_open) VALUES (0, 0);

-- The newest generation, as the blocks' default: every writer (the sealers' COPY, backfill,
-- erasure's rebuilt blocks) lands in it without knowing generations. STABLE keeps COPY's
-- multi-row inserts (PostgreSQL inserts row by row where a default is volatile), and reads
-- with the writing statement's snapshot: a seal whose COPY waited for this migration's lock
-- took its snapshot before the commit and sees no generation at all, so 0, the blocks' home
-- until the first generation opens (tests/integration/test_search_generations.py).
CREATE FUNCTION search_generation() RETURNS integer
    LANGUAGE sql STABLE
    AS 'SELECT coalesce(max(generation), 0) FROM search_generations';

-- A block's (log_id, first_idx) is unique within its generation only: PostgreSQL's keys over
-- partitions must include the partition key. The sealer writes each entry's block once
-- (sealer/store.py); erasure deletes a block wherever it lives before writing it again.
CREATE TABLE search_blocks (
    log_id     text NOT NULL,
    first_idx  bigint NOT NULL,
    last_idx   bigint NOT NULL,
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    keys       integer[] NOT NULL,
    generation integer NOT NULL DEFAULT search_generation(),
    PRIMARY KEY (log_id, first_idx, generation)
) PARTITION BY RANGE (generation);
ALTER TABLE search_blocks ALTER COLUMN keys SET STORAGE EXTERNAL;
CREATE INDEX search_blocks_keys ON ONLY search_blocks USING gin (keys);
ALTER TABLE search_blocks ATTACH PARTITION search_blocks_g0 FOR VALUES FROM (0) TO (1);
ALTER INDEX search_blocks_keys ATTACH PARTITION search_blocks_g0_keys;
