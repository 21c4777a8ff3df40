-- OpenID Shared Signals Framework 1.0 transmitter, as in ../0006_ssf.sql: event streams, the
-- durable outbox of security events, and the runtime state of users.

CREATE TABLE ssf_streams (
    stream_id            TEXT PRIMARY KEY,
    client_id            TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    delivery_method      TEXT NOT NULL CHECK (delivery_method IN ('push', 'poll')),
    endpoint_url         TEXT,
    authorization_header TEXT,
    events_requested     TEXT NOT NULL, -- JSON array of strings
    events_delivered     TEXT NOT NULL, -- JSON array of strings
    description          TEXT,
    status               TEXT NOT NULL CHECK (status IN ('enabled', 'paused', 'disabled')),
    created_at           BIGINT NOT NULL
);
CREATE INDEX ssf_streams_client_id ON ssf_streams (client_id);

-- Times in Unix milliseconds. Deliverers of several instances claim rows with
-- SELECT … FOR UPDATE SKIP LOCKED and a lease (lease_until).
CREATE TABLE ssf_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       TEXT NOT NULL,
    jti             TEXT NOT NULL UNIQUE,
    event_type      TEXT NOT NULL,
    claims          TEXT NOT NULL, -- JSON: the SET's iss, iat, sub_id and events
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    done_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX ssf_outbox_due ON ssf_outbox (state, next_attempt_at);
CREATE INDEX ssf_outbox_stream ON ssf_outbox (stream_id, state);

CREATE TABLE user_overrides (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT false,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX tokens_subject ON tokens (subject);
CREATE INDEX authorization_codes_subject ON authorization_codes (subject);
