-- Who may get which token: clients configured as resource servers may introspect any token, and
-- a client may be restricted to some of the known resources (RFC 8707).
ALTER TABLE clients ADD COLUMN resource_server INTEGER NOT NULL DEFAULT 0 CHECK (resource_server IN (0, 1));
ALTER TABLE clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]'; -- JSON array of strings; empty = every known resource
