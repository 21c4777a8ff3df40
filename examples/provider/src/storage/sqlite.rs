//! SQLite backend (sqlx): survives restarts and can be shared by several server processes.
//!
//! Connection settings: WAL journal (readers never block the writer), `synchronous = NORMAL`
//! (durable across application crashes; a power loss may drop the last transactions, which for
//! short-lived credentials is the usual trade-off), `busy_timeout` so concurrent writers from
//! other connections or processes wait instead of failing, and foreign keys on. The schema is
//! created and upgraded by the versioned migrations in `migrations/` (sqlx keeps the applied
//! versions in `_sqlx_migrations`).
//!
//! The statements are the PostgreSQL backend's, from `storage/sql.rs`. Every compare-and-set is one
//! SQL statement (`UPDATE … WHERE consumed = false`, `DELETE … RETURNING`), whose
//! `rows_affected` tells the single winner. Every writing transaction (refresh rotation, capped
//! inserts, revocation, key rotation, cleanup) starts with `BEGIN IMMEDIATE`, taking the
//! database's one write lock first: it is the lock every check-then-write step needs, SQLite's
//! busy handler applies, and no `SQLITE_BUSY_SNAPSHOT` can occur.
//!
//! Files: a directory the server creates is `0700`; the database is created `0600` before SQLite
//! opens it, and SQLite gives its `-wal` and `-shm` files the database file's mode; an existing
//! file others may read is made `0600` (it holds the private signing keys). Processes
//! started at the same moment on a new file race to apply the migrations; each migration is one
//! transaction that fails as a whole for the loser, which retries and finds it applied.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Transaction;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StorageResult;
use super::sql::{Dialect, Lock, sql_storage};

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

impl Dialect for SqliteStorage {
    type Db = sqlx::Sqlite;
    const LOCK_TOKEN_ROW: Option<&'static str> = None;
    /// One statement: it runs under the database's one write lock, so two claimers (tasks or
    /// processes) never select the same row.
    const CLAIM_OUTBOX: &'static str = "UPDATE ssf_outbox \
         SET lease_until = $2, attempts = attempts + 1 WHERE id IN \
         (SELECT o.id FROM ssf_outbox o JOIN ssf_streams s ON s.stream_id = o.stream_id \
          WHERE o.state = 'pending' AND o.next_attempt_at <= $1 AND o.lease_until <= $1 \
          AND s.status = 'enabled' AND s.delivery_method = 'push' ORDER BY o.id LIMIT $3) \
         RETURNING *";

    async fn begin_write(&self) -> StorageResult<Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Every lock is granted: `BEGIN IMMEDIATE` took the database's one write lock, which
    /// every other writer (connection or process) waits for.
    async fn lock(_: &mut Transaction<'static, sqlx::Sqlite>, _: Lock<'_>) -> StorageResult<bool> {
        Ok(true)
    }
}

sql_storage!(SqliteStorage);

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
