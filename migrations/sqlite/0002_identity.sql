-- 0002 identity (SQLite): users, roles and permissions, refresh token
-- families, the access-token blocklist and login throttling
-- (docs/internals/identity.md). Times in *_us columns are microseconds
-- since the epoch; *_ms columns are milliseconds.

CREATE TABLE roles (
    name TEXT PRIMARY KEY
) STRICT;

CREATE TABLE permissions (
    name TEXT PRIMARY KEY
) STRICT;

CREATE TABLE role_permissions (
    role       TEXT NOT NULL REFERENCES roles(name),
    permission TEXT NOT NULL REFERENCES permissions(name),
    PRIMARY KEY (role, permission)
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL REFERENCES roles(name),
    created_us    INTEGER NOT NULL,
    updated_us    INTEGER NOT NULL
) STRICT;

-- A family is one login (a session): every refresh token it rotates through.
CREATE TABLE refresh_families (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_us   INTEGER NOT NULL,
    last_used_us INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
) STRICT;
CREATE INDEX refresh_families_user ON refresh_families(user_id);

-- Only the SHA-256 (hex) of a refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    expires_ms INTEGER NOT NULL,
    rotated_ms INTEGER
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

-- Revoked access tokens: kind 'jti' (subject = jti, value_ms = its exp) or
-- kind 'user' (subject = user id, value_ms = tokens issued up to this time
-- are revoked). Rows are kept until expires_ms; seq orders them for polling.
CREATE TABLE token_blocklist (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('jti', 'user')),
    subject    TEXT NOT NULL,
    value_ms   INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX token_blocklist_expires ON token_blocklist(expires_ms);

-- Login failures per key ("a:<email>", "ai:<email>|<ip>", "i:<ip>").
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_ms    INTEGER NOT NULL,
    blocked_ms   INTEGER NOT NULL
) STRICT;

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
