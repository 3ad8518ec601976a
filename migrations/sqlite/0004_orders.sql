-- 0004 orders (SQLite): the event store, the orders read model (a
-- projection of the events), the outbox, idempotency keys, and the
-- orders:cancel_any permission (docs/internals/orders.md). *_us columns are
-- microseconds since the epoch, *_ms columns milliseconds.

-- Append-only. (stream_id, version) is unique and gapless per stream:
-- appends carry the expected version (optimistic concurrency). seq orders
-- every event of every stream, for projection rebuilds.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id   TEXT NOT NULL,
    stream_type TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    UNIQUE (stream_id, version)
) STRICT;
CREATE INDEX events_type_seq ON events(stream_type, seq);

-- The read model: rebuilt from events by `keel projections rebuild orders`.
CREATE TABLE orders (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    currency    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_us  INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL
) STRICT;
CREATE INDEX orders_user ON orders(user_id, id);
CREATE INDEX orders_status ON orders(status, id);

CREATE TABLE order_items (
    order_id         TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line             INTEGER NOT NULL,
    product_id       TEXT NOT NULL,
    name             TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    quantity         INTEGER NOT NULL,
    PRIMARY KEY (order_id, line)
) STRICT;

-- Messages for the jobs issue to publish; published_us is set when sent.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    published_us INTEGER
) STRICT;
CREATE INDEX outbox_pending ON outbox(seq) WHERE published_us IS NULL;

-- Idempotency-Key records, per user, kept 24 h after they finish.
-- 'running': lock_id names the request that owns the key since locked_ms
-- (a crashed owner is taken over after 60 s); 'done': status, location and
-- response are the answer to replay.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'done')),
    lock_id      TEXT,
    locked_ms    INTEGER NOT NULL,
    status       INTEGER,
    location     TEXT,
    response     TEXT,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;
CREATE INDEX idempotency_expires ON idempotency_keys(expires_ms);

-- SPEC section 3: the owner cancels their own order; an admin anyone's.
INSERT INTO permissions (name) VALUES ('orders:cancel_any');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'orders:cancel_any');
