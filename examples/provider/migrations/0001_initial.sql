-- Initial schema of the reference authorization server.
-- Secrets (client secrets, codes, tokens, interaction ids, CSRF tokens) are stored as SHA-256
-- hashes only. Times are Unix seconds.

CREATE TABLE clients (
    client_id      TEXT PRIMARY KEY NOT NULL,
    secret_hash    TEXT,
    client_name    TEXT,
    redirect_uris  TEXT NOT NULL, -- JSON array of strings
    grant_types    TEXT NOT NULL, -- JSON array of strings
    scope          TEXT NOT NULL,
    auth_method    TEXT NOT NULL,
    issued_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE pending_authorizations (
    id_hash        TEXT PRIMARY KEY NOT NULL,
    browser_hash   TEXT NOT NULL,
    csrf_hash      TEXT NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    state          TEXT,
    code_challenge TEXT NOT NULL,
    resource       TEXT,
    stage          TEXT NOT NULL CHECK (stage IN ('login', 'consent')),
    subject        TEXT,
    granted_scope  TEXT,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_authorizations_expires_at ON pending_authorizations (expires_at);

CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    subject        TEXT NOT NULL,
    scope          TEXT NOT NULL,
    resource       TEXT,
    code_challenge TEXT NOT NULL,
    family_id      TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed       INTEGER NOT NULL DEFAULT 0 CHECK (consumed IN (0, 1))
) STRICT;
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
CREATE INDEX authorization_codes_consumed ON authorization_codes (consumed);

CREATE TABLE tokens (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    family_id      TEXT NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject        TEXT,
    scope          TEXT NOT NULL,
    resource       TEXT,
    jti            TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed       INTEGER NOT NULL DEFAULT 0 CHECK (consumed IN (0, 1))
) STRICT;
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE INDEX tokens_consumed ON tokens (consumed);

-- A family stays here after its tokens were deleted so that a token of the family stored
-- concurrently with the revocation is still refused.
CREATE TABLE revoked_families (
    family_id      TEXT PRIMARY KEY NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_families_expires_at ON revoked_families (expires_at);
