-- Schema 5: what one token holds stored is capped (AUDITLOG_QUERY_MAX_RESULT_SETS, _EXPORTS,
-- _DOWNLOADS), counted per token over the live rows of each table: downloads now name the token
-- that minted them, and each table gets an index on (token_id, expires_at) for that count.

ALTER TABLE downloads ADD COLUMN token_id text;
-- Capabilities minted before this migration: the token of their search or export.
UPDATE downloads d SET token_id = s.token_id
    FROM search_results s WHERE d.kind = 'search' AND s.id = d.source_id;
UPDATE downloads d SET token_id = e.token_id
    FROM exports e WHERE d.kind = 'export' AND e.request_id = d.source_id;

CREATE INDEX search_results_token ON search_results (token_id, expires_at);
CREATE INDEX exports_token ON exports (token_id, expires_at);
CREATE INDEX downloads_token ON downloads (token_id, expires_at);
