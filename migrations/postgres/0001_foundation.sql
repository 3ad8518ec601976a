-- 0001 foundation (PostgreSQL): instance metadata.
-- schema_migrations itself is created by src/db/migrate.c, not here.

CREATE TABLE keel_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
