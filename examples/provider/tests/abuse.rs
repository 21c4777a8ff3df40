//! Resource exhaustion and guessing: password hashing bounded, login throttling per account and
//! per address, anonymous writes (registrations, pending authorizations) bounded and expiring,
//! `HEAD /authorize` storing nothing. Each test is named for the attack it stops and runs on both
//! backends.

mod common;

use std::time::Duration;

use common::*;
use oauth_provider::cleanup;
use oauth_provider::limits::WindowLimit;
use oauth_provider::{Clock, Config};
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(
    two_hundred_wrong_passwords_get_throttled,
    concurrent_wrong_passwords_cannot_overrun_the_failure_limit,
    wrong_passwords_across_accounts_are_throttled_per_address,
    successful_logins_are_never_throttled,
    hashing_overload_is_refused_with_503_and_retry_after,
    registration_flood_from_one_address_is_refused,
    unused_registrations_are_capped_in_total,
    unused_anonymous_clients_expire,
    registrations_with_the_initial_access_token_are_not_anonymous_writes,
    pending_authorization_flood_is_capped_per_address,
    pending_authorization_flood_is_capped_in_total,
    head_authorize_creates_nothing,
    default_limits_allow_several_clients_and_users_from_one_address,
    concurrent_wrong_passwords_stay_under_the_memory_bound,
    a_stranger_cannot_lock_the_owner_out,
    guessing_from_many_addresses_is_slowed_by_the_account_bound,
);

/// Peak resident memory allowed to the provider process (debug build) while 256 wrong passwords
/// are posted at once with two hashing slots: its baseline (~15 MiB) plus 2 × 19 MiB of argon2
/// working memory plus the connections, with headroom. Measured: 56–59 MiB. Without the gate
/// the same burst took ~4.5 GiB; with the gate but argon2 allocating per verification, 512 MiB.
const MEMORY_BOUND_MIB: u64 = 96;

/// The `Retry-After` header in seconds.
fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A login page of a fresh authorization request of a new public client.
async fn login_page(env: &Env) -> String {
    let client_id = env.public_client().await;
    let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

const LOGIN_FAILED: &str = "Invalid username or password.";
const THROTTLED: &str = "Too many failed sign-in attempts. Please try again in 15 minute(s).";

async fn two_hundred_wrong_passwords_get_throttled(backend: Backend) {
    // Default limits: 10 failures per account and address in 15 minutes, then a 15-minute ban
    // of that address for that account.
    let env = Env::start(backend).await;
    let page = login_page(&env).await;
    let (mut failed, mut throttled) = (0, 0);
    for i in 0..200 {
        let resp = env.login(&page, "alice", &format!("guess-{i}")).await;
        match resp.status() {
            StatusCode::OK => {
                assert!(resp.text().await.unwrap().contains(LOGIN_FAILED));
                failed += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after(&resp);
                assert!((1..=900).contains(&wait), "Retry-After {wait}");
                assert!(resp.text().await.unwrap().contains(THROTTLED));
                throttled += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((failed, throttled), (10, 190));
    // The right password does not lift the ban on this address for the account…
    let resp = env.login(&page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await.unwrap().contains(THROTTLED));
    // …but other accounts from the same address log in (refused attempts did not count).
    let resp = env.login(&page, "bob", "secret456").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Authorize access"));
}

async fn concurrent_wrong_passwords_cannot_overrun_the_failure_limit(backend: Backend) {
    let env = Env::start(backend).await;
    let page = login_page(&env).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let http = env.http.clone();
        let url = env.url("/authorize");
        let form = vec![
            ("request_id".to_owned(), hidden(&page, "request_id")),
            ("csrf_token".to_owned(), hidden(&page, "csrf_token")),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), format!("guess-{i}")),
        ];
        tasks.push(tokio::spawn(async move {
            http.post(url).form(&form).send().await.unwrap().status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let verified = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // Attempts are counted before hashing: exactly the limit got a verification.
    assert_eq!((verified, refused), (10, 50), "{statuses:?}");
}

async fn wrong_passwords_across_accounts_are_throttled_per_address(backend: Backend) {
    // Default: 30 failures per address in 15 minutes, whatever the accounts.
    let env = Env::start(backend).await;
    let page = login_page(&env).await;
    for i in 0..30 {
        let resp = env.login(&page, &format!("user-{i}"), "password").await;
        assert_eq!(resp.status(), StatusCode::OK, "attempt {i}");
    }
    let resp = env.login(&page, "user-30", "password").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) <= 900);
    // The address is banned for every account, even with the right password.
    let resp = env.login(&page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await.unwrap().contains(THROTTLED));
}

async fn successful_logins_are_never_throttled(backend: Backend) {
    let mut config = Config::demo();
    config.limits.login_failures_per_pair =
        WindowLimit::new(2, Duration::from_secs(900), Duration::from_secs(900));
    config.limits.login_failures_per_account =
        WindowLimit::new(2, Duration::from_secs(900), Duration::from_secs(900));
    config.limits.login_failures_per_address =
        WindowLimit::new(3, Duration::from_secs(900), Duration::from_secs(900));
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    // Far more successful logins than either limit, from one address, all go through.
    for _ in 0..12 {
        let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
        let page = resp.text().await.unwrap();
        let resp = env.login(&page, "alice", "password123").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.unwrap().contains("Authorize access"));
    }
    // A success clears its pair's failures: one failure, a success, then two more failures
    // are still allowed (the limit is 2).
    let page = login_page(&env).await;
    assert_eq!(env.login(&page, "bob", "x").await.status(), StatusCode::OK);
    let resp = env.login(&page, "bob", "secret456").await;
    assert!(resp.text().await.unwrap().contains("Authorize access"));
    let page = login_page(&env).await;
    assert_eq!(env.login(&page, "bob", "y").await.status(), StatusCode::OK);
    assert_eq!(env.login(&page, "bob", "z").await.status(), StatusCode::OK);
    assert_eq!(
        env.login(&page, "bob", "w").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn hashing_overload_is_refused_with_503_and_retry_after(backend: Backend) {
    let mut config = Config::demo();
    config.limits.password_hashes_in_flight = 1;
    // Shorter than one argon2 verification: whoever finds the slot taken is refused.
    config.limits.password_hash_wait = Duration::from_millis(1);
    config.limits.login_failures_per_pair = WindowLimit::unlimited();
    config.limits.login_failures_per_account = WindowLimit::unlimited();
    config.limits.login_failures_per_address = WindowLimit::unlimited();
    let env = Env::start_with(backend, config).await;
    let page = login_page(&env).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let http = env.http.clone();
        let url = env.url("/authorize");
        let form = vec![
            ("request_id".to_owned(), hidden(&page, "request_id")),
            ("csrf_token".to_owned(), hidden(&page, "csrf_token")),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), format!("guess-{i}")),
        ];
        tasks.push(tokio::spawn(async move {
            let resp = http.post(url).form(&form).send().await.unwrap();
            let status = resp.status();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, resp.text().await.unwrap())
        }));
    }
    let (mut verified, mut busy) = (0, 0);
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                assert!(body.contains(LOGIN_FAILED));
                verified += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry.as_deref(), Some("1"));
                assert!(body.contains("The server is busy. Please try again in a moment."));
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        verified >= 1 && busy >= 1,
        "{verified} verified, {busy} busy"
    );
    // The form still works afterwards: the refused attempts consumed nothing.
    let resp = env.login(&page, "alice", "password123").await;
    assert!(resp.text().await.unwrap().contains("Authorize access"));
}

async fn registration_flood_from_one_address_is_refused(backend: Backend) {
    let mut config = Config::demo();
    let hour = Duration::from_secs(3600);
    config.limits.registrations_per_address = WindowLimit::new(3, hour, hour);
    let env = Env::start_with(backend, config).await;
    for _ in 0..3 {
        env.public_client().await;
    }
    let clients = env.storage().stats().await.unwrap().clients;
    let resp = env
        .http
        .post(env.url("/register"))
        .json(&json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&resp), 3600);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let result = json_of(resp).await;
    assert_error(
        &result,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
    );
    assert_eq!(env.storage().stats().await.unwrap().clients, clients);
}

async fn unused_registrations_are_capped_in_total(backend: Backend) {
    let mut config = Config::demo();
    config.limits.max_unused_clients = 2;
    let env = Env::start_with(backend, config).await;
    let first = env.public_client().await;
    env.public_client().await;
    let refused = env
        .register(json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .await;
    assert_error(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    // The full cap says how long to wait.
    let raw = http_client()
        .post(env.url("/register"))
        .json(&json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&raw), 60);
    let stats = env.storage().stats().await.unwrap();
    assert_eq!(stats.unused_clients, 2);
    // Once a user approved a request of the first client it is in use and frees its place.
    env.code(&AuthRequest::new(&first)).await;
    assert_eq!(env.storage().stats().await.unwrap().unused_clients, 1);
    env.public_client().await;
}

/// The operator's registrations (with the initial access token) are neither rate-limited per
/// address nor counted among the never-used anonymous clients that expire.
async fn registrations_with_the_initial_access_token_are_not_anonymous_writes(backend: Backend) {
    let mut config = test_config();
    let hour = Duration::from_secs(3600);
    config.limits.registrations_per_address = WindowLimit::new(1, hour, hour);
    config.limits.max_unused_clients = 1;
    let env = Env::start_with(backend, config).await;
    let metadata = json!({
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    for _ in 0..3 {
        let (status, body) = env
            .register_with_token(REGISTRATION_TOKEN, metadata.clone())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(env.storage().stats().await.unwrap().unused_clients, 0);
    // The anonymous budget is untouched: one open registration still fits, the next does not.
    env.public_client().await;
    let refused = env
        .register(json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
    );
}

async fn unused_anonymous_clients_expire(backend: Backend) {
    let env = Env::start(backend).await;
    let used = env.public_client().await;
    let unused = env.public_client().await;
    let req = AuthRequest::new(&unused);
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    assert!(page.contains("request_id"));
    env.code(&AuthRequest::new(&used)).await;

    // Default: 24 hours. The cleanup task's pass a day later deletes the never-used client with
    // its pending authorization; the used one and the demo clients stay.
    let day_later = oauth_provider::state::now() + 24 * 3600 + 1;
    let clients_before = env.storage().stats().await.unwrap().clients;
    cleanup::run_once(env.storage().as_ref(), day_later)
        .await
        .unwrap();
    let stats = env.storage().stats().await.unwrap();
    assert_eq!(
        (stats.clients, stats.unused_clients, stats.pending),
        (clients_before - 1, 0, 0)
    );
    assert!(env.storage().get_client(&unused).await.unwrap().is_none());
    assert!(env.storage().get_client(&used).await.unwrap().is_some());
    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("Unknown client."));
}

async fn pending_authorization_flood_is_capped_per_address(backend: Backend) {
    let mut config = Config::demo();
    config.limits.pending_per_address = 3;
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    for _ in 0..3 {
        let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&resp), 60);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Too many sign-in requests are open from your network.")
    );
    assert_eq!(env.storage().stats().await.unwrap().pending, 3);
    assert!(
        login_page_for(&env, &client_id).await.is_none(),
        "still full"
    );
}

/// The login page for a new request of `client_id`, or `None` when refused.
async fn login_page_for(env: &Env, client_id: &str) -> Option<String> {
    let resp = env.authorize(&AuthRequest::new(client_id).query()).await;
    (resp.status() == StatusCode::OK).then_some(resp.text().await.unwrap())
}

async fn pending_authorization_flood_is_capped_in_total(backend: Backend) {
    let mut config = Config::demo();
    config.limits.max_pending = 2;
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    let first = AuthRequest::new(&client_id);
    let page = env.authorize(&first.query()).await.text().await.unwrap();
    assert!(login_page_for(&env, &client_id).await.is_some());
    let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&resp) >= 1);
    assert_eq!(env.storage().stats().await.unwrap().pending, 2);
    // A finished authorization frees its place.
    let consent = env.login(&page, "alice", "password123").await;
    let consent = consent.text().await.unwrap();
    let resp = env.decide(&consent, "approve").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(login_page_for(&env, &client_id).await.is_some());
}

async fn head_authorize_creates_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let url = url::Url::parse_with_params(&env.url("/authorize"), req.query()).unwrap();
    for _ in 0..20 {
        let resp = env.http.head(url.clone()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("set-cookie").is_none());
    }
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);
    // A HEAD of an invalid request answers like GET would, still storing nothing.
    let bad =
        url::Url::parse_with_params(&env.url("/authorize"), [("client_id", "nobody")]).unwrap();
    let resp = env.http.head(bad).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // GET stores exactly one.
    assert_eq!(env.authorize(&req.query()).await.status(), StatusCode::OK);
    assert_eq!(env.storage().stats().await.unwrap().pending, 1);
}

async fn default_limits_allow_several_clients_and_users_from_one_address(backend: Backend) {
    let env = Env::start(backend).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(env.public_client().await);
    }
    for (client_id, (user, password)) in clients.iter().zip(
        [
            ("alice", "password123"),
            ("bob", "secret456"),
            ("admin", "admin789"),
        ]
        .into_iter()
        .cycle(),
    ) {
        let mut req = AuthRequest::new(client_id);
        req.scope = Some("read".into());
        // A typo first, as people do.
        let page = env.authorize(&req.query()).await.text().await.unwrap();
        let again = env.login(&page, user, "typo").await;
        assert_eq!(again.status(), StatusCode::OK);
        let params = env.authorize_and_approve(&req, user, password).await;
        let (status, body) = env.token(&req.redeem_form(&params["code"])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn concurrent_wrong_passwords_stay_under_the_memory_bound(backend: Backend) {
    const POSTS: usize = 256;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let database = match backend {
        Backend::Postgres => Some(common::postgres::TestDatabase::create().await),
        _ => None,
    };
    let database_url = database.as_ref().map(|d| d.url.clone()).unwrap_or_default();
    let mut args = vec![
        "--demo",
        "--bind",
        "127.0.0.1:0",
        "--password-hashes-in-flight",
        "2",
        // Throttling off: every post reaches the password check, so the gate alone bounds it.
        "--login-max-failures-per-pair",
        "0",
        "--login-max-failures-per-account",
        "0",
        "--login-max-failures-per-address",
        "0",
    ];
    match backend {
        Backend::Memory => args.extend(["--storage", "memory"]),
        Backend::Sqlite => {
            args.extend(["--storage", "sqlite", "--sqlite-path", db.to_str().unwrap()])
        }
        Backend::Postgres => {
            args.extend(["--storage", "postgres", "--database-url", &database_url])
        }
    }
    let process = Process::spawn(&args, &[]).await;
    let env = Env::remote(&process.base, &process.base);
    let page = login_page(&env).await;
    let baseline_kib = proc_status_kib(process.pid(), "VmHWM");

    let form = vec![
        ("request_id".to_owned(), hidden(&page, "request_id")),
        ("csrf_token".to_owned(), hidden(&page, "csrf_token")),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "wrong".to_owned()),
    ];
    let start = tokio::sync::Barrier::new(POSTS);
    let start = std::sync::Arc::new(start);
    let mut tasks = Vec::new();
    for _ in 0..POSTS {
        let (http, url, form, start) = (
            env.http.clone(),
            env.url("/authorize"),
            form.clone(),
            start.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let resp = http.post(url).form(&form).send().await.unwrap();
            let status = resp.status();
            let retry = resp.headers().contains_key("retry-after");
            (status, retry, resp.text().await.unwrap())
        }));
    }
    let (mut verified, mut busy) = (0, 0);
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            StatusCode::OK if body.contains(LOGIN_FAILED) => verified += 1,
            StatusCode::SERVICE_UNAVAILABLE if retry => busy += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let peak_kib = proc_status_kib(process.pid(), "VmHWM");
    println!(
        "{backend:?}: {POSTS} concurrent wrong passwords: {verified} verified, {busy} refused \
         busy; peak RSS {} MiB (baseline {} MiB)",
        peak_kib / 1024,
        baseline_kib / 1024
    );
    assert!(verified >= 2, "{verified} verified");
    assert!(
        peak_kib < MEMORY_BOUND_MIB * 1024,
        "peak RSS {} MiB exceeds {MEMORY_BOUND_MIB} MiB",
        peak_kib / 1024
    );
    process.stop().await;
}

/// Bytes of the SQLite database at `path` once its WAL is folded in.
async fn database_bytes(path: &std::path::Path) -> u64 {
    let storage = oauth_provider::storage::SqliteStorage::open(path)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(storage.pool())
        .await
        .unwrap();
    oauth_provider::storage::Storage::close(&storage).await;
    std::fs::metadata(path).unwrap().len()
}

/// What one address can make the server store in an hour with the default limits, with every
/// field as large as the limits allow: 30 registrations (then 429 for the rest of the hour) and 100 live
/// pending authorizations (each expires after 10 minutes, so the stock never exceeds 100).
/// Logins and failed logins store nothing; codes and tokens need a user's approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_adds_a_bounded_amount_of_storage_per_hour() {
    let env = Env::start(Backend::Sqlite).await;
    let path = env.dir.as_ref().unwrap().path().join("oauth.db");
    let before = database_bytes(&path).await;

    let long_uri = |i: usize| format!("http://127.0.0.1/{i}{}", "a".repeat(1980));
    let metadata = json!({
        "client_name": "€".repeat(200),
        // As many 2000-character URIs as fit in the 16 KiB body limit.
        "redirect_uris": (0..7).map(long_uri).collect::<Vec<_>>(),
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let mut registered = Vec::new();
    loop {
        let (status, body) = env.register(metadata.clone()).await;
        if status != StatusCode::CREATED {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
            break;
        }
        registered.push(body["client_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(registered.len(), 30);
    let after_clients = database_bytes(&path).await;

    let mut pending = 0;
    loop {
        let mut req = AuthRequest::new(&registered[0]);
        req.redirect_uri = long_uri(0);
        req.state = "s".repeat(2048);
        // Only configured resources are accepted, so the longest one an attacker can name is
        // the operator's.
        req.resource = Some(common::RESOURCE.to_owned());
        let resp = env.authorize(&req.query()).await;
        if resp.status() != StatusCode::OK {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            break;
        }
        pending += 1;
    }
    assert_eq!(pending, 100);
    let after = database_bytes(&path).await;
    let clients_kib = (after_clients - before) / 1024;
    let pending_kib = (after - after_clients) / 1024;
    println!(
        "one address, one hour, default limits: {} clients = {clients_kib} KiB, {pending} pending \
         authorizations = {pending_kib} KiB, total {} KiB",
        registered.len(),
        (after - before) / 1024
    );
    // Measured: 30 clients = 480 KiB, 100 pending = 460 KiB, 940 KiB in all.
    assert!(after - before < 2 * 1024 * 1024, "{} bytes", after - before);
}

/// A browser whose connections come from `ip` (a loopback address: 127.0.0.0/8 is all local).
fn browser_at(ip: [u8; 4]) -> reqwest::Client {
    let _ = http_client();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(ip))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The login page of a new request of `client_id`, fetched by `browser`.
async fn login_page_in(env: &Env, browser: &reqwest::Client, client_id: &str) -> String {
    let url =
        url::Url::parse_with_params(&env.url("/authorize"), AuthRequest::new(client_id).query())
            .unwrap();
    let resp = browser.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

/// Submits the login form of `page` from `browser`.
async fn login_in(
    env: &Env,
    browser: &reqwest::Client,
    page: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(env.url("/authorize"))
        .form(&[
            ("request_id", hidden(page, "request_id").as_str()),
            ("csrf_token", hidden(page, "csrf_token").as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn a_stranger_cannot_lock_the_owner_out(backend: Backend) {
    // Default limits: the attacker's address is banned for alice after 10 failures; alice,
    // from her own address, is not.
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let attacker = browser_at([127, 0, 0, 2]);
    let owner = browser_at([127, 0, 0, 3]);
    let page = login_page_in(&env, &attacker, &client_id).await;
    for i in 0..10 {
        let resp = login_in(&env, &attacker, &page, "alice", &format!("guess-{i}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "guess {i}");
    }
    let resp = login_in(&env, &attacker, &page, "alice", "guess-10").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await.unwrap().contains(THROTTLED));
    // Banned for alice even with her password, from the attacker's address.
    let resp = login_in(&env, &attacker, &page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Alice, from her address, signs in at once.
    let page = login_page_in(&env, &owner, &client_id).await;
    let resp = login_in(&env, &owner, &page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Authorize access"));
}

async fn guessing_from_many_addresses_is_slowed_by_the_account_bound(backend: Backend) {
    // 3 failures per pair, 12 per account, then one attempt per 5 s: time is a manual clock,
    // moved by hand, so the bound is shown without sleeping.
    let clock = Clock::manual(oauth_provider::state::now());
    let mut config = test_config();
    config.clock = clock.clone();
    let window = Duration::from_secs(900);
    config.limits.login_failures_per_pair = WindowLimit::new(3, window, window);
    config.limits.login_failures_per_account = WindowLimit::new(12, window, window);
    config.limits.login_account_cooldown = Duration::from_secs(5);
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    let mut verified = 0;
    let mut refused = 0;
    // Twenty addresses, three guesses each, all at the same instant.
    for host in 10..30 {
        let attacker = browser_at([127, 0, 0, host]);
        let page = login_page_in(&env, &attacker, &client_id).await;
        for i in 0..3 {
            let resp = login_in(
                &env,
                &attacker,
                &page,
                "alice",
                &format!("guess-{host}-{i}"),
            )
            .await;
            match resp.status() {
                StatusCode::OK => {
                    assert!(resp.text().await.unwrap().contains(LOGIN_FAILED));
                    verified += 1;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(retry_after(&resp) <= 5);
                    assert!(resp.text().await.unwrap().contains("second(s)"));
                    refused += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    // The account's 12, then one paced attempt; the other 47 are refused without hashing.
    assert_eq!((verified, refused), (13, 47));
    // The owner is slowed, not locked: once the cooldown passed, her password passes.
    clock.advance(5);
    let owner = browser_at([127, 0, 0, 3]);
    let page = login_page_in(&env, &owner, &client_id).await;
    let resp = login_in(&env, &owner, &page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Authorize access"));
    // The next guess waits for the next turn.
    let attacker = browser_at([127, 0, 0, 40]);
    let page = login_page_in(&env, &attacker, &client_id).await;
    let resp = login_in(&env, &attacker, &page, "alice", "guess").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    clock.advance(5);
    let resp = login_in(&env, &attacker, &page, "alice", "guess").await;
    assert_eq!(resp.status(), StatusCode::OK);
}
