-- DPoP (RFC 9449): the keys tokens are bound to. Every column is new and optional, so a
-- database of the previous version upgrades in place and its tokens stay unbound bearer tokens.

-- RFC 9449 §5.2 client metadata: the client always sends a DPoP proof to the token endpoint.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens INTEGER NOT NULL DEFAULT 0 CHECK (dpop_bound_access_tokens IN (0, 1));
-- RFC 9449 §10: the authorization request's dpop_jkt, carried to the code it yields.
ALTER TABLE pending_authorizations ADD COLUMN dpop_jkt TEXT;
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
-- The RFC 7638 thumbprint a token is bound to: an access token's cnf.jkt, or the key a public
-- client's refresh token must be presented with. NULL: not bound.
ALTER TABLE tokens ADD COLUMN dpop_jkt TEXT;
