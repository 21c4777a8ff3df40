-- Schema of the reference authorization server on PostgreSQL: the SQLite schema after all of its
-- migrations (../0001 to ../0003), in PostgreSQL types.
-- Secrets (client secrets, codes, tokens, interaction ids, CSRF tokens) are stored as SHA-256
-- hashes only. Times are Unix seconds.

CREATE TABLE clients (
    client_id       TEXT PRIMARY KEY,
    secret_hash     TEXT,
    client_name     TEXT,
    redirect_uris   TEXT NOT NULL, -- JSON array of strings
    grant_types     TEXT NOT NULL, -- JSON array of strings
    scope           TEXT NOT NULL,
    auth_method     TEXT NOT NULL,
    issued_at       BIGINT NOT NULL,
    resource_server BOOLEAN NOT NULL DEFAULT false,
    resources       TEXT NOT NULL DEFAULT '[]' -- JSON array of strings; empty = every known resource
);

-- Anonymously registered clients that were never used, deleted by the cleanup task after
-- expires_at. A client leaves this table once a user approved one of its requests.
CREATE TABLE unused_clients (
    client_id       TEXT PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX unused_clients_expires_at ON unused_clients (expires_at);

CREATE TABLE pending_authorizations (
    id_hash         TEXT PRIMARY KEY,
    browser_hash    TEXT NOT NULL,
    csrf_hash       TEXT NOT NULL,
    client_id       TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    state           TEXT,
    code_challenge  TEXT NOT NULL,
    resource        TEXT,
    stage           TEXT NOT NULL CHECK (stage IN ('login', 'consent')),
    subject         TEXT,
    granted_scope   TEXT,
    expires_at      BIGINT NOT NULL,
    -- The address (IPv4, or IPv6 /64) that started it, for the per-address cap.
    origin          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX pending_authorizations_expires_at ON pending_authorizations (expires_at);
CREATE INDEX pending_authorizations_origin ON pending_authorizations (origin, expires_at);
CREATE INDEX pending_authorizations_client_id ON pending_authorizations (client_id);

CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    subject         TEXT NOT NULL,
    scope           TEXT NOT NULL,
    resource        TEXT,
    code_challenge  TEXT NOT NULL,
    family_id       TEXT NOT NULL,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed        BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
CREATE INDEX authorization_codes_client_id ON authorization_codes (client_id);

CREATE TABLE tokens (
    token_hash      TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    family_id       TEXT NOT NULL,
    client_id       TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject         TEXT,
    scope           TEXT NOT NULL,
    resource        TEXT,
    jti             TEXT NOT NULL,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed        BOOLEAN NOT NULL DEFAULT false,
    -- The refresh token this token was issued in exchange for (NULL for the first pair).
    parent_hash     TEXT,
    -- When this refresh token was rotated (NULL while unused).
    rotated_at      BIGINT
);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE INDEX tokens_parent_hash ON tokens (parent_hash);
CREATE INDEX tokens_client_id ON tokens (client_id);

-- A family stays here after its tokens were deleted so that a token of the family stored
-- concurrently with the revocation is still refused.
CREATE TABLE revoked_families (
    family_id       TEXT PRIMARY KEY,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX revoked_families_expires_at ON revoked_families (expires_at);
