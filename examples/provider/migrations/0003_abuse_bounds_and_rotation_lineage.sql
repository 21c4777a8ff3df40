-- Bounds on anonymous writes, and the lineage that lets a refresh retry within the grace.

-- The address (IPv4, or IPv6 /64) that started a pending authorization, for the per-address cap.
ALTER TABLE pending_authorizations ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE INDEX pending_authorizations_origin ON pending_authorizations (origin, expires_at);

-- Anonymously registered clients that were never used, deleted by the cleanup task after
-- expires_at. A client leaves this table once a user approved one of its requests.
CREATE TABLE unused_clients (
    client_id      TEXT PRIMARY KEY NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX unused_clients_expires_at ON unused_clients (expires_at);

-- parent_hash: the refresh token this token was issued in exchange for (NULL for the first pair).
-- rotated_at: when this refresh token was rotated (NULL while unused).
ALTER TABLE tokens ADD COLUMN parent_hash TEXT;
ALTER TABLE tokens ADD COLUMN rotated_at INTEGER;
CREATE INDEX tokens_parent_hash ON tokens (parent_hash);
