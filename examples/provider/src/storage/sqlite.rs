//! SQLite backend (sqlx): survives restarts and can be shared by several server processes.
//!
//! Connection settings: WAL journal (readers never block the writer), `synchronous = NORMAL`
//! (durable across application crashes; a power loss may drop the last transactions, which for
//! short-lived credentials is the usual trade-off), `busy_timeout` so concurrent writers from
//! other connections or processes wait instead of failing, and foreign keys on. The schema is
//! created and upgraded by the versioned migrations in `migrations/` (sqlx keeps the applied
//! versions in `_sqlx_migrations`).
//!
//! Every compare-and-set is one SQL statement (`UPDATE … WHERE consumed = 0`, `DELETE …
//! RETURNING`, `INSERT … SELECT … WHERE count < cap`), whose `rows_affected` tells the single
//! winner. The few transactions that read before they write (refresh rotation, capped client
//! registration) start with `BEGIN IMMEDIATE`, taking the write lock first, so SQLite's busy
//! handler applies and no `SQLITE_BUSY_SNAPSHOT` can occur.
//!
//! Files: a directory the server creates is `0700`; the database is created `0600` before SQLite
//! opens it, and SQLite gives its `-wal` and `-shm` files the database file's mode; an existing
//! file others may read is made `0600` (it holds the private signing keys). Processes
//! started at the same moment on a new file race to apply the migrations; each migration is one
//! transaction that fails as a whole for the loser, which retries and finds it applied.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::rows::{self, cap, to_json};
use super::{Admission, PendingCaps, Rotation, Storage, StorageResult};
use crate::model::{
    AuthorizationCode, Client, InteractionStage, PendingAuthorization, SigningKey, StorageStats,
    TokenRecord, UnixTime, VerificationKey,
};

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pool size for file databases. SQLite serialises writers anyway; a few connections let reads
/// proceed in parallel under WAL.
const FILE_POOL_SIZE: u32 = 4;
/// Attempts to open a file database (connect and migrate) before giving up.
const OPEN_ATTEMPTS: u32 = 10;
/// Pause after the n-th failed attempt: n times this.
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Durable storage in a SQLite database file.
pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating it and its parent directory if needed) the database at `path` and applies
    /// pending migrations. The special path `:memory:` gives a private in-memory database.
    pub async fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref();
        if path.as_os_str() == ":memory:" {
            return Self::in_memory().await;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::create_private_dir(parent)?;
        }
        files::create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Processes started together on a new file race to create the schema. Every migration
        // runs in a transaction and none is idempotent, so the loser's attempt fails and rolls
        // back without effect; on retry it finds the migrations applied.
        let mut attempt = 1;
        loop {
            match Self::connect(options.clone()).await {
                Ok(storage) => return Ok(storage),
                Err(e) if attempt < OPEN_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "opening the database failed; retrying");
                    tokio::time::sleep(OPEN_RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(options: SqliteConnectOptions) -> StorageResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            .connect_with(options)
            .await?;
        match Self::with_pool(pool.clone()).await {
            Ok(storage) => Ok(storage),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    /// A private in-memory database (one connection, since every SQLite in-memory connection
    /// would otherwise see its own empty database).
    pub async fn in_memory() -> StorageResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> StorageResult<Self> {
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The underlying pool (for diagnostics and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

const INSERT_ONE_TOKEN: &str = "INSERT INTO tokens (token_hash, kind, family_id, client_id, \
     subject, scope, resource, jti, issued_at, expires_at, consumed, parent_hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_TWO_TOKENS: &str = "INSERT INTO tokens (token_hash, kind, family_id, client_id, \
     subject, scope, resource, jti, issued_at, expires_at, consumed, parent_hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds the twelve columns of a token row, in `INSERT_ONE_TOKEN` order.
fn bind_token<'q>(
    query: SqliteQuery<'q>,
    t: &'q TokenRecord,
    parent_hash: Option<&'q str>,
) -> SqliteQuery<'q> {
    query
        .bind(&t.token_hash)
        .bind(t.kind.as_str())
        .bind(&t.family_id)
        .bind(&t.client_id)
        .bind(&t.subject)
        .bind(&t.scope)
        .bind(&t.resource)
        .bind(&t.jti)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .bind(t.consumed)
        .bind(parent_hash)
}

/// Inserts a signing key; a conflict (another current key, or the same `kid`) inserts nothing.
fn insert_signing_key(key: &SigningKey) -> SqliteQuery<'_> {
    sqlx::query(rows::INSERT_KEY)
        .bind(&key.public.kid)
        .bind(&key.public.algorithm)
        .bind(&key.public.x)
        .bind(&key.public.y)
        .bind(key.private.expose())
        .bind(key.public.created_at)
        .bind(key.public.retire_at)
}

/// The client upsert, bound (an upsert, not `INSERT OR REPLACE`: a replace deletes the row
/// first, which would cascade to the client's codes and tokens).
fn upsert_client(client: &Client) -> SqliteQuery<'_> {
    sqlx::query(
        "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
         scope, auth_method, issued_at, resource_server, resources) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn put_client(&self, client: &Client) -> StorageResult<()> {
        upsert_client(client).execute(&self.pool).await?;
        Ok(())
    }

    async fn register_client(
        &self,
        client: &Client,
        unused_until: UnixTime,
        max_unused: u64,
        now: UnixTime,
    ) -> StorageResult<Admission> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let unused: i64 =
            sqlx::query_scalar("SELECT count(*) FROM unused_clients WHERE expires_at > ?")
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        if unused >= cap(max_unused) {
            return Ok(Admission::TotalFull);
        }
        upsert_client(client).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO unused_clients (client_id, expires_at) VALUES (?, ?)")
            .bind(&client.client_id)
            .bind(unused_until)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Admission::Stored)
    }

    async fn mark_client_used(&self, client_id: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM unused_clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StorageResult<Option<Client>> {
        sqlx::query("SELECT * FROM clients WHERE client_id = ?")
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
        // Check both caps and insert in one statement, so concurrent requests cannot overshoot.
        let done = sqlx::query(
            "INSERT INTO pending_authorizations (id_hash, browser_hash, csrf_hash, client_id, \
             redirect_uri, scope, state, code_challenge, resource, stage, subject, granted_scope, \
             expires_at, origin) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
             WHERE (SELECT count(*) FROM pending_authorizations \
                    WHERE origin = ? AND expires_at > ?) < ? \
             AND (SELECT count(*) FROM pending_authorizations WHERE expires_at > ?) < ?",
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
        .bind(address)
        .bind(now)
        .bind(cap(caps.per_address))
        .bind(now)
        .bind(cap(caps.total))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Admission::Stored);
        }
        let mine: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pending_authorizations WHERE origin = ? AND expires_at > ?",
        )
        .bind(address)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(if mine >= cap(caps.per_address) {
            Admission::AddressFull
        } else {
            Admission::TotalFull
        })
    }

    async fn get_pending(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<PendingAuthorization>> {
        sqlx::query("SELECT * FROM pending_authorizations WHERE id_hash = ? AND expires_at > ?")
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
            "UPDATE pending_authorizations SET stage = 'consent', subject = ?, granted_scope = ?, \
             csrf_hash = ? WHERE id_hash = ? AND stage = 'login' AND expires_at > ?",
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
            "DELETE FROM pending_authorizations WHERE id_hash = ? AND stage = ? AND expires_at > ? \
             RETURNING *",
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("SELECT * FROM authorization_codes WHERE code_hash = ? AND expires_at > ?")
            .bind(code_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::code)
            .transpose()
    }

    async fn consume_code(&self, code_hash: &str, now: UnixTime) -> StorageResult<bool> {
        let done = sqlx::query(
            "UPDATE authorization_codes SET consumed = 1 \
             WHERE code_hash = ? AND consumed = 0 AND expires_at > ?",
        )
        .bind(code_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_tokens(&self, tokens: &[TokenRecord]) -> StorageResult<()> {
        // One statement is atomic on its own: the common cases (one token, or an access/refresh
        // pair) need no explicit transaction, which saves two round trips to the database thread.
        match tokens {
            [] => {}
            [one] => {
                bind_token(sqlx::query(INSERT_ONE_TOKEN), one, None)
                    .execute(&self.pool)
                    .await?;
            }
            [first, second] => {
                let query = bind_token(sqlx::query(INSERT_TWO_TOKENS), first, None);
                bind_token(query, second, None).execute(&self.pool).await?;
            }
            many => {
                let mut tx = self.pool.begin().await?;
                for t in many {
                    bind_token(sqlx::query(INSERT_ONE_TOKEN), t, None)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn get_token(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StorageResult<Option<TokenRecord>> {
        sqlx::query(
            "SELECT * FROM tokens t WHERE t.token_hash = ? AND t.expires_at > ? AND NOT EXISTS \
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
        // One transaction: the old token is consumed if and only if its successors are stored.
        // Dropping `tx` without commit (early return, error, crash) rolls everything back.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rotated = sqlx::query(
            "UPDATE tokens SET consumed = 1, rotated_at = ? WHERE token_hash = ? \
             AND kind = 'refresh' AND consumed = 0 AND expires_at > ? AND NOT EXISTS \
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
            let retry = sqlx::query(
                "SELECT 1 FROM tokens o WHERE o.token_hash = ? AND o.kind = 'refresh' \
                 AND o.consumed = 1 AND o.rotated_at > ? AND o.expires_at > ? \
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
            sqlx::query("DELETE FROM tokens WHERE parent_hash = ? AND kind = 'access'")
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tokens SET consumed = 1 WHERE parent_hash = ? AND kind = 'refresh'",
            )
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
            Rotation::Replaced
        };
        for t in successors {
            bind_token(sqlx::query(INSERT_ONE_TOKEN), t, Some(token_hash))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_family(&self, family_id: &str, remember_until: UnixTime) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_families (family_id, expires_at) VALUES (?, ?) \
             ON CONFLICT (family_id) DO UPDATE SET \
             expires_at = max(expires_at, excluded.expires_at)",
        )
        .bind(family_id)
        .bind(remember_until)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tokens WHERE family_id = ?")
            .bind(family_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_signing_key(&self, candidate: &SigningKey) -> StorageResult<SigningKey> {
        // The unique index on the current key makes the insert a no-op for every loser of a
        // first-start race; the read then returns the winner's key.
        insert_signing_key(candidate).execute(&self.pool).await?;
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let retired: Option<String> = sqlx::query_scalar(rows::RETIRE_CURRENT_KEY)
            .bind(retire_at)
            .fetch_optional(&mut *tx)
            .await?;
        let stored = insert_signing_key(new).execute(&mut *tx).await?;
        if stored.rows_affected() != 1 {
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
        let mut deleted = 0;
        for sql in [
            // Anonymous clients never used in time, with their pending authorizations (counted
            // here; the remaining rows that refer to them cascade).
            "DELETE FROM pending_authorizations WHERE client_id IN \
             (SELECT client_id FROM unused_clients WHERE expires_at <= ?)",
            "DELETE FROM clients WHERE client_id IN \
             (SELECT client_id FROM unused_clients WHERE expires_at <= ?)",
            "DELETE FROM pending_authorizations WHERE expires_at <= ?",
            "DELETE FROM authorization_codes WHERE expires_at <= ?",
            "DELETE FROM tokens WHERE expires_at <= ?",
            "DELETE FROM revoked_families WHERE expires_at <= ?",
            "DELETE FROM signing_keys WHERE retire_at <= ?",
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

/// Creating the database's files and directory privately.
mod files {
    use std::fs::OpenOptions;
    use std::path::Path;

    /// Creates `dir` and its missing parents with mode `0700` (existing ones are left alone).
    pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)
    }

    /// Creates the database file with mode `0600` if it does not exist. SQLite creates the
    /// `-wal` and `-shm` files with the database file's mode, so they are private too. An
    /// existing file that others may read (made by hand, or by a version that kept no private
    /// keys in it) is made `0600`, with its `-wal` and `-shm` files: it holds the signing keys.
    pub(super) fn create_private_file(path: &Path) -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path)?;
        #[cfg(unix)]
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            make_private(Path::new(&file))?;
        }
        Ok(())
    }

    /// Takes group and other permissions away from an existing file (a missing one is fine).
    /// Fails, naming the file, when that is not allowed: the server does not run on a database
    /// others may read.
    #[cfg(unix)]
    fn make_private(path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(metadata) => metadata.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if mode & 0o077 == 0 {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(
            |e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot make {} private (mode 0600): {e}", path.display()),
                )
            },
        )?;
        tracing::warn!(path = %path.display(), "the database file was readable by others; it is now 0600");
        Ok(())
    }
}
