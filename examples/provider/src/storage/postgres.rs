//! PostgreSQL backend (sqlx): several server instances behind a load balancer share one database.
//!
//! Every guarantee of the [`Storage`] trait holds across instances, by these means:
//!
//! - **Single-statement compare-and-set** (`UPDATE … WHERE NOT consumed`, `DELETE … RETURNING`,
//!   `UPDATE … WHERE stage = 'login'`). Under PostgreSQL's default `READ COMMITTED`, an `UPDATE`
//!   or `DELETE` that meets a row locked by a concurrent transaction waits for it and then
//!   re-evaluates its `WHERE` clause on the committed row, so of any number of concurrent
//!   callers exactly one sees `rows_affected = 1`.
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
//! - **One cleaner at a time.** [`Storage::purge_expired`] runs only if
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

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};

use super::rows::{self, cap, to_json};
use super::{Admission, PendingCaps, Rotation, Storage, StorageError, StorageResult};
use crate::config::PostgresSettings;
use crate::model::{
    AuthorizationCode, Client, InteractionStage, PendingAuthorization, SigningKey, StorageStats,
    TokenRecord, UnixTime, VerificationKey,
};

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
/// The first key of a grant family's lock; the second is `hashtext(family_id)` (a collision
/// only makes two families wait for each other).
pub const FAMILY_LOCK_CLASS: i32 = 0x4f46;

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

type PgTransaction = sqlx::Transaction<'static, Postgres>;

/// Takes one of the provider's transaction-scoped advisory locks (released at commit or
/// rollback).
async fn lock(tx: &mut PgTransaction, which: i32) -> StorageResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(which)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes a grant family's transaction-scoped advisory lock.
async fn lock_family(tx: &mut PgTransaction, family_id: &str) -> StorageResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(FAMILY_LOCK_CLASS)
        .bind(family_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts token rows in one statement, each with the given parent.
async fn insert_tokens<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    tokens: &[TokenRecord],
    parent_hash: Option<&str>,
) -> StorageResult<()> {
    if tokens.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Postgres>::new(
        "INSERT INTO tokens (token_hash, kind, family_id, client_id, subject, scope, resource, \
         jti, issued_at, expires_at, consumed, parent_hash) ",
    );
    query.push_values(tokens, |mut row, t| {
        row.push_bind(t.token_hash.clone())
            .push_bind(t.kind.as_str())
            .push_bind(t.family_id.clone())
            .push_bind(t.client_id.clone())
            .push_bind(t.subject.clone())
            .push_bind(t.scope.clone())
            .push_bind(t.resource.clone())
            .push_bind(t.jti.clone())
            .push_bind(t.issued_at)
            .push_bind(t.expires_at)
            .push_bind(t.consumed)
            .push_bind(parent_hash.map(str::to_owned));
    });
    query.build().execute(executor).await?;
    Ok(())
}

/// Inserts a signing key; a conflict (another current key, or the same `kid`) inserts nothing.
/// Returns whether it was stored.
async fn insert_signing_key<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    key: &SigningKey,
) -> StorageResult<bool> {
    let done = sqlx::query(rows::INSERT_KEY)
        .bind(&key.public.kid)
        .bind(&key.public.algorithm)
        .bind(&key.public.x)
        .bind(&key.public.y)
        .bind(key.private.expose())
        .bind(key.public.created_at)
        .bind(key.public.retire_at)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The client upsert (an upsert keeps the row, so the client's codes and tokens survive).
async fn upsert_client<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    client: &Client,
) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
         scope, auth_method, issued_at, resource_server, resources) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
         client_name = excluded.client_name, redirect_uris = excluded.redirect_uris, \
         grant_types = excluded.grant_types, scope = excluded.scope, \
         auth_method = excluded.auth_method, issued_at = excluded.issued_at, \
         resource_server = excluded.resource_server, resources = excluded.resources",
    )
    .bind(&client.client_id)
    .bind(&client.secret_hash)
    .bind(&client.client_name)
    .bind(to_json(&client.redirect_uris))
    .bind(to_json(&client.grant_types))
    .bind(&client.scope)
    .bind(client.auth_method.as_str())
    .bind(client.issued_at)
    .bind(client.resource_server)
    .bind(to_json(&client.resources))
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn put_client(&self, client: &Client) -> StorageResult<()> {
        upsert_client(&self.pool, client).await
    }

    async fn register_client(
        &self,
        client: &Client,
        unused_until: UnixTime,
        max_unused: u64,
        now: UnixTime,
    ) -> StorageResult<Admission> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, UNUSED_CLIENTS_LOCK).await?;
        let unused: i64 =
            sqlx::query_scalar("SELECT count(*) FROM unused_clients WHERE expires_at > $1")
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        if unused >= cap(max_unused) {
            return Ok(Admission::TotalFull);
        }
        upsert_client(&mut *tx, client).await?;
        sqlx::query("INSERT INTO unused_clients (client_id, expires_at) VALUES ($1, $2)")
            .bind(&client.client_id)
            .bind(unused_until)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Admission::Stored)
    }

    async fn mark_client_used(&self, client_id: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM unused_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>> {
        sqlx::query("SELECT * FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::client)
            .transpose()
    }

    async fn put_pending(
        &self,
        p: &PendingAuthorization,
        address: &str,
        caps: PendingCaps,
        now: UnixTime,
    ) -> StorageResult<Admission> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, PENDING_LOCK).await?;
        let counts = sqlx::query(
            "SELECT count(*) FILTER (WHERE origin = $1) AS mine, count(*) AS total \
             FROM pending_authorizations WHERE expires_at > $2",
        )
        .bind(address)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if rows::count(&counts, "mine")? >= caps.per_address {
            return Ok(Admission::AddressFull);
        }
        if rows::count(&counts, "total")? >= caps.total {
            return Ok(Admission::TotalFull);
        }
        sqlx::query(
            "INSERT INTO pending_authorizations (id_hash, browser_hash, csrf_hash, client_id, \
             redirect_uri, scope, state, code_challenge, resource, stage, subject, granted_scope, \
             expires_at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&p.id_hash)
        .bind(&p.browser_hash)
        .bind(&p.csrf_hash)
        .bind(&p.client_id)
        .bind(&p.redirect_uri)
        .bind(&p.scope)
        .bind(&p.state)
        .bind(&p.code_challenge)
        .bind(&p.resource)
        .bind(p.stage.as_str())
        .bind(&p.subject)
        .bind(&p.granted_scope)
        .bind(p.expires_at)
        .bind(address)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Admission::Stored)
    }

    async fn get_pending(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>> {
        sqlx::query("SELECT * FROM pending_authorizations WHERE id_hash = $1 AND expires_at > $2")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::pending)
            .transpose()
    }

    async fn complete_login(
        &self,
        id_hash: &str,
        subject: &str,
        granted_scope: &str,
        new_csrf_hash: &str,
        now: UnixTime,
    ) -> StorageResult<bool> {
        let done = sqlx::query(
            "UPDATE pending_authorizations SET stage = 'consent', subject = $1, \
             granted_scope = $2, csrf_hash = $3 \
             WHERE id_hash = $4 AND stage = 'login' AND expires_at > $5",
        )
        .bind(subject)
        .bind(granted_scope)
        .bind(new_csrf_hash)
        .bind(id_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_pending(
        &self,
        id_hash: &str,
        stage: InteractionStage,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>> {
        sqlx::query(
            "DELETE FROM pending_authorizations \
             WHERE id_hash = $1 AND stage = $2 AND expires_at > $3 RETURNING *",
        )
        .bind(id_hash)
        .bind(stage.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::pending)
        .transpose()
    }

    async fn put_code(&self, c: &AuthorizationCode) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, subject, scope, \
             resource, code_challenge, family_id, issued_at, expires_at, consumed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.subject)
        .bind(&c.scope)
        .bind(&c.resource)
        .bind(&c.code_challenge)
        .bind(&c.family_id)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(c.consumed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<AuthorizationCode>> {
        sqlx::query("SELECT * FROM authorization_codes WHERE code_hash = $1 AND expires_at > $2")
            .bind(code_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::code)
            .transpose()
    }

    async fn consume_code(&self, code_hash: &str, now: UnixTime) -> StorageResult<bool> {
        // Concurrent updates of the row queue on its lock; each re-checks `NOT consumed` on the
        // committed row, so exactly one flips it.
        let done = sqlx::query(
            "UPDATE authorization_codes SET consumed = true \
             WHERE code_hash = $1 AND NOT consumed AND expires_at > $2",
        )
        .bind(code_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_tokens(&self, tokens: &[TokenRecord]) -> StorageResult<()> {
        // One statement: the rows become visible together or not at all.
        insert_tokens(&self.pool, tokens, None).await
    }

    async fn get_token(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<TokenRecord>> {
        sqlx::query(
            "SELECT * FROM tokens t WHERE t.token_hash = $1 AND t.expires_at > $2 AND NOT EXISTS \
             (SELECT 1 FROM revoked_families f WHERE f.family_id = t.family_id)",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::token)
        .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        now: UnixTime,
        retry_since: UnixTime,
        successors: &[TokenRecord],
    ) -> StorageResult<Rotation> {
        // A token's family never changes, so it can be read before locking.
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        let Some(family) = family else {
            return Ok(Rotation::Refused);
        };
        // One transaction: the old token is consumed if and only if its successors are stored.
        // Dropping `tx` without commit (early return, error, crash) rolls everything back.
        let mut tx = self.pool.begin().await?;
        lock_family(&mut tx, &family).await?;
        sqlx::query("SELECT 1 FROM tokens WHERE token_hash = $1 FOR UPDATE")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        let rotated = sqlx::query(
            "UPDATE tokens SET consumed = true, rotated_at = $1 WHERE token_hash = $2 \
             AND kind = 'refresh' AND NOT consumed AND expires_at > $3 AND NOT EXISTS \
             (SELECT 1 FROM revoked_families f WHERE f.family_id = tokens.family_id)",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let outcome = if rotated {
            Rotation::Rotated
        } else {
            // Every change to this family's tokens holds the family lock, so the children read
            // here cannot be rotated or replaced before this transaction ends.
            let retry = sqlx::query(
                "SELECT 1 FROM tokens o WHERE o.token_hash = $1 AND o.kind = 'refresh' \
                 AND o.consumed AND o.rotated_at > $2 AND o.expires_at > $3 \
                 AND NOT EXISTS (SELECT 1 FROM revoked_families f \
                                 WHERE f.family_id = o.family_id) \
                 AND NOT EXISTS (SELECT 1 FROM tokens c WHERE c.parent_hash = o.token_hash \
                                 AND c.rotated_at IS NOT NULL)",
            )
            .bind(token_hash)
            .bind(retry_since)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !retry {
                return Ok(Rotation::Refused);
            }
            // The unused successors die: the access token is deleted; the refresh token is kept
            // as consumed, so that presenting it later counts as reuse and revokes the family.
            sqlx::query("DELETE FROM tokens WHERE parent_hash = $1 AND kind = 'access'")
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tokens SET consumed = true WHERE parent_hash = $1 AND kind = 'refresh'",
            )
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
            Rotation::Replaced
        };
        insert_tokens(&mut *tx, successors, Some(token_hash)).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_family(&self, family_id: &str, remember_until: UnixTime) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_family(&mut tx, family_id).await?;
        sqlx::query(
            "INSERT INTO revoked_families (family_id, expires_at) VALUES ($1, $2) \
             ON CONFLICT (family_id) DO UPDATE SET \
             expires_at = GREATEST(revoked_families.expires_at, excluded.expires_at)",
        )
        .bind(family_id)
        .bind(remember_until)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tokens WHERE family_id = $1")
            .bind(family_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_signing_key(&self, candidate: &SigningKey) -> StorageResult<SigningKey> {
        // A concurrent insert of another current key makes this one wait for it on the unique
        // index and then insert nothing; the next statement's snapshot sees the winner's key.
        insert_signing_key(&self.pool, candidate).await?;
        self.current_signing_key()
            .await?
            .ok_or_else(|| rows::corrupt("signing_keys: no current key after insert"))
    }

    async fn current_signing_key(&self) -> StorageResult<Option<SigningKey>> {
        sqlx::query(rows::CURRENT_KEY)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::signing_key)
            .transpose()
    }

    async fn rotate_signing_key(
        &self,
        new: &SigningKey,
        retire_at: UnixTime,
    ) -> StorageResult<Option<String>> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, SIGNING_KEYS_LOCK).await?;
        let retired: Option<String> = sqlx::query_scalar(rows::RETIRE_CURRENT_KEY)
            .bind(retire_at)
            .fetch_optional(&mut *tx)
            .await?;
        if !insert_signing_key(&mut *tx, new).await? {
            return Err(rows::corrupt("signing_keys: the new key was not stored"));
        }
        tx.commit().await?;
        Ok(retired)
    }

    async fn verification_keys(&self, now: UnixTime) -> StorageResult<Vec<VerificationKey>> {
        sqlx::query(rows::PUBLISHED_KEYS)
            .bind(now)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::verification_key)
            .collect()
    }

    async fn purge_expired(&self, now: UnixTime) -> StorageResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(CLEANUP_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            tracing::debug!("another instance is purging expired rows; skipping this round");
            return Ok(0);
        }
        let mut deleted = 0;
        for sql in [
            // Anonymous clients never used in time, with their pending authorizations (counted
            // here; the remaining rows that refer to them cascade).
            "DELETE FROM pending_authorizations WHERE client_id IN \
             (SELECT client_id FROM unused_clients WHERE expires_at <= $1)",
            "DELETE FROM clients WHERE client_id IN \
             (SELECT client_id FROM unused_clients WHERE expires_at <= $1)",
            "DELETE FROM pending_authorizations WHERE expires_at <= $1",
            "DELETE FROM authorization_codes WHERE expires_at <= $1",
            "DELETE FROM tokens WHERE expires_at <= $1",
            "DELETE FROM revoked_families WHERE expires_at <= $1",
            "DELETE FROM signing_keys WHERE retire_at <= $1",
        ] {
            deleted += sqlx::query(sql)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let row = sqlx::query(rows::STATS).fetch_one(&self.pool).await?;
        rows::stats(&row)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
