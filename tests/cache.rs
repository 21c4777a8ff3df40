//! The cache's promises, counted at the authorization server with wiremock's `.expect(n)`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use common::*;
use http::Request;
use serde_json::json;
use tower::ServiceExt;
use tower_introspect::cache::{CacheConfig, CacheStats};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn request(token: &str) -> Request<Body> {
    Request::get("/mcp")
        .header("authorization", bearer(token))
        .body(Body::empty())
        .unwrap()
}

/// Sends one request with `token` through the protected app; its status.
async fn send(app: &Protected, token: &str) -> u16 {
    app.router
        .clone()
        .oneshot(request(token))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sleeps until the wall clock has passed `epoch_secs` by `margin`.
async fn sleep_past(epoch_secs: i64, margin: Duration) {
    let target = UNIX_EPOCH + Duration::from_secs(epoch_secs as u64) + margin;
    if let Ok(wait) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_cause_one_introspection() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(FormParam("token", "herd".into()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("alice", "read"))
                // Long enough that every request arrives while the call is in flight.
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());

    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let router = app.router.clone();
            tokio::spawn(async move { router.oneshot(request("herd")).await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(app.seen.calls(), 1000);
    assert!(
        app.seen
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.as_ref().unwrap().subject() == Some("alice"))
    );
    let stats = app.cache.stats();
    assert_eq!(stats.introspection_calls, 1);
    assert_eq!(stats.hits + stats.misses, 1000);
}

#[tokio::test]
async fn positive_verdict_is_reused_and_counted() {
    let server = MockServer::start().await;
    expect_introspection(&server, "good", active("alice", "read"), 1).await;
    let app = protected_by(&server, CacheConfig::default());
    for _ in 0..5 {
        assert_eq!(send(&app, "good").await, 200);
    }
    let expected = {
        let mut s = CacheStats::default();
        s.hits = 4;
        s.misses = 1;
        s.introspection_calls = 1;
        s
    };
    assert_eq!(app.cache.stats(), expected);
}

#[tokio::test]
async fn negative_verdict_is_reused_within_negative_ttl_and_asked_again_after() {
    let server = MockServer::start().await;
    expect_introspection(&server, "revoked", json!({"active": false}), 2).await;
    let app = protected_by(
        &server,
        CacheConfig::default().negative_ttl(Duration::from_millis(800)),
    );
    for _ in 0..3 {
        assert_eq!(send(&app, "revoked").await, 401);
    }
    assert_eq!(app.cache.stats().negative_hits, 2);
    assert_eq!(app.cache.stats().introspection_calls, 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(send(&app, "revoked").await, 401);
    assert_eq!(app.cache.stats().introspection_calls, 2);
    assert_eq!(app.seen.calls(), 0);
}

#[tokio::test]
async fn positive_entry_ends_at_exp_even_when_max_ttl_is_longer() {
    let server = MockServer::start().await;
    let exp = now() + 2;
    let mut body = active("alice", "read");
    body["exp"] = json!(exp);
    expect_introspection(&server, "short-lived", body, 2).await;
    let app = protected(
        introspector_for(&server)
            .leeway(Duration::ZERO)
            .build()
            .unwrap(),
        CacheConfig::default()
            .max_ttl(Duration::from_secs(3600))
            .leeway(Duration::ZERO),
        |l| l,
    );
    // Before exp: one call, then served from the cache.
    for _ in 0..2 {
        assert_eq!(send(&app, "short-lived").await, 200);
    }
    assert_eq!(app.cache.stats().introspection_calls, 1);

    sleep_past(exp, Duration::from_millis(1100)).await;
    // After exp: the entry is gone, the server is asked again, and the answer is now expired.
    assert_eq!(send(&app, "short-lived").await, 401);
    assert_eq!(app.cache.stats().introspection_calls, 2);
    assert_eq!(app.seen.calls(), 2);
}

#[tokio::test]
async fn leeway_ends_entries_early() {
    let server = MockServer::start().await;
    // exp is 30 s away but within the 60 s leeway: valid, yet never cached.
    let mut body = active("alice", "read");
    body["exp"] = json!(now() + 30);
    expect_introspection(&server, "near-expiry", body, 3).await;
    let app = protected_by(&server, CacheConfig::default());
    for _ in 0..3 {
        assert_eq!(send(&app, "near-expiry").await, 200);
    }
}

#[tokio::test]
async fn server_failures_are_not_cached() {
    let server = MockServer::start().await;
    // First a 500, then garbage, then a timeout, then a good answer: each request asks again.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("alice", "read"))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    expect_introspection(&server, "flaky", active("alice", "read"), 1).await;
    let app = protected(
        introspector_for(&server)
            .request_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
        CacheConfig::default(),
        |l| l,
    );
    for expected in [503, 503, 503, 200, 200] {
        assert_eq!(send(&app, "flaky").await, expected);
    }
    let stats = app.cache.stats();
    assert_eq!(stats.introspection_calls, 4);
    assert_eq!(stats.server_errors, 3);
    assert_eq!(stats.hits, 1);
    assert_eq!(app.seen.calls(), 2);
}

#[tokio::test]
async fn invalidate_forgets_a_token() {
    let server = MockServer::start().await;
    expect_introspection(&server, "tok", active("alice", "read"), 2).await;
    expect_introspection(&server, "other", active("bob", "read"), 2).await;
    let app = protected_by(&server, CacheConfig::default());
    for token in ["tok", "other", "tok", "other"] {
        assert_eq!(send(&app, token).await, 200);
    }
    assert_eq!(app.cache.stats().introspection_calls, 2);
    app.cache.invalidate("tok");
    assert_eq!(send(&app, "tok").await, 200);
    assert_eq!(send(&app, "other").await, 200);
    assert_eq!(
        app.cache.stats().introspection_calls,
        3,
        "only the invalidated token asks again"
    );
    app.cache.invalidate_all();
    assert_eq!(send(&app, "other").await, 200);
    assert_eq!(app.cache.stats().introspection_calls, 4);
}

#[tokio::test]
async fn capacity_bounds_the_entries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(active("u", "read")))
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default().max_capacity(10));
    for i in 0..50 {
        assert_eq!(send(&app, &format!("t{i}")).await, 200);
    }
    app.cache.run_pending_tasks();
    assert!(app.cache.entry_count() <= 10, "{}", app.cache.entry_count());
}

#[tokio::test]
async fn distinct_tokens_are_introspected_separately() {
    let server = MockServer::start().await;
    expect_introspection(&server, "a", active("alice", "read"), 1).await;
    expect_introspection(&server, "b", active("bob", "write"), 1).await;
    let app = protected_by(&server, CacheConfig::default());
    for (token, sub) in [("a", "alice"), ("b", "bob"), ("a", "alice"), ("b", "bob")] {
        assert_eq!(send(&app, token).await, 200);
        assert_eq!(app.seen.last().unwrap().subject(), Some(sub));
    }
}

#[tokio::test]
async fn byte_bound_limits_memory_not_count() {
    let server = MockServer::start().await;
    let mut big = active("u", "read");
    big["padding"] = json!("x".repeat(2000));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(big))
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default().max_bytes(20_000));
    for i in 0..40 {
        assert_eq!(send(&app, &format!("t{i}")).await, 200);
    }
    app.cache.run_pending_tasks();
    // Each entry weighs over 2 KB: at most 9 fit in 20 KB, whatever max_capacity would allow.
    let entries = app.cache.entry_count();
    assert!((1..=9).contains(&entries), "{entries} entries");
}

/// A verifier standing in for an authorization server that answers only when released, so a test
/// can act while a call is in flight.
struct GatedVerifier {
    started: tokio::sync::mpsc::UnboundedSender<String>,
    release: tokio::sync::Semaphore,
}

impl GatedVerifier {
    fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (started, calls) = tokio::sync::mpsc::unbounded_channel();
        let verifier = Self {
            started,
            release: tokio::sync::Semaphore::new(0),
        };
        (verifier, calls)
    }
}

impl tower_introspect::TokenVerifier for GatedVerifier {
    async fn verify(
        &self,
        token: &str,
    ) -> Result<tower_introspect::Principal, tower_introspect::VerifyError> {
        self.started.send(token.to_owned()).unwrap();
        self.release.acquire().await.unwrap().forget();
        let mut claims = tower_introspect::claims::TokenClaims::default();
        claims.subject = Some(token.to_owned());
        Ok(tower_introspect::Principal::new(claims))
    }
}

/// The next call the gated verifier saw start, failing (not hanging) when none comes.
async fn next_call(calls: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("a call should have started")
        .unwrap()
}

/// Whether no call has started (and none is about to: every task has run until it waits).
async fn no_call_started(calls: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> bool {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    calls.try_recv().is_err()
}

#[tokio::test]
async fn invalidate_during_an_introspection_in_flight_wins() {
    use tower_introspect::TokenVerifier;
    use tower_introspect::cache::CachedVerifier;
    let (verifier, mut calls) = GatedVerifier::new();
    let cache = CachedVerifier::new(verifier, CacheConfig::default());

    // A request starts the call for "tok"; the server has not answered yet.
    let before = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");

    // The token is revoked and invalidated while its call is in flight.
    cache.invalidate("tok");

    // A request after the invalidation does not wait for the old call: it starts a new one.
    let after = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");

    // The old call ends (semaphore permits are served in order): its requester gets the answer,
    // but it is not cached.
    cache.inner().release.add_permits(1);
    assert!(before.await.unwrap().is_ok());
    cache.run_pending_tasks();
    assert_eq!(
        cache.entry_count(),
        0,
        "the pre-invalidation answer was cached"
    );

    // The new call's answer is cached as usual.
    cache.inner().release.add_permits(1);
    assert!(after.await.unwrap().is_ok());
    assert!(cache.verify("tok").await.is_ok());
    assert!(no_call_started(&mut calls).await, "served from the cache");
    let stats = cache.stats();
    assert_eq!((stats.introspection_calls, stats.hits), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn invalidate_all_during_introspections_in_flight_wins() {
    use tower_introspect::TokenVerifier;
    use tower_introspect::cache::CachedVerifier;
    let (verifier, mut calls) = GatedVerifier::new();
    let cache = CachedVerifier::new(verifier, CacheConfig::default());

    let in_flight: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|token| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.verify(token).await })
        })
        .collect();
    let mut started = [next_call(&mut calls).await, next_call(&mut calls).await];
    started.sort();
    assert_eq!(started, ["a", "b"]);

    cache.invalidate_all();
    cache.inner().release.add_permits(2);
    for task in in_flight {
        assert!(task.await.unwrap().is_ok());
    }
    cache.run_pending_tasks();
    assert_eq!(
        cache.entry_count(),
        0,
        "answers from before invalidate_all were cached"
    );

    // Both tokens are asked about again.
    cache.inner().release.add_permits(2);
    assert!(cache.verify("a").await.is_ok());
    assert!(cache.verify("b").await.is_ok());
    assert_eq!(cache.stats().introspection_calls, 4);
}

#[tokio::test]
async fn an_abandoned_introspection_leaves_no_flight_behind() {
    use tower_introspect::TokenVerifier;
    use tower_introspect::cache::CachedVerifier;
    let (verifier, mut calls) = GatedVerifier::new();
    let cache = CachedVerifier::new(verifier, CacheConfig::default());

    // The only requester gives up (client gone) while the call is in flight.
    let abandoned = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());

    // The next request starts a fresh call instead of waiting for the abandoned one forever.
    cache.inner().release.add_permits(1);
    let fresh = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");
    assert!(fresh.await.unwrap().is_ok());
}

/// A verifier that knows some verdicts at once and counts the calls of `verify`.
#[derive(Default)]
struct ReadyVerdicts {
    verify_calls: std::sync::atomic::AtomicU64,
}

impl tower_introspect::TokenVerifier for ReadyVerdicts {
    async fn verify(
        &self,
        _token: &str,
    ) -> Result<tower_introspect::Principal, tower_introspect::VerifyError> {
        self.verify_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(tower_introspect::error::InvalidToken::Inactive.into())
    }

    fn verify_cached(
        &self,
        token: &str,
    ) -> Option<Result<tower_introspect::Principal, tower_introspect::VerifyError>> {
        match token {
            "ready" => Some(Ok(tower_introspect::Principal::new(
                serde_json::from_value::<tower_introspect::introspection::IntrospectionResponse>(
                    active("alice", "read"),
                )
                .unwrap()
                .into(),
            ))),
            "ready-but-revoked" => {
                Some(Err(tower_introspect::error::InvalidToken::Inactive.into()))
            }
            _ => None,
        }
    }
}

#[tokio::test]
async fn a_verdict_known_at_once_is_applied_without_calling_verify() {
    let verifier = std::sync::Arc::new(ReadyVerdicts::default());
    let seen = Seen::default();
    let app = recording_app(&seen).layer(tower_introspect::BearerAuthLayer::new(verifier.clone()));
    let status = |token: &'static str| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request(token)).await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), challenge)
        }
    };

    assert_eq!(status("ready").await, (200, None));
    assert_eq!(seen.calls(), 1);
    assert_eq!(seen.last().unwrap().subject(), Some("alice"));
    assert_eq!(
        status("ready-but-revoked").await,
        (
            401,
            Some(
                r#"Bearer error="invalid_token", error_description="The access token is not active""#
                    .to_owned()
            )
        )
    );
    assert_eq!(
        verifier
            .verify_calls
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "known verdicts never reach verify"
    );
    // Anything else is verified as before.
    assert_eq!(status("unknown").await.0, 401);
    assert_eq!(
        verifier
            .verify_calls
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn a_cache_hit_hands_the_handler_the_principal_the_miss_did() {
    let server = MockServer::start().await;
    expect_introspection(&server, "good", active("alice", "read write"), 1).await;
    let app = protected_by(&server, CacheConfig::default());
    assert_eq!(send(&app, "good").await, 200);
    let from_miss = app.seen.last().unwrap();
    assert_eq!(send(&app, "good").await, 200);
    let from_hit = app.seen.last().unwrap();
    assert_eq!(from_hit, from_miss);
    assert_eq!(from_hit.subject(), Some("alice"));
    assert!(from_hit.satisfies(&["read", "write"]));
    assert_eq!(app.cache.stats().hits, 1);
    assert_eq!(app.cache.stats().introspection_calls, 1);
}

/// An active answer for `sub` issued to `client_id`.
fn active_for_client(sub: &str, client_id: &str) -> serde_json::Value {
    let mut body = active(sub, "read");
    body["client_id"] = json!(client_id);
    body
}

#[tokio::test]
async fn invalidate_subject_forgets_only_that_subjects_verdicts() {
    let server = MockServer::start().await;
    // Each of alice's tokens is asked about twice (before and after); the others once.
    expect_introspection(&server, "alice-1", active("alice", "read"), 2).await;
    expect_introspection(&server, "alice-2", active("alice", "read"), 2).await;
    expect_introspection(&server, "bob-1", active("bob", "read"), 1).await;
    expect_introspection(&server, "gone", json!({"active": false}), 1).await;
    let app = protected_by(&server, CacheConfig::default());
    for token in ["alice-1", "alice-2", "bob-1"] {
        assert_eq!(send(&app, token).await, 200);
    }
    assert_eq!(send(&app, "gone").await, 401);
    assert_eq!(app.cache.stats().introspection_calls, 4);

    // Another issuer's alice is someone else: nothing goes.
    app.cache
        .invalidate_subject("https://other-as.example", "alice");
    for token in ["alice-1", "alice-2", "bob-1"] {
        assert_eq!(send(&app, token).await, 200);
    }
    assert_eq!(app.cache.stats().introspection_calls, 4);

    app.cache.invalidate_subject(ISSUER, "alice");
    for token in ["alice-1", "alice-2", "bob-1", "alice-1"] {
        assert_eq!(send(&app, token).await, 200);
    }
    assert_eq!(send(&app, "gone").await, 401);
    let stats = app.cache.stats();
    assert_eq!(
        (stats.introspection_calls, stats.negative_hits),
        (6, 1),
        "only alice's two tokens are asked about again; the negative entry stays: {stats:?}"
    );
    app.cache.run_pending_tasks();
    assert_eq!(app.cache.entry_count(), 4);
}

#[tokio::test]
async fn invalidate_client_forgets_only_that_clients_verdicts() {
    let server = MockServer::start().await;
    expect_introspection(&server, "c1-alice", active_for_client("alice", "c1"), 2).await;
    expect_introspection(&server, "c1-bob", active_for_client("bob", "c1"), 2).await;
    expect_introspection(&server, "c2-alice", active_for_client("alice", "c2"), 1).await;
    let app = protected_by(&server, CacheConfig::default());
    let tokens = ["c1-alice", "c1-bob", "c2-alice"];
    for token in tokens {
        assert_eq!(send(&app, token).await, 200);
    }
    app.cache.invalidate_client("c1");
    for token in tokens.into_iter().chain(tokens) {
        assert_eq!(send(&app, token).await, 200);
    }
    let stats = app.cache.stats();
    assert_eq!(
        (stats.introspection_calls, stats.hits),
        (5, 4),
        "only c1's two tokens are asked about again: {stats:?}"
    );
}

#[tokio::test]
async fn invalidate_subject_during_an_introspection_in_flight_wins() {
    use tower_introspect::TokenVerifier;
    use tower_introspect::cache::CachedVerifier;
    let (verifier, mut calls) = GatedVerifier::new();
    let cache = CachedVerifier::new(verifier, CacheConfig::default());

    // The call for "tok" (whose subject is "tok") is in flight when its subject is revoked.
    let before = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");
    cache.invalidate_subject("https://as.example", "tok");

    // A request after the invalidation does not wait for the old call.
    let after = tokio::spawn({
        let cache = cache.clone();
        async move { cache.verify("tok").await }
    });
    assert_eq!(next_call(&mut calls).await, "tok");

    cache.inner().release.add_permits(1);
    assert!(before.await.unwrap().is_ok());
    cache.run_pending_tasks();
    assert_eq!(
        cache.entry_count(),
        0,
        "the pre-revocation answer was cached"
    );
    cache.inner().release.add_permits(1);
    assert!(after.await.unwrap().is_ok());
    assert!(cache.verify("tok").await.is_ok());
    assert!(no_call_started(&mut calls).await, "served from the cache");
    assert_eq!(cache.stats().introspection_calls, 2);
}
