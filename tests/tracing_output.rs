//! No raw token ever reaches the logs, whatever the outcome, at the most verbose level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use common::*;
use http::Request;
use serde_json::json;
use tower::ServiceExt;
use tower_introspect::cache::CacheConfig;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_never_appear_in_trace_output() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        // Everything this crate emits, at its most verbose.
        .with_env_filter("tower_introspect=trace")
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let good = "GoodSecretToken-AAAA1111";
    let inactive = "InactiveSecretToken-BBBB2222";
    let failing = "FailingSecretToken-CCCC3333";
    let slow = "SlowSecretToken-DDDD4444";
    let malformed = "MalformedSecret Token-EEEE5555";
    expect_introspection(&server, good, active("alice", "read"), 1).await;
    expect_introspection(&server, inactive, json!({"active": false}), 1).await;
    Mock::given(method("POST"))
        .and(FormParam("token", failing.into()))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(FormParam("token", slow.into()))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let app = protected(
        introspector_for(&server)
            .request_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
        CacheConfig::default(),
        |l| l,
    );

    let mut statuses = Vec::new();
    for token in [good, good, inactive, inactive, failing, slow, malformed] {
        let request = Request::get("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        statuses.push(
            app.router
                .clone()
                .oneshot(request)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 401, 401, 503, 503, 400]);

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The layer did log, so the absence below means something.
    assert!(output.contains("bearer token accepted"), "{output}");
    assert!(output.contains("bearer token rejected"), "{output}");
    assert!(
        output.contains("token verification unavailable"),
        "{output}"
    );
    for token in [good, inactive, failing, slow, malformed] {
        for fragment in token.split(['-', ' ']) {
            assert!(
                !output.contains(fragment),
                "{fragment:?} leaked into:\n{output}"
            );
        }
    }
}

#[tokio::test]
async fn each_verification_has_one_span_with_outcome_cache_and_latency() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tower_introspect=debug")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let good = "GoodSecretToken-FFFF6666";
    let inactive = "InactiveSecretToken-GGGG7777";
    let failing = "FailingSecretToken-HHHH8888";
    expect_introspection(&server, good, active("alice", "read"), 1).await;
    expect_introspection(&server, inactive, json!({"active": false}), 1).await;
    Mock::given(method("POST"))
        .and(FormParam("token", failing.into()))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let app = protected_by(&server, CacheConfig::default());
    let mut statuses = Vec::new();
    for token in [good, good, inactive, inactive, failing] {
        let request = Request::get("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    // A request refused before verification opens no verification span.
    let request = Request::get("/mcp")
        .header("authorization", "Bearer two words")
        .body(Body::empty())
        .unwrap();
    statuses.push(
        app.router
            .clone()
            .oneshot(request)
            .await
            .unwrap()
            .status()
            .as_u16(),
    );
    assert_eq!(statuses, [200, 200, 401, 401, 503, 400]);

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let closed: Vec<(&str, &str)> = output
        .lines()
        .filter(|line| line.contains("verify_token{") && line.ends_with("close"))
        .map(|line| {
            let fields = line.split_once("verify_token{").unwrap().1;
            let fields = fields.split_once('}').unwrap().0;
            let value = |name: &str| {
                fields
                    .split(' ')
                    .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {name} in {line}"))
            };
            assert!(value("latency_us").parse::<u64>().is_ok(), "{line}");
            if value("outcome") == "\"accepted\"" {
                assert_eq!(value("verifier"), "\"introspection\"", "{line}");
            } else {
                assert!(!fields.contains("verifier="), "{line}");
            }
            (value("outcome"), value("cache"))
        })
        .collect();
    assert_eq!(
        closed,
        [
            ("\"accepted\"", "\"miss\""),
            ("\"accepted\"", "\"hit\""),
            ("\"rejected\"", "\"miss\""),
            ("\"rejected\"", "\"hit\""),
            ("\"unavailable\"", "\"miss\""),
        ],
        "{output}"
    );
    // The layer's events are inside the span.
    for event in [
        "bearer token accepted",
        "bearer token rejected",
        "token verification unavailable",
    ] {
        assert!(
            output
                .lines()
                .any(|line| line.contains("verify_token") && line.contains(event)),
            "{event:?} outside the span:\n{output}"
        );
    }
    for token in [good, inactive, failing] {
        for fragment in token.split('-') {
            assert!(
                !output.contains(fragment),
                "{fragment:?} leaked into:\n{output}"
            );
        }
    }
}
