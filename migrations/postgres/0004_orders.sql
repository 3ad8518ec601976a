-- 0004 orders (PostgreSQL): the event store, the orders read model (a
-- projection of the events), the outbox, idempotency keys, and the
-- orders:cancel_any permission (docs/internals/orders.md). *_us columns are
-- microseconds since the epoch, *_ms columns milliseconds.

-- Append-only. (stream_id, version) is unique and gapless per stream:
-- appends carry the expected version (optimistic concurrency). seq orders
-- every event of every stream, for projection rebuilds.
CREATE TABLE events (
    seq         bigserial PRIMARY KEY,
    stream_id   uuid NOT NULL,
    stream_type text NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1),
    type        text NOT NULL,
    data        text NOT NULL,
    metadata    text NOT NULL,
    created_us  bigint NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_type_seq ON events(stream_type, seq);

-- The read model: rebuilt from events by `keel projections rebuild orders`.
CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    status      text NOT NULL,
    total_cents bigint NOT NULL,
    currency    text NOT NULL,
    version     bigint NOT NULL,
    created_us  bigint NOT NULL,
    updated_us  bigint NOT NULL
);
CREATE INDEX orders_user ON orders(user_id, id);
CREATE INDEX orders_status ON orders(status, id);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line             bigint NOT NULL,
    product_id       uuid NOT NULL,
    name             text NOT NULL,
    unit_price_cents bigint NOT NULL,
    quantity         bigint NOT NULL,
    PRIMARY KEY (order_id, line)
);

-- Messages for the jobs issue to publish; published_us is set when sent.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      text NOT NULL,
    created_us   bigint NOT NULL,
    published_us bigint
);
CREATE INDEX outbox_pending ON outbox(seq) WHERE published_us IS NULL;

-- Idempotency-Key records, per user, kept 24 h after they finish.
-- 'running': lock_id names the request that owns the key since locked_ms
-- (a crashed owner is taken over after 60 s); 'done': status, location and
-- response are the answer to replay.
CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    state        text NOT NULL CHECK (state IN ('running', 'done')),
    lock_id      text,
    locked_ms    bigint NOT NULL,
    status       bigint,
    location     text,
    response     text,
    created_ms   bigint NOT NULL,
    expires_ms   bigint NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_expires ON idempotency_keys(expires_ms);

-- SPEC section 3: the owner cancels their own order; an admin anyone's.
INSERT INTO permissions (name) VALUES ('orders:cancel_any');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'orders:cancel_any');
