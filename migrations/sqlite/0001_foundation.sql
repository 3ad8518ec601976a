-- 0001 foundation (SQLite): instance metadata.
-- schema_migrations itself is created by src/db/migrate.c, not here.
-- SQLite tables are STRICT: a value of the wrong type is an error, as in PostgreSQL.

CREATE TABLE keel_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
