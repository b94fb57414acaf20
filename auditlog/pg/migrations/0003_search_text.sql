-- Schema 3: one trigram index over all nine text fields instead of six per-column ones.
--
-- The six indexes of migration 0002 left `new`, `old` and `tenant_id` out, so a bare term (which
-- matches any field) scanned the table: seconds at 10M events. One index over the fields joined
-- by spaces serves bare terms and every `field:value` alike: search asks it for the events
-- containing the value anywhere (a superset, since pg_trgm splits words at spaces), then checks
-- the named field. GIN's write cost follows the number of trigrams, not of indexes, so the
-- sealer pays about what it paid for the six (docs/performance.md).
--
-- query/search_sql.py spells SEARCH_TEXT exactly as below: the planner uses the index only for
-- that same expression.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm') THEN
        DROP INDEX IF EXISTS events_trgm_actor, events_trgm_action, events_trgm_target,
            events_trgm_status, events_trgm_source, events_trgm_message;
        CREATE INDEX events_search_text ON events USING gin ((
            coalesce(action, '') || ' ' || coalesce(actor, '') || ' ' || coalesce(message, '')
            || ' ' || coalesce(new_value, '') || ' ' || coalesce(old_value, '') || ' '
            || coalesce(source, '') || ' ' || coalesce(status, '') || ' ' || coalesce(target, '')
            || ' ' || coalesce(tenant_id, '')
        ) gin_trgm_ops);
    END IF;
END
$$;
