//! PostgreSQL for the tests: one server from `TOWER_INTROSPECT_TEST_POSTGRES_URL`, one fresh
//! database per test (random name), dropped when the test is done, so tests run in parallel
//! and never see each other's rows.
//!
//! Without the variable the PostgreSQL variants print why and return; with
//! `TOWER_INTROSPECT_REQUIRE_POSTGRES=1` (set in CI) they fail instead.

use std::io::Write;
use std::sync::Once;

use oauth_provider::PostgresSettings;
use oauth_provider::storage::PostgresStorage;
use sqlx::Connection;

/// The server every PostgreSQL test uses (an administrative URL: it may create databases).
pub const URL_VAR: &str = "TOWER_INTROSPECT_TEST_POSTGRES_URL";
/// Set to `1` to make a missing server a failure.
pub const REQUIRE_VAR: &str = "TOWER_INTROSPECT_REQUIRE_POSTGRES";

/// The server URL, or `None` after saying that `test` is skipped (a failure when required).
pub fn server_url(test: &str) -> Option<String> {
    if let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    assert!(
        std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
        "{REQUIRE_VAR}=1 but {URL_VAR} is not set: cannot run {test} on PostgreSQL"
    );
    // Captured per test (shown with --nocapture); once per test binary on the real stderr, so a
    // plain `cargo test` says that PostgreSQL coverage was skipped.
    println!("skipped: set {URL_VAR} to run {test} on PostgreSQL");
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the PostgreSQL variants of these tests; set {URL_VAR} \
             (e.g. `export {URL_VAR}=$(scripts/postgres-cluster.sh start)`) to run them"
        );
    });
    None
}

/// A database created for one test and dropped (best effort) when this guard is dropped.
pub struct TestDatabase {
    /// The database's name.
    pub name: String,
    /// Its URL (the server URL with the database name as path).
    pub url: String,
    server: String,
}

impl TestDatabase {
    /// Creates a database with a random name on the server of [`URL_VAR`]. Panics if the
    /// variable is unset (check [`server_url`] first) or the server is unreachable.
    pub async fn create() -> Self {
        let server = std::env::var(URL_VAR).expect("TOWER_INTROSPECT_TEST_POSTGRES_URL");
        let suffix: String = oauth_provider::tokens::random_id()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .take(16)
            .collect();
        let name = format!("ti_test_{suffix}");
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR} is set but the server is unreachable: {e}"));
        // The name is ours: "ti_test_" and 16 ASCII letters or digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&server).expect("a postgres:// URL");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
            server,
        }
    }

    /// The backend's settings for this database (defaults, with a small pool: many tests run
    /// at once against one server).
    pub fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            max_connections: 4,
            ..PostgresSettings::new(self.url.as_str())
        }
    }

    /// Opens the backend on this database (applying the migrations).
    pub async fn open(&self) -> PostgresStorage {
        PostgresStorage::open(&self.settings())
            .await
            .expect("open postgres storage")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime (which cannot block on a future), so a thread with its
        // own runtime does the work; FORCE ends connections that are still open.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
