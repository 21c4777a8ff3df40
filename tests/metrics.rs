//! The metrics of the outage paths (feature `metrics`): a `429` counted once as a call and then as
//! held-back requests, a pending discovery that sends nothing, a stale serve, the in-flight gauge.
//!
//! Each test records into a Prometheus recorder of its own, installed for its thread only; the
//! tests run on tokio's current-thread runtime, so everything they drive records there.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tower_introspect::cache::CacheConfig;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The value of the sample `series` (name and labels as rendered) in `recorder`'s scrape; `None`
/// when it was never recorded.
fn sample(recorder: &PrometheusRecorder, series: &str) -> Option<f64> {
    recorder.handle().render().lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a number"))
    })
}

#[tokio::test]
async fn a_429_is_one_call_then_held_back_requests_that_send_nothing() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .expect(1)
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());
    for token in ["tok", "other", "third"] {
        assert_eq!(app.send(token).await.0, 503);
    }
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_requests_total{outcome="unavailable",reason="throttled"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_introspection_calls_total{outcome="throttled"}"#
        ),
        Some(1.0),
        "only the call that got the 429 was sent"
    );
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_cache_lookups_total{result="miss"}"#
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_pending_discovery_is_unavailable_and_sends_no_introspection() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = MockServer::start().await; // No metadata: discovery fails.
    let app = protected(lazy_introspector(&server), CacheConfig::default(), |l| l);
    assert_eq!(app.send("tok").await.0, 503);
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_requests_total{outcome="unavailable",reason="discovery"}"#
        ),
        Some(1.0)
    );
    assert!(
        !recorder
            .handle()
            .render()
            .contains("tower_introspect_introspection_calls_total"),
        "no introspection request was sent"
    );
}

#[tokio::test]
async fn a_stale_serve_is_counted_as_accepted_and_stale() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = answers_once_then_down(active("alice", "read")).await;
    let app = protected_by(
        &server,
        CacheConfig::default()
            .max_ttl(Duration::from_secs(1))
            .stale_if_error(Duration::from_secs(60)),
    );
    assert_eq!(app.send("tok").await.0, 200);
    // Real time: the cache's entries end on the wall clock. The grace is a minute, so a slow
    // machine cannot push this past it.
    let ended = SystemTime::now() + Duration::from_millis(1_200);
    while SystemTime::now() < ended {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.send("tok").await.0, 200);
    assert_eq!(
        sample(&recorder, "tower_introspect_stale_serves_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_requests_total{outcome="accepted"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &recorder,
            r#"tower_introspect_introspection_calls_total{outcome="status"}"#
        ),
        Some(1.0),
        "the renewal was tried and failed"
    );
}

#[tokio::test]
async fn the_in_flight_gauge_counts_calls_under_way() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("alice", "read"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());
    let gauge = "tower_introspect_introspection_in_flight";
    let requests = async {
        let (first, second) = tokio::join!(app.send("one"), app.send("two"));
        (first.0, second.0)
    };
    let observe = async {
        // Until both calls have reached the server, then what the gauge says.
        while server.received_requests().await.unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sample(&recorder, gauge)
    };
    let ((first, second), during) = tokio::join!(requests, observe);
    assert_eq!((first, second), (200, 200));
    assert_eq!(during, Some(2.0), "two calls under way");
    assert_eq!(sample(&recorder, gauge), Some(0.0), "both ended");
}
