-- 0003 catalog (SQLite): products with stock, and full-text search on name
-- and description (FTS5, external content kept in step by triggers).
-- Money is integer minor units plus an ISO 4217 currency. *_us columns are
-- microseconds since the epoch. version starts at 1 and grows by one on
-- every change: it is the ETag.

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency    TEXT NOT NULL,
    category    TEXT NOT NULL DEFAULT '',
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    version     INTEGER NOT NULL DEFAULT 1,
    created_us  INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL
) STRICT;
CREATE INDEX products_category ON products(category, id);
CREATE INDEX products_price ON products(price_cents, id);
CREATE INDEX products_created ON products(created_us, id);
CREATE INDEX products_name ON products(name, id);

CREATE VIRTUAL TABLE products_fts USING fts5(
    name, description, content='products', content_rowid='rowid', tokenize='unicode61'
);
CREATE TRIGGER products_fts_ins AFTER INSERT ON products BEGIN
    INSERT INTO products_fts(rowid, name, description)
    VALUES (new.rowid, new.name, new.description);
END;
CREATE TRIGGER products_fts_del AFTER DELETE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER products_fts_upd AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
    INSERT INTO products_fts(rowid, name, description)
    VALUES (new.rowid, new.name, new.description);
END;
