//! A service whose introspection endpoint is discovered lazily starts while its authorization
//! server is down, answers 503 until discovery succeeds, and retries discovery with backoff, one
//! attempt at a time.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tower_introspect::Introspector;
use tower_introspect::cache::CacheConfig;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn lazy_app(server: &MockServer) -> Protected {
    let introspector = lazy_introspector(server);
    assert!(introspector.endpoint().is_none());
    protected(introspector, CacheConfig::default(), |l| l)
}

/// Mounts the metadata document (answered after `delay`) and the introspection endpoint.
async fn authorization_server_up(server: &MockServer, delay: Duration) {
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "issuer": server.uri(),
                    "introspection_endpoint": format!("{}/introspect", server.uri()),
                }))
                .set_delay(delay),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ResponseTemplate::new(200).set_body_json(active("alice", "read")))
        .mount(server)
        .await;
}

/// Requests the server received, by method.
async fn received(server: &MockServer, verb: &str) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.method.as_str() == verb)
        .count()
}

#[tokio::test]
async fn starts_with_the_authorization_server_down_then_serves_once_it_is_up() {
    // Nothing mounted: every metadata location answers 404.
    let server = MockServer::start().await;
    let app = lazy_app(&server);

    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    // Both metadata locations (RFC 8414, then OpenID) were tried once.
    assert_eq!(received(&server, "GET").await, 2);

    // The server comes up, but the next attempt waits for its backoff (1 s): no new attempt.
    authorization_server_up(&server, Duration::ZERO).await;
    assert_eq!(app.send("tok").await, (503, Some("5".into())));
    assert_eq!(
        received(&server, "GET").await,
        2,
        "retried before the backoff"
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1100)).await;
    tokio::time::resume();
    assert_eq!(app.send("tok").await, (200, None));
    assert_eq!(app.seen.last().unwrap().subject(), Some("alice"));
    assert_eq!(received(&server, "GET").await, 3);
    assert_eq!(received(&server, "POST").await, 1);
    assert_eq!(
        app.cache.inner().endpoint().map(|u| u.as_str().to_owned()),
        Some(format!("{}/introspect", server.uri()))
    );

    // Discovered once for good.
    assert_eq!(app.send("tok2").await.0, 200);
    assert_eq!(received(&server, "GET").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_discovery_attempt() {
    let server = MockServer::start().await;
    authorization_server_up(&server, Duration::from_millis(300)).await;
    let app = lazy_app(&server);
    // Distinct tokens, so that the cache's coalescing does not hide the attempts.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.send(&format!("t{i}")).await.0 })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(received(&server, "GET").await, 1);
    assert_eq!(received(&server, "POST").await, 20);
}

#[test]
fn a_lazy_issuer_must_follow_the_https_rule() {
    install_crypto();
    let refused = Introspector::builder()
        .discover_lazily("http://as.example")
        .build();
    assert!(refused.is_err());
    assert!(
        Introspector::builder()
            .discover_lazily("https://as.example")
            .build()
            .is_ok()
    );
}
