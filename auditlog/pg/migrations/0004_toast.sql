-- Schema 4: cheaper TOAST for the two tables every seal writes large values to.
--
-- A full tile is 8 KiB and an entry bundle up to ~100 KiB, both above the 2 KiB TOAST threshold,
-- so PostgreSQL compressed them with pglz on every seal: about a fifth of a 5,000-event seal
-- (docs/performance.md). Tiles are hashes, which do not compress: store them without trying.
-- Bundles are JSON, which does: lz4 (PostgreSQL >= 14, when built with it) compresses them about
-- as well for a fraction of the CPU. Only values written from now on are affected.
ALTER TABLE tiles ALTER COLUMN data SET STORAGE EXTERNAL;
DO $$
BEGIN
    ALTER TABLE bundles ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 unavailable (%): entry bundles keep the default compression', SQLERRM;
END
$$;
