//! Decoding stored rows into model records and encoding list columns, shared by the SQL backends
//! (SQLite and PostgreSQL store the same columns; only the column types differ, which sqlx
//! handles per driver).

use sqlx::Row;

use super::{StorageError, StorageResult};
use crate::model::{
    AuthMethod, AuthorizationCode, Client, Delivery, InteractionStage, OutboxEntry,
    PendingAuthorization, PrivateKey, SigningKey, StorageStats, Stream, StreamStatus, TokenKind,
    TokenRecord, UserOverride, VerificationKey,
};

/// The column reads the decoders need, for any driver's row type.
pub(super) trait Columns {
    fn text(&self, name: &str) -> StorageResult<String>;
    fn optional_text(&self, name: &str) -> StorageResult<Option<String>>;
    fn integer(&self, name: &str) -> StorageResult<i64>;
    fn optional_integer(&self, name: &str) -> StorageResult<Option<i64>>;
    fn flag(&self, name: &str) -> StorageResult<bool>;
}

/// Implements [`Columns`] for a driver row type through sqlx's typed `try_get`.
macro_rules! impl_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> StorageResult<String> {
                Ok(self.try_get(name)?)
            }
            fn optional_text(&self, name: &str) -> StorageResult<Option<String>> {
                Ok(self.try_get(name)?)
            }
            fn integer(&self, name: &str) -> StorageResult<i64> {
                Ok(self.try_get(name)?)
            }
            fn optional_integer(&self, name: &str) -> StorageResult<Option<i64>> {
                Ok(self.try_get(name)?)
            }
            fn flag(&self, name: &str) -> StorageResult<bool> {
                Ok(self.try_get(name)?)
            }
        }
    };
}

impl_columns!(sqlx::sqlite::SqliteRow);
impl_columns!(sqlx::postgres::PgRow);

pub(super) fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(what.to_owned())
}

fn json_list(row: &impl Columns, name: &str, what: &str) -> StorageResult<Vec<String>> {
    serde_json::from_str(&row.text(name)?).map_err(|_| corrupt(what))
}

pub(super) fn client(row: &impl Columns) -> StorageResult<Client> {
    Ok(Client {
        client_id: row.text("client_id")?,
        secret_hash: row.optional_text("secret_hash")?,
        client_name: row.optional_text("client_name")?,
        redirect_uris: json_list(row, "redirect_uris", "clients.redirect_uris")?,
        grant_types: json_list(row, "grant_types", "clients.grant_types")?,
        scope: row.text("scope")?,
        auth_method: AuthMethod::parse(&row.text("auth_method")?)
            .ok_or_else(|| corrupt("clients.auth_method"))?,
        issued_at: row.integer("issued_at")?,
        resource_server: row.flag("resource_server")?,
        resources: json_list(row, "resources", "clients.resources")?,
        dpop_bound_access_tokens: row.flag("dpop_bound_access_tokens")?,
    })
}

pub(super) fn pending(row: &impl Columns) -> StorageResult<PendingAuthorization> {
    Ok(PendingAuthorization {
        id_hash: row.text("id_hash")?,
        browser_hash: row.text("browser_hash")?,
        csrf_hash: row.text("csrf_hash")?,
        client_id: row.text("client_id")?,
        redirect_uri: row.text("redirect_uri")?,
        scope: row.text("scope")?,
        state: row.optional_text("state")?,
        code_challenge: row.text("code_challenge")?,
        resource: row.optional_text("resource")?,
        stage: InteractionStage::parse(&row.text("stage")?)
            .ok_or_else(|| corrupt("pending.stage"))?,
        subject: row.optional_text("subject")?,
        granted_scope: row.optional_text("granted_scope")?,
        dpop_jkt: row.optional_text("dpop_jkt")?,
        expires_at: row.integer("expires_at")?,
    })
}

pub(super) fn code(row: &impl Columns) -> StorageResult<AuthorizationCode> {
    Ok(AuthorizationCode {
        code_hash: row.text("code_hash")?,
        client_id: row.text("client_id")?,
        redirect_uri: row.text("redirect_uri")?,
        subject: row.text("subject")?,
        scope: row.text("scope")?,
        resource: row.optional_text("resource")?,
        code_challenge: row.text("code_challenge")?,
        family_id: row.text("family_id")?,
        issued_at: row.integer("issued_at")?,
        expires_at: row.integer("expires_at")?,
        consumed: row.flag("consumed")?,
        dpop_jkt: row.optional_text("dpop_jkt")?,
    })
}

pub(super) fn token(row: &impl Columns) -> StorageResult<TokenRecord> {
    Ok(TokenRecord {
        token_hash: row.text("token_hash")?,
        kind: TokenKind::parse(&row.text("kind")?).ok_or_else(|| corrupt("tokens.kind"))?,
        family_id: row.text("family_id")?,
        client_id: row.text("client_id")?,
        subject: row.optional_text("subject")?,
        scope: row.text("scope")?,
        resource: row.optional_text("resource")?,
        jti: row.text("jti")?,
        issued_at: row.integer("issued_at")?,
        expires_at: row.integer("expires_at")?,
        consumed: row.flag("consumed")?,
        dpop_jkt: row.optional_text("dpop_jkt")?,
    })
}

pub(super) fn verification_key(row: &impl Columns) -> StorageResult<VerificationKey> {
    Ok(VerificationKey {
        kid: row.text("kid")?,
        algorithm: row.text("algorithm")?,
        x: row.text("x")?,
        y: row.text("y")?,
        created_at: row.integer("created_at")?,
        retire_at: row.optional_integer("retire_at")?,
    })
}

pub(super) fn signing_key(row: &impl Columns) -> StorageResult<SigningKey> {
    Ok(SigningKey {
        public: verification_key(row)?,
        private: PrivateKey::new(row.text("private_key")?),
    })
}

pub(super) fn stream(row: &impl Columns) -> StorageResult<Stream> {
    let delivery = match row.text("delivery_method")?.as_str() {
        "push" => Delivery::Push {
            endpoint_url: row
                .optional_text("endpoint_url")?
                .ok_or_else(|| corrupt("ssf_streams.endpoint_url"))?,
            authorization_header: row.optional_text("authorization_header")?,
        },
        "poll" => Delivery::Poll,
        _ => return Err(corrupt("ssf_streams.delivery_method")),
    };
    Ok(Stream {
        stream_id: row.text("stream_id")?,
        client_id: row.text("client_id")?,
        delivery,
        events_requested: json_list(row, "events_requested", "ssf_streams.events_requested")?,
        events_delivered: json_list(row, "events_delivered", "ssf_streams.events_delivered")?,
        description: row.optional_text("description")?,
        status: StreamStatus::parse(&row.text("status")?)
            .ok_or_else(|| corrupt("ssf_streams.status"))?,
        created_at: row.integer("created_at")?,
    })
}

/// The push endpoint and header columns of a stream's delivery.
pub(super) fn delivery_columns(delivery: &Delivery) -> (Option<&str>, Option<&str>) {
    match delivery {
        Delivery::Push {
            endpoint_url,
            authorization_header,
        } => (Some(endpoint_url), authorization_header.as_deref()),
        Delivery::Poll => (None, None),
    }
}

pub(super) fn outbox_entry(row: &impl Columns) -> StorageResult<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.integer("id")?,
        stream_id: row.text("stream_id")?,
        jti: row.text("jti")?,
        event_type: row.text("event_type")?,
        claims: serde_json::from_str(&row.text("claims")?)
            .map_err(|_| corrupt("ssf_outbox.claims"))?,
        attempts: row.integer("attempts")?,
        created_at_ms: row.integer("created_at")?,
    })
}

pub(super) fn user_override(row: &impl Columns) -> StorageResult<UserOverride> {
    Ok(UserOverride {
        username: row.text("username")?,
        password_hash: row.optional_text("password_hash")?,
        disabled: row.flag("disabled")?,
    })
}

/// Counts every table (expired rows included); decoded by [`stats`].
pub(super) const STATS: &str = "SELECT (SELECT count(*) FROM clients) AS clients, \
     (SELECT count(*) FROM unused_clients) AS unused_clients, \
     (SELECT count(*) FROM pending_authorizations) AS pending, \
     (SELECT count(*) FROM authorization_codes) AS codes, \
     (SELECT count(*) FROM tokens) AS tokens, \
     (SELECT count(*) FROM revoked_families) AS revoked_families";

pub(super) fn stats(row: &impl Columns) -> StorageResult<StorageStats> {
    Ok(StorageStats {
        clients: count(row, "clients")?,
        unused_clients: count(row, "unused_clients")?,
        pending: count(row, "pending")?,
        codes: count(row, "codes")?,
        tokens: count(row, "tokens")?,
        revoked_families: count(row, "revoked_families")?,
    })
}

/// A count read back from the database (never negative).
pub(super) fn count(row: &impl Columns, name: &str) -> StorageResult<u64> {
    u64::try_from(row.integer(name)?).map_err(|_| corrupt("count"))
}

/// A cap as an SQL integer (saturating).
pub(super) fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A list column's stored form: a JSON array of strings.
pub(super) fn to_json(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}
