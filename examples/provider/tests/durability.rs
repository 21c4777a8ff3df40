//! Durability: refresh rotation is one transaction and survives `kill -9`; a client that lost a
//! refresh response may retry within the grace; the SQLite files are private; processes started
//! together on a new database file all come up.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use oauth_provider::Config;
use oauth_provider::storage::SqliteStorage;
use reqwest::StatusCode;
use serde_json::Value;

backend_tests!(
    lost_refresh_response_can_be_retried_within_the_grace,
    presenting_the_replaced_successor_revokes_the_family,
    reuse_without_a_grace_revokes_the_family,
);

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

async fn lost_refresh_response_can_be_retried_within_the_grace(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    let (rt1, at1) = (text(&first, "refresh_token"), text(&first, "access_token"));

    // The response of this refresh is "lost": the client never sees rt2/at2.
    let (status, lost) = env.refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK, "{lost}");
    let (rt2, at2) = (text(&lost, "refresh_token"), text(&lost, "access_token"));

    // The client retries with rt1 (default grace: 10 s) and gets a fresh pair.
    let (status, retried) = env.refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let (rt3, at3) = (
        text(&retried, "refresh_token"),
        text(&retried, "access_token"),
    );
    assert_eq!(
        HashSet::from([rt1, rt2, rt3]).len(),
        3,
        "every refresh token is new"
    );
    // The unused successor is revoked; the retry's pair and the earlier access token live.
    env.assert_active(at2, false).await;
    env.assert_active(rt2, false).await;
    env.assert_active(at3, true).await;
    env.assert_active(at1, true).await;

    // The chain goes on from the retry's refresh token…
    let (status, next) = env.refresh(&client_id, rt3, &[]).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let rt4 = text(&next, "refresh_token");
    // …and once rt3's successor exists and rt3 was used, rt1 is plain reuse: the family dies.
    assert_error(
        &env.refresh(&client_id, rt1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    for token in [at1, at3, rt4, text(&next, "access_token")] {
        env.assert_active(token, false).await;
    }
}

async fn presenting_the_replaced_successor_revokes_the_family(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    let rt1 = text(&first, "refresh_token");
    let (_, lost) = env.refresh(&client_id, rt1, &[]).await;
    let rt2 = text(&lost, "refresh_token");
    let (status, retried) = env.refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK);
    // Someone presents the successor that the retry replaced: two parties hold this grant, so
    // the whole family is revoked, the retry's tokens included.
    assert_error(
        &env.refresh(&client_id, rt2, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    env.assert_active(text(&retried, "access_token"), false)
        .await;
    env.assert_active(text(&retried, "refresh_token"), false)
        .await;
}

async fn reuse_without_a_grace_revokes_the_family(backend: Backend) {
    let mut config = Config::demo();
    config.lifetimes.refresh_reuse_grace = Duration::ZERO;
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    let rt1 = text(&first, "refresh_token");
    let (status, second) = env.refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &env.refresh(&client_id, rt1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    env.assert_active(text(&second, "access_token"), false)
        .await;
    env.assert_active(text(&second, "refresh_token"), false)
        .await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("state");
    let db = parent.join("nested").join("oauth.db");
    let storage = SqliteStorage::open(&db).await.unwrap();
    // A write, so that the WAL and the shared-memory index exist.
    oauth_provider::seed::seed_demo_clients(&storage, 0)
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&parent), 0o700);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    for file in ["oauth.db", "oauth.db-wal", "oauth.db-shm"] {
        let path = db.with_file_name(file);
        assert_eq!(mode(&path), 0o600, "{file}");
    }
    oauth_provider::storage::Storage::close(&storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_database_all_succeed() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fresh.db");
        let opens: Vec<_> = (0..6)
            .map(|_| tokio::spawn(SqliteStorage::open(db.clone())))
            .collect();
        for open in opens {
            let storage = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            oauth_provider::storage::Storage::close(&storage).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_at_once_on_a_new_database_both_come_up() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new.db");
        let args = [
            "--demo",
            "--storage",
            "sqlite",
            "--sqlite-path",
            db.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ];
        let (a, b) = tokio::join!(Process::spawn(&args, &[]), Process::spawn(&args, &[]));
        for process in [&a, &b] {
            let env = Env::remote(&process.base, &process.base);
            // Both serve, on the same schema: a client registered on one is known to the other.
            env.public_client().await;
        }
        let a_env = Env::remote(&a.base, &a.base);
        let client_id = a_env.public_client().await;
        let b_env = Env::remote(&b.base, &b.base);
        let resp = b_env.authorize(&AuthRequest::new(&client_id).query()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        a.stop().await;
        b.stop().await;
    }
}

/// One client's refresh chain: the newest pair it received a response for.
struct Chain {
    client_id: String,
    refresh_token: String,
    access_token: String,
}

/// Rotates every chain as fast as it can against `base` until the process dies; returns the
/// chains with the newest pair each client received a response for.
async fn rotate_until_killed(
    base: &str,
    chains: Vec<Chain>,
    rotations: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Chain>> {
    let mut workers = Vec::new();
    for mut chain in chains {
        let http = http_client();
        let url = format!("{base}/token");
        let rotations = rotations.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", chain.refresh_token.as_str()),
                    ("client_id", chain.client_id.as_str()),
                ];
                // Connection refused / reset / cut mid-response: the client keeps what it had.
                let Ok(resp) = http.post(&url).form(&form).send().await else {
                    return chain;
                };
                let status = resp.status();
                let Ok(body) = resp.json::<Value>().await else {
                    return chain;
                };
                assert_eq!(status, StatusCode::OK, "before the kill: {body}");
                chain.refresh_token = text(&body, "refresh_token").to_owned();
                chain.access_token = text(&body, "access_token").to_owned();
                rotations.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    workers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_refresh_rotation_orphans_no_chain_and_loses_no_token() {
    const CHAINS: usize = 16;
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let issuer = "http://auth.test";
    let args = [
        "--demo",
        "--storage",
        "sqlite",
        "--sqlite-path",
        db.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
        "--issuer",
        issuer,
        // A restart on a loaded machine must fit in the grace; the default is 10 s.
        "--refresh-reuse-grace",
        "120",
    ];
    let mut process = Process::spawn(&args, &[]).await;
    let env = Env::remote(&process.base, issuer);
    let mut chains = Vec::new();
    for _ in 0..CHAINS {
        let client_id = env.public_client().await;
        let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
        chains.push(Chain {
            client_id,
            refresh_token: text(&tokens, "refresh_token").to_owned(),
            access_token: text(&tokens, "access_token").to_owned(),
        });
    }

    let mut lost_responses = Vec::new();
    for _ in 0..ROUNDS {
        // Every chain rotates as fast as it can; the process is killed mid-way.
        let rotations = Arc::new(AtomicUsize::new(0));
        let workers = rotate_until_killed(&process.base, chains, rotations.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while rotations.load(Ordering::SeqCst) < 20 * CHAINS {
            assert!(Instant::now() < deadline, "rotations too slow");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        process.stop().await; // SIGKILL: no shutdown code runs.
        chains = Vec::new();
        for w in workers {
            chains.push(w.await.unwrap());
        }
        // How many rotations committed whose response never arrived (for the record).
        let storage = SqliteStorage::open(&db).await.unwrap();
        let mut lost = 0;
        for chain in &chains {
            let token = oauth_provider::storage::Storage::get_token(
                &storage,
                &oauth_provider::tokens::hash_secret(&chain.refresh_token),
                oauth_provider::state::now(),
            )
            .await
            .unwrap()
            .expect("the newest refresh token a client received exists");
            lost += usize::from(token.consumed);
        }
        oauth_provider::storage::Storage::close(&storage).await;
        lost_responses.push(lost);

        process = Process::spawn(&args, &[]).await;
        let env = Env::remote(&process.base, issuer);
        for chain in &mut chains {
            // No lost token: the newest access token the client received is active…
            env.assert_active(&chain.access_token, true).await;
            // …and no orphaned chain: the newest refresh token it received still refreshes
            // (either it was never rotated, or its rotation committed but the response was
            // lost, which the grace covers), and the chain goes on from there.
            let (status, body) = env
                .refresh(&chain.client_id, &chain.refresh_token, &[])
                .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "chain of {}: {body}",
                chain.client_id
            );
            env.assert_active(text(&body, "access_token"), true).await;
            chain.refresh_token = text(&body, "refresh_token").to_owned();
            chain.access_token = text(&body, "access_token").to_owned();
        }
    }
    println!("rotations committed without a response, per kill: {lost_responses:?}");
    // In the database every family has exactly one live (unconsumed) refresh token.
    let storage = SqliteStorage::open(&db).await.unwrap();
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT family_id, count(*) FROM tokens WHERE kind = 'refresh' AND consumed = 0 \
         GROUP BY family_id",
    )
    .fetch_all(storage.pool())
    .await
    .unwrap();
    assert_eq!(live.len(), CHAINS, "{live:?}");
    assert!(live.iter().all(|(_, n)| *n == 1), "{live:?}");
    process.stop().await;
}
