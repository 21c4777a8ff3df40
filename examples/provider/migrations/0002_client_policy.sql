-- Who may get which token: clients configured as resource servers may introspect any token, and
-- a client may be restricted to some of the known resources (RFC 8707).
ALTER TABLE clients ADD COLUMN resource_server INTEGER NOT NULL DEFAULT 0 CHECK (resource_server IN (0, 1));
ALTER TABLE clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]'; -- JSON array of strings; empty = every known resource

-- Clients registered before this policy may hold client_credentials without an initial access
-- token: take the grant away from every stored client (fail closed). Configured clients get it
-- back when they are seeded again at startup.
UPDATE clients
SET grant_types = (
    SELECT json_group_array(value) FROM json_each(clients.grant_types)
    WHERE value != 'client_credentials'
)
WHERE EXISTS (
    SELECT 1 FROM json_each(clients.grant_types) WHERE value = 'client_credentials'
);
