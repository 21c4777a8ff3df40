//! The outage policy: stale-if-error within its grace only, and an authorization server's `429`
//! with `Retry-After` honoured (no call before it, 503 with that `Retry-After`).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;
use tower_introspect::cache::CacheConfig;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Sleeps (real time: the cache's entries end on the wall clock) until `deadline` has passed.
async fn sleep_until(deadline: SystemTime) {
    if let Ok(wait) = deadline.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

fn epoch(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

#[tokio::test]
async fn ended_verdict_is_served_within_grace_while_the_server_is_down() {
    let server = answers_once_then_down(active("alice", "read")).await;
    let app = protected_by(
        &server,
        CacheConfig::default()
            .max_ttl(Duration::from_secs(1))
            .stale_if_error(Duration::from_secs(60)),
    );
    assert_eq!(app.send("tok").await, (200, None));
    sleep_until(SystemTime::now() + Duration::from_millis(1200)).await;

    // The verdict has ended; the server is down: the ended verdict is served, and counted.
    assert_eq!(app.send("tok").await, (200, None));
    assert_eq!(app.seen.last().unwrap().subject(), Some("alice"));
    let stats = app.cache.stats();
    assert_eq!(
        (
            stats.introspection_calls,
            stats.server_errors,
            stats.stale_serves
        ),
        (2, 1, 1),
        "{stats:?}"
    );
    // Every request asks the server again (it may be back), none is a fresh hit.
    assert_eq!(app.send("tok").await, (200, None));
    let stats = app.cache.stats();
    assert_eq!(
        (stats.introspection_calls, stats.stale_serves, stats.hits),
        (3, 2, 0)
    );

    // A token never seen is not helped, and an invalidated verdict is gone for good.
    assert_eq!(app.send("other").await, (503, Some("5".into())));
    app.cache.invalidate_subject(ISSUER, "alice");
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    assert_eq!(app.cache.stats().stale_serves, 2);
}

#[tokio::test]
async fn without_stale_if_error_an_ended_verdict_is_not_served() {
    let server = answers_once_then_down(active("alice", "read")).await;
    let app = protected_by(
        &server,
        CacheConfig::default().max_ttl(Duration::from_secs(1)),
    );
    assert_eq!(app.send("tok").await.0, 200);
    sleep_until(SystemTime::now() + Duration::from_millis(1200)).await;
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    assert_eq!(app.cache.stats().stale_serves, 0);
}

#[tokio::test]
async fn ended_verdict_is_refused_after_grace() {
    let server = answers_once_then_down(active("alice", "read")).await;
    let app = protected_by(
        &server,
        CacheConfig::default()
            .max_ttl(Duration::from_secs(1))
            .stale_if_error(Duration::from_secs(1)),
    );
    assert_eq!(app.send("tok").await.0, 200);
    // Fresh for 1 s, then 1 s of grace: past both.
    sleep_until(SystemTime::now() + Duration::from_millis(2300)).await;
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    let stats = app.cache.stats();
    assert_eq!(
        (stats.server_errors, stats.stale_serves),
        (1, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn ended_verdict_is_refused_after_the_tokens_exp() {
    let mut body = active("alice", "read");
    let exp = now() + 2;
    body["exp"] = json!(exp);
    let server = answers_once_then_down(body).await;
    let app = protected(
        introspector_for(&server)
            .leeway(Duration::ZERO)
            .build()
            .unwrap(),
        CacheConfig::default()
            .leeway(Duration::ZERO)
            .stale_if_error(Duration::from_secs(3600)),
        |l| l,
    );
    assert_eq!(app.send("tok").await.0, 200);
    // Well within the grace, but the token itself has expired.
    sleep_until(epoch(exp) + Duration::from_millis(200)).await;
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    let stats = app.cache.stats();
    assert_eq!(
        (stats.server_errors, stats.stale_serves),
        (1, 0),
        "{stats:?}"
    );
}

/// How many introspection requests reached the server.
async fn calls_received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_429_holds_calls_and_a_probe_a_second_later_ends_the_hold_early() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(active("alice", "read")))
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());
    // The server asks us to slow down: the client is told when to come back.
    assert_eq!(app.send("tok").await, (503, Some("30".into())));
    assert_eq!(calls_received(&server).await, 1);

    // From now on, time is virtual: within the first second no request reaches the server,
    // whatever the token, and each is told the remaining wait (rounded up).
    tokio::time::pause();
    for token in ["tok", "other", "tok"] {
        assert_eq!(app.send(token).await, (503, Some("30".into())));
    }
    tokio::time::advance(Duration::from_millis(900)).await;
    assert_eq!(app.send("tok").await, (503, Some("30".into())));
    assert_eq!(calls_received(&server).await, 1, "no probe within a second");
    let stats = app.cache.stats();
    assert_eq!(stats.server_errors, 5, "{stats:?}");

    // A second after the 429, one request goes through as a probe; the server answers, and the
    // hold is over for every token (not after the full 30 s).
    tokio::time::advance(Duration::from_millis(200)).await;
    tokio::time::resume();
    assert_eq!(app.send("tok").await, (200, None));
    assert_eq!(calls_received(&server).await, 2);
    assert_eq!(app.send("other").await, (200, None));
    assert_eq!(calls_received(&server).await, 3);
}

#[tokio::test]
async fn a_429_retry_after_is_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "86400"))
        .expect(2)
        .mount(&server)
        .await;
    let app = protected(
        introspector_for(&server)
            .max_retry_after(Duration::from_secs(10))
            .build()
            .unwrap(),
        CacheConfig::default(),
        |l| l,
    );
    assert_eq!(app.send("tok").await, (503, Some("10".into())));
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(900)).await;
    assert_eq!(app.send("tok").await, (503, Some("10".into())));
    // The probe a second later meets another 429: the hold starts again, capped again.
    tokio::time::advance(Duration::from_millis(200)).await;
    tokio::time::resume();
    assert_eq!(app.send("tok").await, (503, Some("10".into())));
    assert_eq!(app.send("tok").await, (503, Some("10".into())));
    assert_eq!(calls_received(&server).await, 2);
}

#[tokio::test]
async fn a_429_without_retry_after_holds_calls_for_the_default() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .expect(1)
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    assert_eq!(app.send("tok").await.0, 503);
    assert_eq!(calls_received(&server).await, 1);
}
