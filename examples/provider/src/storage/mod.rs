//! Persistence behind one async trait, with an in-memory and a SQLite backend.
//!
//! Design rules every backend follows (and the shared test suite checks):
//! - reads never return expired rows (`expires_at > now`), whether or not cleanup ran;
//! - tokens whose family was revoked are never returned;
//! - "consume" operations (authorization codes, refresh-token rotation, interaction records) are
//!   single atomic compare-and-set steps, so exactly one of any number of concurrent callers wins;
//! - only hashes of secrets are stored.
//!
//! Time is passed in explicitly (`now`) so tests can drive expiry without sleeping.

mod memory;
mod sqlite;

pub use memory::MemoryStorage;
pub use sqlite::SqliteStorage;

use async_trait::async_trait;

use crate::model::{
    AuthorizationCode, Client, InteractionStage, PendingAuthorization, StorageStats, TokenRecord,
    UnixTime,
};

/// A storage failure. Callers answer `server_error` / 500 and never treat it as success.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The SQLite backend failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying schema migrations failed.
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (corrupt or foreign data).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Opening the database failed before sqlx was involved (e.g. creating its directory).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// The authorization server's state. Implementations must be safe to share between tasks
/// (and, for SQLite, between processes using the same file).
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Inserts or replaces a client.
    async fn put_client(&self, client: &Client) -> StorageResult<()>;
    /// Looks a client up by id.
    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>>;

    /// Stores a new pending interactive authorization.
    async fn put_pending(&self, pending: &PendingAuthorization) -> StorageResult<()>;
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
    /// Marks an unexpired, unconsumed refresh token of a non-revoked family as rotated. Returns
    /// `true` only for the one caller that flipped the flag.
    async fn rotate_refresh_token(&self, token_hash: &str, now: UnixTime) -> StorageResult<bool>;
    /// Revokes a grant family: deletes its tokens and remembers the family as revoked until
    /// `remember_until`, so a token of that family stored concurrently is never returned either.
    async fn revoke_family(&self, family_id: &str, remember_until: UnixTime) -> StorageResult<()>;

    /// Deletes every row that expired at or before `now`. Returns the number of rows deleted.
    async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64>;
    /// Counts rows, expired ones included.
    async fn stats(&self) -> StorageResult<StorageStats>;
    /// Releases resources (closes the SQLite pool). Further calls fail.
    async fn close(&self) {}
}
