//! Upgrading a database created before the registration policy: clients stored then may hold
//! `client_credentials` without an initial access token (the old open registration granted it), so
//! migration 0002 takes the grant away from every stored client; configured clients get it back
//! when they are seeded at startup. Upgrading a database of the version before DPoP (migration
//! 0005): its tokens stay unbound bearer tokens. SQLite only (schema migrations).

mod common;

use std::sync::Arc;

use common::*;
use oauth_provider::storage::{SqliteStorage, Storage};
use oauth_provider::{Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, Server};
use reqwest::StatusCode;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_takes_client_credentials_from_clients_registered_before_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("oauth.db");

    // The schema as the first release created it, with a client its open registration allowed.
    let first_release = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/0001_initial.sql"),
        first_release.path().join("0001_initial.sql"),
    )
    .unwrap();
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&database)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(first_release.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
         scope, auth_method, issued_at) VALUES ('registered-anonymously', ?, NULL, '[]', \
         '[\"client_credentials\",\"authorization_code\"]', 'read write admin', \
         'client_secret_basic', 0)",
    )
    .bind(oauth_provider::tokens::hash_secret("old-secret"))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&database).await.unwrap());
    let old = storage
        .get_client("registered-anonymously")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.grant_types, ["authorization_code"]);
    assert!(!old.resource_server && old.resources.is_empty());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with_storage(Config::demo(), listener, storage)
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));
    assert_error(
        &env.token_basic(
            "registered-anonymously",
            "old-secret",
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    // The configured resource server was seeded again with its grant.
    let (status, body) = env
        .token_basic(
            DEMO_RESOURCE_SERVER_ID,
            DEMO_RESOURCE_SERVER_SECRET,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.shutdown().await;
}

/// A database of the version before DPoP (migrations 0001 to 0004) upgrades in place: its
/// clients are not `dpop_bound_access_tokens`, its codes and tokens are unbound (bearer tokens
/// that introspect as before), and new bindings can be stored beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_the_version_before_dpop_keeps_tokens_as_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("oauth.db");
    let previous = tempfile::tempdir().unwrap();
    for name in [
        "0001_initial.sql",
        "0002_client_policy.sql",
        "0003_abuse_bounds_and_rotation_lineage.sql",
        "0004_signing_keys.sql",
    ] {
        std::fs::copy(
            format!("{}/migrations/{name}", env!("CARGO_MANIFEST_DIR")),
            previous.path().join(name),
        )
        .unwrap();
    }
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&database)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(previous.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let access_token = "at_stored-by-the-previous-version";
    sqlx::query(
        "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
         scope, auth_method, issued_at) VALUES ('old-client', NULL, NULL, '[]', \
         '[\"authorization_code\"]', 'read', 'none', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tokens (token_hash, kind, family_id, client_id, subject, scope, resource, \
         jti, issued_at, expires_at, consumed) VALUES (?, 'access', 'f1', 'old-client', 'alice', \
         'read', NULL, 'j1', 0, 4000000000, 0)",
    )
    .bind(oauth_provider::tokens::hash_secret(access_token))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&database).await.unwrap());
    let client = storage.get_client("old-client").await.unwrap().unwrap();
    assert!(!client.dpop_bound_access_tokens);
    let token = storage
        .get_token(&oauth_provider::tokens::hash_secret(access_token), 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.dpop_jkt, None);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with_storage(Config::demo(), listener, storage)
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));
    let body = env.introspect(access_token).await;
    assert_eq!(body["active"], serde_json::json!(true), "{body}");
    assert_eq!(body["token_type"], serde_json::json!("Bearer"), "{body}");
    assert!(body.get("cnf").is_none(), "{body}");
    env.shutdown().await;
}
