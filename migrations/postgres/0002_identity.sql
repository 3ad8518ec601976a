-- 0002 identity (PostgreSQL): users, roles and permissions, refresh token
-- families, the access-token blocklist and login throttling
-- (docs/internals/identity.md). Times in *_us columns are microseconds
-- since the epoch; *_ms columns are milliseconds.

CREATE TABLE roles (
    name text PRIMARY KEY
);

CREATE TABLE permissions (
    name text PRIMARY KEY
);

CREATE TABLE role_permissions (
    role       text NOT NULL REFERENCES roles(name),
    permission text NOT NULL REFERENCES permissions(name),
    PRIMARY KEY (role, permission)
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL REFERENCES roles(name),
    created_us    bigint NOT NULL,
    updated_us    bigint NOT NULL
);

-- A family is one login (a session): every refresh token it rotates through.
CREATE TABLE refresh_families (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_us   bigint NOT NULL,
    last_used_us bigint NOT NULL,
    expires_ms   bigint NOT NULL,
    revoked_ms   bigint
);
CREATE INDEX refresh_families_user ON refresh_families(user_id);

-- Only the SHA-256 (hex) of a refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    expires_ms bigint NOT NULL,
    rotated_ms bigint
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

-- Revoked access tokens: kind 'jti' (subject = jti, value_ms = its exp) or
-- kind 'user' (subject = user id, value_ms = tokens issued up to this time
-- are revoked). Rows are kept until expires_ms; seq orders them for polling.
CREATE TABLE token_blocklist (
    seq        bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('jti', 'user')),
    subject    text NOT NULL,
    value_ms   bigint NOT NULL,
    expires_ms bigint NOT NULL
);
CREATE INDEX token_blocklist_expires ON token_blocklist(expires_ms);

-- Login failures per key ("a:<email>", "ai:<email>|<ip>", "i:<ip>").
CREATE TABLE login_throttle (
    key          text PRIMARY KEY,
    failures     bigint NOT NULL,
    window_ms    bigint NOT NULL,
    blocked_ms   bigint NOT NULL
);

-- Roles and their permissions (docs/internals/identity.md has the table).
INSERT INTO roles (name) VALUES ('admin'), ('manager'), ('user'), ('viewer');
INSERT INTO permissions (name) VALUES
    ('profile:read'),
    ('profile:write'),
    ('sessions:manage'),
    ('products:read'),
    ('products:write'),
    ('inventory:write'),
    ('orders:create'),
    ('orders:read'),
    ('orders:read_all'),
    ('orders:manage'),
    ('users:read'),
    ('users:write'),
    ('jobs:admin');
INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'profile:read'),
    ('admin', 'profile:write'),
    ('admin', 'sessions:manage'),
    ('admin', 'products:read'),
    ('admin', 'products:write'),
    ('admin', 'inventory:write'),
    ('admin', 'orders:create'),
    ('admin', 'orders:read'),
    ('admin', 'orders:read_all'),
    ('admin', 'orders:manage'),
    ('admin', 'users:read'),
    ('admin', 'users:write'),
    ('admin', 'jobs:admin'),
    ('manager', 'profile:read'),
    ('manager', 'profile:write'),
    ('manager', 'sessions:manage'),
    ('manager', 'products:read'),
    ('manager', 'products:write'),
    ('manager', 'inventory:write'),
    ('manager', 'orders:create'),
    ('manager', 'orders:read'),
    ('manager', 'orders:read_all'),
    ('manager', 'orders:manage'),
    ('user', 'profile:read'),
    ('user', 'profile:write'),
    ('user', 'sessions:manage'),
    ('user', 'products:read'),
    ('user', 'orders:create'),
    ('user', 'orders:read'),
    ('viewer', 'profile:read'),
    ('viewer', 'sessions:manage'),
    ('viewer', 'products:read'),
    ('viewer', 'orders:read');
