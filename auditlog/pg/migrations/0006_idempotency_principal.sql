-- Schema 6: idempotency keys belong to a principal as well as a tenant, and remember what they
-- sealed (issue 21).
--
-- A key is claimed for (principal, tenant, key): the principal is who produced the record
-- (`token:<token_id>` for ingest, `kafka` for any other Kafka writer; docs/kafka-messages.md),
-- so two tokens without a tenant no longer share one namespace. `digest` is the SHA-256 of the
-- sealed envelope's canonical JSON without received_at: a later record with the same key and
-- another digest is a conflict (a dead letter), the same digest a duplicate (skipped). The query
-- service's GET /v1/receipts?idempotency_key= finds the sealed event at (log_id, idx).
--
-- Rows claimed before this migration keep their (log_id, idx) and get the principal '' (nobody
-- the sealer names now, so they match no new record) and no digest; they expire with the
-- sealer's window like any other.
ALTER TABLE idempotency_keys ADD COLUMN principal text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN digest bytea;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (principal, tenant_id, key);
ALTER TABLE idempotency_keys ALTER COLUMN principal DROP DEFAULT;
