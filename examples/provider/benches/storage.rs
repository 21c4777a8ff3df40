//! Storage operation latency for every backend: memory, SQLite (a real file in a temp dir, WAL,
//! `synchronous = NORMAL`) and PostgreSQL (a fresh database on the server of
//! `TOWER_INTROSPECT_TEST_POSTGRES_URL`, dropped afterwards; skipped with a message without it).
//!
//! Run: `cargo bench -p oauth-provider --bench storage -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use oauth_provider::PostgresSettings;
use oauth_provider::model::{AuthMethod, AuthorizationCode, Client, TokenKind, TokenRecord};
use oauth_provider::storage::{MemoryStorage, PostgresStorage, SqliteStorage, Storage};
use oauth_provider::tokens::{hash_secret, random_id};
use sqlx::Connection;

const NOW: i64 = 1_700_000_000;

fn client(id: &str) -> Client {
    Client {
        client_id: id.to_owned(),
        secret_hash: Some(hash_secret(id)),
        client_name: Some("Bench client".to_owned()),
        redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        scope: "read write".to_owned(),
        auth_method: AuthMethod::ClientSecretBasic,
        issued_at: NOW,
        resource_server: false,
        resources: Vec::new(),
        dpop_bound_access_tokens: false,
    }
}

fn token(hash: String) -> TokenRecord {
    TokenRecord {
        token_hash: hash,
        kind: TokenKind::Access,
        family_id: random_id(),
        client_id: "bench".to_owned(),
        subject: Some("alice".to_owned()),
        scope: "read write".to_owned(),
        resource: Some("https://mcp.example.com/mcp".to_owned()),
        jti: random_id(),
        issued_at: NOW,
        expires_at: NOW + 3600,
        consumed: false,
        dpop_jkt: None,
    }
}

fn code(hash: String) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash,
        client_id: "bench".to_owned(),
        redirect_uri: "http://127.0.0.1/cb".to_owned(),
        subject: "alice".to_owned(),
        scope: "read".to_owned(),
        resource: None,
        code_challenge: "c".repeat(43),
        family_id: random_id(),
        issued_at: NOW,
        expires_at: NOW + 600,
        consumed: false,
        dpop_jkt: None,
    }
}

fn bench_backend(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    storage: Arc<dyn Storage>,
) {
    let counter = Arc::new(AtomicU64::new(0));
    let next = {
        let counter = counter.clone();
        move |prefix: &str| format!("{prefix}-{}", counter.fetch_add(1, Ordering::Relaxed))
    };
    rt.block_on(storage.put_client(&client("bench"))).unwrap();
    let known_token = hash_secret("known-token");
    rt.block_on(storage.put_tokens(&[token(known_token.clone())]))
        .unwrap();

    let mut group = c.benchmark_group(name);
    group.bench_function("put_client", |b| {
        b.to_async(rt).iter(|| {
            let id = next("client");
            let storage = storage.clone();
            async move { storage.put_client(&client(&id)).await.unwrap() }
        })
    });
    group.bench_function("get_client", |b| {
        b.to_async(rt)
            .iter(|| async { storage.get_client("bench").await.unwrap().unwrap() })
    });
    group.bench_function("put_token", |b| {
        b.to_async(rt).iter(|| {
            let hash = next("token");
            let storage = storage.clone();
            async move { storage.put_tokens(&[token(hash)]).await.unwrap() }
        })
    });
    group.bench_function("get_token", |b| {
        b.to_async(rt)
            .iter(|| async { storage.get_token(&known_token, NOW).await.unwrap().unwrap() })
    });
    group.bench_function("consume_code", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let storage = storage.clone();
            let hashes: Vec<String> = (0..iters).map(|_| next("code")).collect();
            async move {
                // Insert the codes first (not measured), then time only the atomic consumption.
                for h in &hashes {
                    storage.put_code(&code(h.clone())).await.unwrap();
                }
                let start = Instant::now();
                for h in &hashes {
                    assert!(storage.consume_code(h, NOW).await.unwrap());
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

fn storage_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    bench_backend(c, &rt, "memory", Arc::new(MemoryStorage::new()));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStorage::open(dir.path().join("bench.db")))
        .unwrap();
    bench_backend(c, &rt, "sqlite", Arc::new(sqlite));
    let Some(server) = std::env::var("TOWER_INTROSPECT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!(
            "skipped: the postgres benches; set TOWER_INTROSPECT_TEST_POSTGRES_URL \
             (e.g. from scripts/postgres-cluster.sh start) to run them"
        );
        return;
    };
    let name = format!("ti_bench_{}", std::process::id());
    let admin = |sql: String| {
        let server = server.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await
        }
    };
    rt.block_on(admin(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .unwrap();
    rt.block_on(admin(format!("CREATE DATABASE {name}")))
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&format!("/{name}"));
    let postgres = rt
        .block_on(PostgresStorage::open(&PostgresSettings::new(url.as_str())))
        .unwrap();
    let postgres: Arc<dyn Storage> = Arc::new(postgres);
    bench_backend(c, &rt, "postgres", postgres.clone());
    rt.block_on(postgres.close());
    rt.block_on(admin(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = storage_benches
}
criterion_main!(benches);
