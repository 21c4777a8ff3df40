//! PostgreSQL backend (sqlx): several server instances behind a load balancer share one database.
//!
//! The statements are SQLite's, from `storage/sql.rs`. Every guarantee of the
//! [`Storage`](super::Storage) trait holds across instances, by these means:
//!
//! - **Single-statement compare-and-set** (`UPDATE … WHERE consumed = false`,
//!   `DELETE … RETURNING`, `UPDATE … WHERE stage = 'login'`). Under PostgreSQL's default
//!   `READ COMMITTED`, an `UPDATE` or `DELETE` that meets a row locked by a concurrent
//!   transaction waits for it and then re-evaluates its `WHERE` clause on the committed row, so
//!   of any number of concurrent callers exactly one sees `rows_affected = 1`.
//! - **One lock per grant family.** Every transaction that changes the tokens of a family
//!   (refresh rotation, the retry within the grace, family revocation) first takes a
//!   transaction-scoped advisory lock on the family, then locks the presented token's row
//!   (`SELECT … FOR UPDATE`). Rotations of one grant therefore run one at a time across all
//!   instances, as they do under SQLite's single writer; different grants never wait for each
//!   other, and one lock order means no deadlock between them.
//! - **Caps checked and filled under a lock.** Counting live rows and then inserting is a race
//!   between instances (both count 9 of 10, both insert). The capped inserts (anonymous client
//!   registration, pending authorizations) take a transaction-scoped advisory lock for their
//!   cap first, so the count and the insert are one step for the whole cluster.
//! - **One cleaner at a time.** [`purge_expired`](super::Storage::purge_expired) runs only if
//!   `pg_try_advisory_xact_lock` succeeds; an instance that finds another one purging skips
//!   the round.
//! - **Migrations** live in `migrations/postgres/` and are applied at start by sqlx's migrator,
//!   which holds a session advisory lock over the database while it works: instances started
//!   together queue, the first applies, the others find the schema current.
//!
//! Connections: a pool of [`PostgresSettings::max_connections`] per instance, an acquire
//! timeout, and a server-side `statement_timeout` (lock waits included) and
//! `idle_in_transaction_session_timeout`, so a stuck query or a stalled instance cannot hold
//! locks the others wait for. The URL's password never reaches a log: errors do not repeat the
//! URL and [`crate::config::DatabaseUrl`] redacts it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::sql::{Dialect, Lock, sql_storage};
use super::{StorageError, StorageResult};
use crate::config::PostgresSettings;

/// The first key of the provider's two-key advisory locks (ASCII "OA"); the second key says
/// which lock. Two-key locks never collide with one-key (`bigint`) locks such as the migrator's.
pub const LOCK_CLASS: i32 = 0x4f41;
/// Second key: the cleanup task (one instance purges at a time).
pub const CLEANUP_LOCK: i32 = 1;
/// Second key: the cap on unused anonymous clients.
pub const UNUSED_CLIENTS_LOCK: i32 = 2;
/// Second key: the caps on pending authorizations.
pub const PENDING_LOCK: i32 = 3;
/// Second key: signing-key rotation (two rotations at once would both retire the same key).
pub const SIGNING_KEYS_LOCK: i32 = 4;
/// Second key: the cap on SSF streams per client.
pub const STREAMS_LOCK: i32 = 5;
/// The first key of a grant family's lock; the second is `hashtext(family_id)` (a collision
/// only makes two families wait for each other).
pub const FAMILY_LOCK_CLASS: i32 = 0x4f46;
/// The first key of a stream's outbox lock; the second is `hashtext(stream_id)`.
pub const STREAM_OUTBOX_LOCK_CLASS: i32 = 0x4f53;

/// Durable storage in a PostgreSQL database shared by any number of instances.
pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    /// Connects with the given settings and applies pending migrations (safe when several
    /// instances start at once).
    pub async fn open(settings: &PostgresSettings) -> StorageResult<Self> {
        let url = settings.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StorageError::InvalidDatabaseUrl);
        }
        // Parse errors may quote the URL: replace them with one that does not.
        let timeout = millis(settings.statement_timeout);
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StorageError::InvalidDatabaseUrl)?
            .application_name("oauth-provider")
            .options([
                ("statement_timeout", timeout.as_str()),
                ("idle_in_transaction_session_timeout", timeout.as_str()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        if let Err(e) = sqlx::migrate!("./migrations/postgres").run(&pool).await {
            pool.close().await;
            return Err(e.into());
        }
        Ok(Self { pool })
    }

    /// The underlying pool (for diagnostics and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A duration as PostgreSQL's millisecond setting value (at least 1 ms; 0 would disable it).
fn millis(d: Duration) -> String {
    d.as_millis().clamp(1, i32::MAX as u128).to_string()
}

impl Dialect for PostgresStorage {
    type Db = Postgres;
    /// After the family lock: the presented token's row.
    const LOCK_TOKEN_ROW: Option<&'static str> =
        Some("SELECT 1 FROM tokens WHERE token_hash = $1 FOR UPDATE");
    /// The rows are selected `FOR UPDATE SKIP LOCKED`: a concurrent claimer (another instance)
    /// skips the rows this statement holds instead of waiting and claiming them again; once it
    /// commits, their lease keeps everyone else off until the push is done.
    const CLAIM_OUTBOX: &'static str = "UPDATE ssf_outbox \
         SET lease_until = $2, attempts = attempts + 1 WHERE id IN \
         (SELECT o.id FROM ssf_outbox o JOIN ssf_streams s ON s.stream_id = o.stream_id \
          WHERE o.state = 'pending' AND o.next_attempt_at <= $1 AND o.lease_until <= $1 \
          AND s.status = 'enabled' AND s.delivery_method = 'push' ORDER BY o.id LIMIT $3 \
          FOR UPDATE OF o SKIP LOCKED) \
         RETURNING *";

    async fn begin_write(&self) -> StorageResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// A transaction-scoped advisory lock (released at commit or rollback); the cleanup's is
    /// only tried.
    async fn lock(tx: &mut Transaction<'static, Postgres>, lock: Lock<'_>) -> StorageResult<bool> {
        let which = match lock {
            Lock::Family(key) | Lock::StreamOutbox(key) => {
                let class = match lock {
                    Lock::Family(_) => FAMILY_LOCK_CLASS,
                    _ => STREAM_OUTBOX_LOCK_CLASS,
                };
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(class)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
                return Ok(true);
            }
            Lock::Cleanup => {
                let mine = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
                    .bind(LOCK_CLASS)
                    .bind(CLEANUP_LOCK)
                    .fetch_one(&mut **tx)
                    .await?;
                return Ok(mine);
            }
            Lock::UnusedClients => UNUSED_CLIENTS_LOCK,
            Lock::Pending => PENDING_LOCK,
            Lock::SigningKeys => SIGNING_KEYS_LOCK,
            Lock::Streams => STREAMS_LOCK,
        };
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(which)
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }
}

sql_storage!(PostgresStorage);
