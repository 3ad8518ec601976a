-- 0004 orders (PostgreSQL): the event store, the orders read model (a
-- projection of the events), the outbox, and idempotency keys.

-- Append-only. (stream_id, version) is unique and gapless per stream:
-- appends carry the expected version (optimistic concurrency). seq orders
-- every event of every stream, for projection rebuilds.
CREATE TABLE events (
    seq        bigserial PRIMARY KEY,
    stream_id  uuid NOT NULL,
    version    bigint NOT NULL CHECK (version >= 1),
    type       text NOT NULL,
    data       text NOT NULL,
    metadata   text NOT NULL,
    created_us bigint NOT NULL,
    UNIQUE (stream_id, version)
);

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

-- Events for the jobs issue to publish; published_us is set when sent.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      text NOT NULL,
    created_us   bigint NOT NULL,
    published_us bigint
);
CREATE INDEX outbox_pending ON outbox(seq) WHERE published_us IS NULL;

-- Idempotency-Key records, per user, kept 24 h.
CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    state        text NOT NULL CHECK (state IN ('running', 'done')),
    status       bigint,
    location     text,
    response     text,
    created_ms   bigint NOT NULL,
    expires_ms   bigint NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_expires ON idempotency_keys(expires_ms);
