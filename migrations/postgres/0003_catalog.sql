-- 0003 catalog (PostgreSQL): products with stock, full-text search on name
-- and description (a generated tsvector with a GIN index), and the
-- products:delete permission (docs/internals/catalog.md). Money is integer
-- minor units plus an ISO 4217 currency. *_us columns are microseconds
-- since the epoch. version starts at 1 and grows by one on every change:
-- it is the ETag.

CREATE TABLE products (
    id          uuid PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    text NOT NULL,
    category    text NOT NULL DEFAULT '',
    stock       bigint NOT NULL CHECK (stock >= 0),
    version     bigint NOT NULL DEFAULT 1,
    created_us  bigint NOT NULL,
    updated_us  bigint NOT NULL,
    search      tsvector GENERATED ALWAYS AS
                (to_tsvector('simple', name || ' ' || description)) STORED
);
CREATE INDEX products_category ON products(category, id);
CREATE INDEX products_price ON products(price_cents, id);
CREATE INDEX products_created ON products(created_us, id);
CREATE INDEX products_name ON products(name, id);
CREATE INDEX products_search ON products USING gin (search);

-- Deleting a product is for admins only (products:write covers the rest).
INSERT INTO permissions (name) VALUES ('products:delete');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'products:delete');
