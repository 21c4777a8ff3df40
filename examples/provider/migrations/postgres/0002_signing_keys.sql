-- The keys that sign JWT access tokens (RFC 9068), as in ../0004_signing_keys.sql. Unlike every
-- other secret here, a private key cannot be stored as a hash: it is kept as PKCS#8 PEM, so
-- access to this database must be restricted like access to the key itself. All instances on
-- this database share these keys.

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY, -- RFC 7638 thumbprint of the public key
    algorithm       TEXT NOT NULL,
    x               TEXT NOT NULL,    -- public key, base64url
    y               TEXT NOT NULL,
    private_key     TEXT NOT NULL,    -- PKCS#8 PEM
    created_at      BIGINT NOT NULL,
    -- NULL for the one key that signs new tokens; set by a rotation to when the last token it
    -- signed expires. Published until then, purged after.
    retire_at       BIGINT
);
-- At most one current key, whatever the number of instances starting at once: the loser of a
-- first-start race inserts nothing and reads the winner's key.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retire_at IS NULL)) WHERE retire_at IS NULL;
CREATE INDEX signing_keys_retire_at ON signing_keys (retire_at);
