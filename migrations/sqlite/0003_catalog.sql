-- 0003 catalog (SQLite): products with stock, full-text search on name and
-- description (FTS5, external content kept in step by triggers), and the
-- products:delete permission (docs/internals/catalog.md).
-- Money is integer minor units plus an ISO 4217 currency. *_us columns are
-- microseconds since the epoch. version starts at 1 and grows by one on
-- every change: it is the ETag.
--
-- rid is the rowid the FTS index points at. It is declared as an INTEGER
-- PRIMARY KEY because VACUUM may renumber the implicit rowid of a table
-- without one, which would silently detach every product from its index
-- entry; the public id is the UUID.

CREATE TABLE products (
    rid         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
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
    name, description, content='products', content_rowid='rid', tokenize='unicode61'
);
CREATE TRIGGER products_fts_ins AFTER INSERT ON products BEGIN
    INSERT INTO products_fts(rowid, name, description)
    VALUES (new.rid, new.name, new.description);
END;
CREATE TRIGGER products_fts_del AFTER DELETE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
    VALUES ('delete', old.rid, old.name, old.description);
END;
CREATE TRIGGER products_fts_upd AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
    VALUES ('delete', old.rid, old.name, old.description);
    INSERT INTO products_fts(rowid, name, description)
    VALUES (new.rid, new.name, new.description);
END;

-- Deleting a product is for admins only (products:write covers the rest).
INSERT INTO permissions (name) VALUES ('products:delete');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'products:delete');
