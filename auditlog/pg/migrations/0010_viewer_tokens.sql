-- Schema 10: tokens can expire (issue 26). The console's viewer tokens are minted by an admin
-- endpoint for one tenant, read-only (scope search) and short-lived; a token past its
-- expires_at is refused like a revoked one, and the query service's sweeper deletes it. Tokens
-- created without an expiry (every token before this migration) keep NULL and never expire.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
CREATE INDEX api_tokens_expires ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
