//! Persistence behind one async trait, with an in-memory, a SQLite and a PostgreSQL backend.
//!
//! Design rules every backend follows (and the shared test suite checks):
//! - reads never return expired rows (`expires_at > now`), whether or not cleanup ran;
//! - tokens whose family was revoked are never returned;
//! - "consume" operations (authorization codes, refresh-token rotation, interaction records) are
//!   single atomic compare-and-set steps, so exactly one of any number of concurrent callers wins;
//! - a refresh rotation consumes the old token and stores its successors in one transaction:
//!   a crash leaves either the old token usable or the new pair stored, never neither;
//! - capped inserts (anonymous clients, pending authorizations) check the cap and insert in one
//!   atomic step, so concurrent callers (and processes) cannot overshoot it;
//! - only hashes of secrets are stored (the one exception, the private signing keys, cannot be
//!   hashed; [`Storage::verification_keys`] never reads them);
//! - at most one signing key is current; of processes racing to create the first one, one
//!   stores its key and every other one receives that key;
//! - on a shared database (PostgreSQL, or SQLite used by several processes) all of the above
//!   hold across processes, not only across tasks.
//!
//! Time is passed in explicitly (`now`) so tests can drive expiry without sleeping.

mod memory;
pub mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

use async_trait::async_trait;

use crate::model::{
    Announcement, AuthorizationCode, Client, Fanout, InteractionStage, OutboxEntry,
    PendingAuthorization, SigningKey, StorageStats, Stream, StreamStatus, TokenRecord, UnixTime,
    UserChange, UserOverride, VerificationKey,
};

/// How long delivered and failed outbox rows are kept before the cleanup purges them: one day
/// (in milliseconds, the outbox's unit).
pub const OUTBOX_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// How long a caller is told to wait (`Retry-After`) when the database is unavailable
/// ([`StorageError::Unavailable`]): 5 seconds.
pub const UNAVAILABLE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// A storage failure, never treated as success. [`StorageError::Unavailable`] is the database
/// being out of reach or overloaded for now (callers answer `503 temporarily_unavailable` with
/// `Retry-After: 5`, [`UNAVAILABLE_RETRY_AFTER`]); every other variant is a failure (callers
/// answer `500 server_error`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database is unavailable for now; the same request may succeed later. See
    /// [`is_unavailable`] for what counts.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The database (SQLite or PostgreSQL) failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Applying schema migrations failed.
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (corrupt or foreign data).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Opening the database failed before sqlx was involved (e.g. creating its directory).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The database URL is not a PostgreSQL URL (the URL itself is not repeated: it may hold
    /// a password).
    #[error("invalid database URL (expected postgres://user:password@host:port/database)")]
    InvalidDatabaseUrl,
}

impl From<sqlx::Error> for StorageError {
    /// Sorts a driver error into [`StorageError::Unavailable`] or [`StorageError::Database`]
    /// with [`is_unavailable`].
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

impl StorageError {
    /// True when the database is unavailable for now (answer 503 and `Retry-After`), false
    /// for a failure (answer 500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Whether a driver error means "unavailable for now" rather than "failed":
///
/// - no connection to be had: the pool's acquire timeout passed (`PoolTimedOut`: every
///   connection busy, or none could be opened), the pool is closed (`PoolClosed`), the
///   connection broke or could not be opened (`Io`, `Tls`), the driver's worker is gone
///   (`WorkerCrashed`);
/// - PostgreSQL refused or cancelled the statement for reasons of its own, not of the
///   statement: SQLSTATE `57014` (cancelled, e.g. by `statement_timeout`), `57P01`–`57P03`
///   (administrator shutdown, crash shutdown, cannot connect now) and class `08` (connection
///   exception);
/// - SQLite's database is busy or locked (`SQLITE_BUSY`, `SQLITE_LOCKED` and their extended
///   codes), after the busy timeout.
///
/// Everything else (constraint violations, decoding errors, corrupt data, bad SQL) is a failure.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(sqlite_code_unavailable)
            } else if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                db.code().is_some_and(|code| sqlstate_unavailable(&code))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of "unavailable for now" (see [`is_unavailable`]).
fn sqlstate_unavailable(code: &str) -> bool {
    matches!(code, "57014" | "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

/// SQLite (extended) result codes of "busy or locked": primary code 5 (`SQLITE_BUSY`) or 6
/// (`SQLITE_LOCKED`).
fn sqlite_code_unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
}

/// Whether a capped insert was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Stored.
    Stored,
    /// Refused: the caller's address already holds its share.
    AddressFull,
    /// Refused: the server-wide cap is reached.
    TotalFull,
}

/// Caps on live pending authorizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCaps {
    /// Live records one client address may hold.
    pub per_address: u64,
    /// Live records in total.
    pub total: u64,
}

/// What presenting a refresh token for rotation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was unused: it is now consumed and the successors are stored.
    Rotated,
    /// The token had been rotated within the retry grace and its successor was never used: the
    /// unused successors were deleted and the new ones stored in their place (a client retrying
    /// after a lost response).
    Replaced,
    /// Nothing changed: unknown, expired, revoked, not a refresh token, or reused outside the
    /// grace. The caller treats a known token of a live family as stolen.
    Refused,
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// The authorization server's state. Implementations must be safe to share between tasks
/// (and, for SQLite and PostgreSQL, between processes using the same database).
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Inserts or replaces a client (configured and demo clients: no cap, no expiry).
    async fn put_client(&self, client: &Client) -> StorageResult<()>;
    /// Stores an anonymously registered client that is deleted by [`purge_expired`] once
    /// `unused_until` passes, unless [`mark_client_used`] was called first. Refused with
    /// [`Admission::TotalFull`] when `max_unused` live unused clients exist already.
    ///
    /// [`purge_expired`]: Storage::purge_expired
    /// [`mark_client_used`]: Storage::mark_client_used
    async fn register_client(
        &self,
        client: &Client,
        unused_until: UnixTime,
        max_unused: u64,
        now: UnixTime,
    ) -> StorageResult<Admission>;
    /// Records that a client was used (a user approved one of its requests), so it no longer
    /// expires. Idempotent.
    async fn mark_client_used(&self, client_id: &str) -> StorageResult<()>;
    /// Looks a client up by id.
    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>>;

    /// Stores a new pending interactive authorization started from `address`, unless that
    /// address or the server already holds as many live ones as `caps` allow.
    async fn put_pending(
        &self,
        pending: &PendingAuthorization,
        address: &str,
        caps: PendingCaps,
        now: UnixTime,
    ) -> StorageResult<Admission>;
    /// Reads a pending authorization that has not expired.
    async fn get_pending(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>>;
    /// Moves a pending authorization from `Login` to `Consent`, recording the user, the granted
    /// scope and a fresh CSRF hash. Atomic: returns `false` (and changes nothing) unless the record
    /// exists, has not expired and is still at the `Login` stage.
    async fn complete_login(
        &self,
        id_hash: &str,
        subject: &str,
        granted_scope: &str,
        new_csrf_hash: &str,
        now: UnixTime,
    ) -> StorageResult<bool>;
    /// Deletes and returns a pending authorization at the given stage (single use). Of concurrent
    /// callers at most one receives `Some`.
    async fn take_pending(
        &self,
        id_hash: &str,
        stage: InteractionStage,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>>;

    /// Stores a new authorization code.
    async fn put_code(&self, code: &AuthorizationCode) -> StorageResult<()>;
    /// Reads an unexpired code, consumed or not (a consumed code signals a replay).
    async fn get_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<AuthorizationCode>>;
    /// Marks an unexpired, unconsumed code consumed. Returns `true` only for the one caller that
    /// flipped the flag.
    async fn consume_code(&self, code_hash: &str, now: UnixTime) -> StorageResult<bool>;

    /// Stores tokens atomically (an access/refresh pair becomes visible together or not at all).
    async fn put_tokens(&self, tokens: &[TokenRecord]) -> StorageResult<()>;
    /// Reads an unexpired token of a non-revoked family (rotated refresh tokens included, with
    /// `consumed = true`, so that reuse can be detected).
    async fn get_token(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<TokenRecord>>;
    /// Rotates a refresh token in one transaction: marks the unexpired, unconsumed refresh token
    /// of a non-revoked family consumed and stores `successors` as its children
    /// ([`Rotation::Rotated`]; of concurrent callers exactly one gets it). A token already
    /// rotated after `retry_since` none of whose children was rotated in turn has its children
    /// replaced ([`Rotation::Replaced`]): their access token is deleted, their refresh token
    /// marked consumed (so presenting it later is reuse), and `successors` stored. Anything
    /// else changes nothing ([`Rotation::Refused`]).
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        now: UnixTime,
        retry_since: UnixTime,
        successors: &[TokenRecord],
    ) -> StorageResult<Rotation>;

    /// Stores `candidate` as the current signing key unless one is current already, and returns
    /// the current key. Atomic: of any number of concurrent callers (processes included) exactly
    /// one stores its candidate, and all of them receive that key.
    async fn ensure_signing_key(&self, candidate: &SigningKey) -> StorageResult<SigningKey>;
    /// The current signing key (the one not retired), if any.
    async fn current_signing_key(&self) -> StorageResult<Option<SigningKey>>;
    /// Makes `new` the current signing key and retires the previous one at `retire_at`, in one
    /// step; returns the retired key's `kid` (`None` when no key was current).
    async fn rotate_signing_key(
        &self,
        new: &SigningKey,
        retire_at: UnixTime,
    ) -> StorageResult<Option<String>>;
    /// The public keys to publish at `now`: the current key and the retired ones whose
    /// `retire_at` is still ahead, oldest first. Never reads private keys.
    async fn verification_keys(&self, now: UnixTime) -> StorageResult<Vec<VerificationKey>>;

    /// Revokes a grant family: deletes its tokens and remembers the family as revoked until
    /// `remember_until`, so a token of that family stored concurrently is never returned either.
    /// In the same transaction, writes `announce` to the SSF outbox (with its
    /// `token_revoked_by`, one `token-revoked` event per access token of the family unexpired at
    /// `announce.now`, read before they are deleted); [`Announcement::NOTHING`] writes nothing.
    async fn revoke_family(
        &self,
        family_id: &str,
        remember_until: UnixTime,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout>;

    /// The runtime state of a user, if any was recorded.
    async fn get_user_override(&self, username: &str) -> StorageResult<Option<UserOverride>>;
    /// Applies `change` to a user's runtime state and, in the same transaction, writes
    /// `announce` to the outbox; a new password or a disabling also revokes every grant of the
    /// user (families of their tokens and codes are remembered until `remember_until`; their
    /// tokens, codes and pending sign-ins are deleted).
    async fn change_user(
        &self,
        username: &str,
        change: &UserChange,
        remember_until: UnixTime,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout>;

    /// Stores a new stream unless its client already has `max_per_client` streams (then
    /// `false`, nothing stored); the count and the insert are one atomic step.
    async fn create_stream(&self, stream: &Stream, max_per_client: u64) -> StorageResult<bool>;
    /// Reads a stream.
    async fn get_stream(&self, stream_id: &str) -> StorageResult<Option<Stream>>;
    /// The streams of a client, oldest first.
    async fn list_streams(&self, client_id: &str) -> StorageResult<Vec<Stream>>;
    /// Replaces the delivery, requested and delivered events, description and status of the
    /// stream `stream.stream_id` owned by `stream.client_id`; `false` when there is none. A
    /// stream disabled here loses its pending events.
    async fn update_stream(&self, stream: &Stream) -> StorageResult<bool>;
    /// Deletes a client's stream and its queued events; `false` when there is none.
    async fn delete_stream(&self, stream_id: &str, client_id: &str) -> StorageResult<bool>;
    /// Sets a client's stream's status (disabling drops its pending events); `false` when
    /// there is none.
    async fn set_stream_status(
        &self,
        stream_id: &str,
        client_id: &str,
        status: StreamStatus,
    ) -> StorageResult<bool>;
    /// Writes `announce`'s events for one stream only (verification), whatever its
    /// `events_delivered`, unless it is disabled.
    async fn announce_to_stream(
        &self,
        stream_id: &str,
        announce: &Announcement<'_>,
    ) -> StorageResult<Fanout>;

    /// Claims up to `limit` pending rows of enabled push streams that are due at `now_ms` and
    /// not leased, leasing them until `lease_until_ms` and counting an attempt. Of deliverers
    /// claiming at once (processes included) each row goes to one.
    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StorageResult<Vec<OutboxEntry>>;
    /// Marks a row delivered (`error: None`) or failed for good (`Some(reason)`).
    async fn finish_outbox(&self, id: i64, now_ms: i64, error: Option<&str>) -> StorageResult<()>;
    /// Releases a claimed row for another attempt at `next_attempt_ms`, recording why.
    async fn retry_outbox(&self, id: i64, next_attempt_ms: i64, error: &str) -> StorageResult<()>;
    /// Up to `limit` pending rows of a stream, oldest first (poll delivery).
    async fn pending_outbox(&self, stream_id: &str, limit: u32) -> StorageResult<Vec<OutboxEntry>>;
    /// Marks the stream's pending rows with these `jti`s delivered (`error: None`) or failed;
    /// returns how many changed.
    async fn acknowledge_outbox(
        &self,
        stream_id: &str,
        jtis: &[&str],
        now_ms: i64,
        error: Option<&str>,
    ) -> StorageResult<u64>;
    /// Pending rows of a stream.
    async fn count_pending_outbox(&self, stream_id: &str) -> StorageResult<u64>;

    /// Deletes every row that expired at or before `now` (signing keys retired by then
    /// included; outbox rows delivered or failed more than [`OUTBOX_RETENTION_MS`] before
    /// `now`, and rows of deleted streams), including anonymous clients never
    /// used before their deadline. Returns the number of rows deleted. On PostgreSQL, a call
    /// while another instance is purging the same database does nothing and returns 0 (one
    /// instance cleans at a time; reads ignore expired rows anyway).
    async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64>;
    /// Counts rows, expired ones included.
    async fn stats(&self) -> StorageResult<StorageStats>;
    /// Releases resources (closes the database pool). Further calls fail.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_everything_else_failed() {
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
            sqlx::Error::Tls("handshake".into()),
        ] {
            assert!(StorageError::from(err).is_unavailable());
        }
        for err in [
            sqlx::Error::RowNotFound,
            sqlx::Error::Protocol("garbage".into()),
            sqlx::Error::ColumnNotFound("x".into()),
            sqlx::Error::Decode("bad".into()),
        ] {
            assert!(!StorageError::from(err).is_unavailable());
        }
        assert!(!StorageError::Corrupt("x".into()).is_unavailable());
        assert!(!StorageError::InvalidDatabaseUrl.is_unavailable());
    }

    #[test]
    fn postgres_cancellations_and_shutdowns_are_unavailable() {
        for code in [
            "57014", "57P01", "57P02", "57P03", "08006", "08001", "08003",
        ] {
            assert!(sqlstate_unavailable(code), "{code}");
        }
        // Unique violation, serialization failure, syntax error, disk full: failures.
        for code in ["23505", "40001", "42601", "53100", "57000", "XX000"] {
            assert!(!sqlstate_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_and_locked_are_unavailable() {
        // SQLITE_BUSY, _RECOVERY, _SNAPSHOT, _TIMEOUT; SQLITE_LOCKED, _SHAREDCACHE.
        for code in [5, 261, 517, 773, 6, 262] {
            assert!(sqlite_code_unavailable(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CONSTRAINT_UNIQUE, SQLITE_IOERR.
        for code in [1, 11, 13, 2067, 10] {
            assert!(!sqlite_code_unavailable(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_real_sqlite_busy_database_is_unavailable() {
        use sqlx::Connection;
        use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let mut other = SqliteConnection::connect_with(&options).await.unwrap();
        let err = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("the write lock is held");
        let err = StorageError::from(err);
        assert!(err.is_unavailable(), "{err}");
    }
}
