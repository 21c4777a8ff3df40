//! Several provider instances on one PostgreSQL database: real `oauth-provider` processes (as
//! behind a load balancer) and several pools in one process (as several instances' storage).
//! One-time codes, refresh rotation and reuse detection, caps and cleanup hold across
//! instances; killing one instance loses no token and the others keep serving.
//!
//! Every test skips with a message without `TOWER_INTROSPECT_TEST_POSTGRES_URL` (and fails
//! without it when `TOWER_INTROSPECT_REQUIRE_POSTGRES=1`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::postgres::{TestDatabase, server_url};
use common::*;
use oauth_provider::model::{AuthMethod, Client, PendingAuthorization, TokenKind, TokenRecord};
use oauth_provider::storage::postgres::{CLEANUP_LOCK, LOCK_CLASS};
use oauth_provider::storage::{Admission, PendingCaps, PostgresStorage, Storage};
use oauth_provider::tokens::hash_secret;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

/// The issuer all instances share (they stand behind one name).
const ISSUER: &str = "http://auth.test";
const NOW: i64 = 1_700_000_000;

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// Starts three provider processes at once on `database` (so they also race to migrate it).
async fn three_instances(database: &TestDatabase, extra: &[&str]) -> Vec<Process> {
    let mut args = vec![
        "--demo",
        "--storage",
        "postgres",
        "--database-url",
        &database.url,
        "--database-max-connections",
        "4",
        "--bind",
        "127.0.0.1:0",
        "--issuer",
        ISSUER,
    ];
    args.extend_from_slice(extra);
    let (a, b, c) = tokio::join!(
        Process::spawn(&args, &[]),
        Process::spawn(&args, &[]),
        Process::spawn(&args, &[])
    );
    vec![a, b, c]
}

fn envs(instances: &[Process]) -> Vec<Env> {
    instances
        .iter()
        .map(|p| Env::remote(&p.base, ISSUER))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_redemptions_over_three_instances_yield_one_token() {
    if server_url("hundred_concurrent_redemptions_over_three_instances_yield_one_token").is_none() {
        return;
    }
    let database = TestDatabase::create().await;
    let instances = three_instances(&database, &[]).await;
    let envs = envs(&instances);
    // Registered on the first, authorized on the second: one shared state.
    let client_id = envs[0].public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = envs[1].code(&req).await;
    let form: Vec<(String, String)> = req
        .redeem_form(&code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = envs[i % 3].url("/token");
        let (http, form, start) = (http_client(), form.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            json_of(http.post(url).form(&form).send().await.unwrap()).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == StatusCode::OK {
            winners.push(body);
        } else {
            assert_eq!(
                (status, body["error"].clone()),
                (StatusCode::BAD_REQUEST, json!("invalid_grant")),
                "{body}"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption must succeed");
    // The 99 replays revoked what the winner got, on every instance.
    for env in &envs {
        env.assert_active(text(&winners[0], "access_token"), false)
            .await;
    }
    for process in instances {
        process.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_replayed_on_another_instance_revokes_the_family_everywhere() {
    if server_url("refresh_token_replayed_on_another_instance_revokes_the_family_everywhere")
        .is_none()
    {
        return;
    }
    let database = TestDatabase::create().await;
    let instances = three_instances(&database, &["--refresh-reuse-grace", "0"]).await;
    let envs = envs(&instances);
    let client_id = envs[0].public_client().await;
    let first = envs[0].tokens(&AuthRequest::new(&client_id)).await;
    let rt1 = text(&first, "refresh_token");

    // Rotated on the first instance…
    let (status, second) = envs[0].refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (rt2, at2) = (
        text(&second, "refresh_token"),
        text(&second, "access_token"),
    );
    envs[2].assert_active(at2, true).await;
    // …replayed on the second: reuse, the family is revoked…
    assert_error(
        &envs[1].refresh(&client_id, rt1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // …which the third sees at once.
    envs[2].assert_active(at2, false).await;
    envs[2]
        .assert_active(text(&first, "access_token"), false)
        .await;
    assert_error(
        &envs[2].refresh(&client_id, rt2, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    for process in instances {
        process.stop().await;
    }
}

/// One client's refresh chain and every access token it received.
struct Chain {
    client_id: String,
    refresh_token: String,
    received: Vec<String>,
}

/// Rotates `chain` against `base` until `stop` is set or the instance stops answering (then the
/// client keeps the newest pair it received).
async fn rotate(
    base: String,
    mut chain: Chain,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> Chain {
    let http = http_client();
    let url = format!("{base}/token");
    while !stop.load(Ordering::SeqCst) {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", chain.refresh_token.as_str()),
            ("client_id", chain.client_id.as_str()),
        ];
        let Ok(resp) = http.post(&url).form(&form).send().await else {
            break;
        };
        let status = resp.status();
        let Ok(body) = resp.json::<Value>().await else {
            break;
        };
        assert_eq!(status, StatusCode::OK, "{body}");
        chain.refresh_token = text(&body, "refresh_token").to_owned();
        chain.received.push(text(&body, "access_token").to_owned());
        done.fetch_add(1, Ordering::SeqCst);
    }
    chain
}

/// Waits until `counter` reaches `target` (generous deadline: the machine may be loaded).
async fn wait_for(counter: &AtomicUsize, target: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < deadline, "{what}: too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_under_load_loses_no_token_and_the_others_keep_serving() {
    const CHAINS: usize = 12;
    if server_url("kill_9_of_one_instance_under_load_loses_no_token_and_the_others_keep_serving")
        .is_none()
    {
        return;
    }
    let database = TestDatabase::create().await;
    // A retry after the kill must fit in the grace on a loaded machine.
    let mut instances = three_instances(&database, &["--refresh-reuse-grace", "120"]).await;
    let envs = envs(&instances);
    let mut chains = Vec::new();
    for i in 0..CHAINS {
        let env = &envs[i % 3];
        let client_id = env.public_client().await;
        let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
        chains.push(Chain {
            client_id,
            refresh_token: text(&tokens, "refresh_token").to_owned(),
            received: vec![text(&tokens, "access_token").to_owned()],
        });
    }

    // Every chain rotates as fast as it can on its instance; the first instance is killed
    // mid-way.
    let stop = Arc::new(AtomicBool::new(false));
    let (before, after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for (i, chain) in chains.into_iter().enumerate() {
        let done = if i % 3 == 0 {
            before.clone()
        } else {
            after.clone()
        };
        let base = envs[i % 3].base.clone();
        workers.push(tokio::spawn(rotate(base, chain, stop.clone(), done)));
    }
    wait_for(&before, 10 * CHAINS / 3, "rotations on the first instance").await;
    instances.remove(0).stop().await; // SIGKILL: no shutdown code runs.
    // The survivors keep serving under load.
    let served = after.load(Ordering::SeqCst);
    wait_for(&after, served + 10 * CHAINS, "rotations after the kill").await;
    stop.store(true, Ordering::SeqCst);
    let mut chains = Vec::new();
    for worker in workers {
        chains.push(worker.await.unwrap());
    }

    let survivors = &envs[1..];
    let mut checked = 0;
    for (i, chain) in chains.iter().enumerate() {
        let env = &survivors[i % 2];
        // No token lost: every access token the client received is active on the survivors…
        for token in &chain.received {
            env.assert_active(token, true).await;
            checked += 1;
        }
        // …and the newest refresh token it received still refreshes there (a rotation that
        // committed on the killed instance without a response is a retry within the grace).
        let (status, body) = env
            .refresh(&chain.client_id, &chain.refresh_token, &[])
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "chain of {}: {body}",
            chain.client_id
        );
        survivors[(i + 1) % 2]
            .assert_active(text(&body, "access_token"), true)
            .await;
    }
    println!("access tokens checked on the survivors: {checked}");
    for process in instances {
        process.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_on_a_new_database_migrate_it_once() {
    if server_url("instances_starting_together_on_a_new_database_migrate_it_once").is_none() {
        return;
    }
    let database = TestDatabase::create().await;
    let settings = database.settings();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let settings = settings.clone();
            tokio::spawn(async move { PostgresStorage::open(&settings).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance comes up"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(usize::try_from(applied).unwrap(), on_disk);
    for store in stores {
        store.close().await;
    }
}

fn client(id: &str) -> Client {
    Client {
        client_id: id.to_owned(),
        secret_hash: None,
        client_name: None,
        redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
        grant_types: vec!["authorization_code".to_owned()],
        scope: "read".to_owned(),
        auth_method: AuthMethod::None,
        issued_at: NOW,
        resource_server: false,
        resources: Vec::new(),
        dpop_bound_access_tokens: false,
    }
}

/// Two pools on one database: the storage of two instances.
async fn two_instances(database: &TestDatabase) -> [Arc<PostgresStorage>; 2] {
    [
        Arc::new(database.open().await),
        Arc::new(database.open().await),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold_when_two_instances_fill_them_at_once() {
    const CAP: u64 = 10;
    if server_url("caps_hold_when_two_instances_fill_them_at_once").is_none() {
        return;
    }
    let database = TestDatabase::create().await;
    let stores = two_instances(&database).await;
    stores[0].put_client(&client("owner")).await.unwrap();

    // 60 registrations of unused clients at once, half on each instance.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            store
                .register_client(&client(&format!("anon-{i}")), NOW + 60, CAP, NOW)
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Admission::Stored => stored += 1,
            other => assert_eq!(other, Admission::TotalFull),
        }
    }
    assert_eq!(stored, CAP);
    assert_eq!(stores[1].stats().await.unwrap().unused_clients, CAP);

    // 60 pending authorizations at once from one address, half on each instance.
    let caps = PendingCaps {
        per_address: CAP,
        total: 1000,
    };
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_pending(&pending(&format!("p-{i}")), "192.0.2.1", caps, NOW)
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Admission::Stored => stored += 1,
            other => assert_eq!(other, Admission::AddressFull),
        }
    }
    assert_eq!(stored, CAP);
    assert_eq!(stores[0].stats().await.unwrap().pending, CAP);
    for store in stores {
        store.close().await;
    }
}

fn pending(id: &str) -> PendingAuthorization {
    PendingAuthorization {
        id_hash: hash_secret(id),
        browser_hash: hash_secret("browser"),
        csrf_hash: hash_secret("csrf"),
        client_id: "owner".to_owned(),
        redirect_uri: "http://127.0.0.1/cb".to_owned(),
        scope: "read".to_owned(),
        state: None,
        code_challenge: "c".repeat(43),
        resource: None,
        stage: oauth_provider::model::InteractionStage::Login,
        subject: None,
        granted_scope: None,
        expires_at: NOW + 600,
        dpop_jkt: None,
    }
}

fn expired_token(id: &str) -> TokenRecord {
    TokenRecord {
        token_hash: hash_secret(id),
        kind: TokenKind::Access,
        family_id: id.to_owned(),
        client_id: "owner".to_owned(),
        subject: None,
        scope: "read".to_owned(),
        resource: None,
        jti: id.to_owned(),
        issued_at: NOW - 60,
        expires_at: NOW - 1,
        consumed: false,
        dpop_jkt: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_instance_purges_at_a_time() {
    if server_url("only_one_instance_purges_at_a_time").is_none() {
        return;
    }
    let database = TestDatabase::create().await;
    let stores = two_instances(&database).await;
    stores[0].put_client(&client("owner")).await.unwrap();
    let expired: Vec<_> = (0..5).map(|i| expired_token(&format!("t{i}"))).collect();
    stores[0].put_tokens(&expired).await.unwrap();

    // Another instance is cleaning: it holds the cleanup lock (in an open transaction).
    let mut other = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut cleaning = other.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(CLEANUP_LOCK)
        .fetch_one(&mut *cleaning)
        .await
        .unwrap();
    assert!(locked);
    for store in &stores {
        assert_eq!(store.purge_expired(NOW).await.unwrap(), 0, "skipped");
    }
    assert_eq!(stores[0].stats().await.unwrap().tokens, 5);

    // Once it is done, the next round does the work, once.
    cleaning.rollback().await.unwrap();
    assert_eq!(stores[1].purge_expired(NOW).await.unwrap(), 5);
    assert_eq!(stores[0].purge_expired(NOW).await.unwrap(), 0);
    assert_eq!(stores[0].stats().await.unwrap().tokens, 0);
    let _ = other.close().await;
    for store in stores {
        store.close().await;
    }
}
