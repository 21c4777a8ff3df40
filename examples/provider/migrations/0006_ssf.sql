-- OpenID Shared Signals Framework 1.0 transmitter: event streams, the durable outbox of security
-- events, and the runtime state of users (applied over the users file).

-- One stream per receiver registration. authorization_header is what the receiver asked to be
-- sent with every push: it must be sent back, so it cannot be hashed (like the signing keys).
CREATE TABLE ssf_streams (
    stream_id            TEXT PRIMARY KEY NOT NULL,
    client_id            TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    delivery_method      TEXT NOT NULL CHECK (delivery_method IN ('push', 'poll')),
    endpoint_url         TEXT,
    authorization_header TEXT,
    events_requested     TEXT NOT NULL, -- JSON array of strings
    events_delivered     TEXT NOT NULL, -- JSON array of strings
    description          TEXT,
    status               TEXT NOT NULL CHECK (status IN ('enabled', 'paused', 'disabled')),
    created_at           INTEGER NOT NULL
) STRICT;
CREATE INDEX ssf_streams_client_id ON ssf_streams (client_id);

-- One row per (event, stream), written in the transaction of the change that caused the event.
-- Times of this table are Unix milliseconds. A row is 'pending' until delivered (push: 202 from
-- the receiver; poll: acknowledged) or failed (refused with 400, acknowledged with an error, or
-- too old); lease_until keeps other deliverers off a row being pushed.
CREATE TABLE ssf_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT NOT NULL,
    jti             TEXT NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    claims          TEXT NOT NULL, -- JSON: the SET's iss, iat, sub_id and events
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    done_at         INTEGER,
    last_error      TEXT
) STRICT;
CREATE INDEX ssf_outbox_due ON ssf_outbox (state, next_attempt_at);
CREATE INDEX ssf_outbox_stream ON ssf_outbox (stream_id, state);

-- Runtime changes of users of the users file: a new password hash, or disabled.
CREATE TABLE user_overrides (
    username       TEXT PRIMARY KEY NOT NULL,
    password_hash  TEXT,
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    updated_at     INTEGER NOT NULL
) STRICT;

-- Revoking every grant of a user reads the user's tokens and codes.
CREATE INDEX tokens_subject ON tokens (subject);
CREATE INDEX authorization_codes_subject ON authorization_codes (subject);
