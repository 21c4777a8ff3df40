//! The demo MCP server's `/metrics`: after a scripted series of requests, the Prometheus scrape
//! shows exactly what happened, and nothing a caller chose.
//!
//! Its own test binary: the `metrics` recorder is global to the process, so this binary holds one
//! test and nothing else records into it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_introspect_demo::mcp_server::McpServer;
use tower_introspect_demo::metrics_endpoint::MetricsEndpoint;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{FormParam, ISSUER, client, demo_auth, expect_introspection, install_crypto, now};

fn active(sub: &str, resource: &str) -> Value {
    json!({
        "active": true, "sub": sub, "client_id": "client-1", "scope": "read",
        "aud": resource, "iss": ISSUER, "exp": now() + 3600,
    })
}

/// One sample of the scrape: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the text exposition format into `series → value` (comments skipped).
fn parse(scrape: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label=value");
                (key.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect();
        samples.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    samples
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no sample {key:?} in {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_scripted_request() {
    install_crypto();
    // Before anything records.
    let metrics = MetricsEndpoint::start(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let authorization_server = MockServer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    expect_introspection(
        &authorization_server,
        "alice",
        active("alice", &resource),
        1,
    )
    .await;
    expect_introspection(
        &authorization_server,
        "revoked",
        json!({"active": false}),
        1,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(FormParam("token", "broken".to_owned()))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&authorization_server)
        .await;
    // Answers after a while, so that a second request for it arrives while the first waits.
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(FormParam("token", "slow".to_owned()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("bob", &resource))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&authorization_server)
        .await;
    let auth = demo_auth(&authorization_server);
    let server = McpServer::start(listener, &auth).await.unwrap();

    let http = client();
    let send = |authorization: Option<&'static str>| {
        let request = http
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_user_profile","arguments":{}}}"#,
            );
        let request = match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // Anonymous: the demo lets tokenless requests reach the scope layer, which challenges this
    // tool call.
    assert_eq!(send(None).await, 401);
    // Accepted three times: one introspection, then two hits.
    for _ in 0..3 {
        assert_ne!(send(Some("Bearer alice")).await, 401);
    }
    // Refused twice: one introspection, then a negative hit.
    for _ in 0..2 {
        assert_eq!(send(Some("Bearer revoked")).await, 401);
    }
    // A header that breaks RFC 6750: refused before any verification.
    assert_eq!(send(Some("Bearer a b")).await, 400);
    // The authorization server fails: 503, never cached.
    assert_eq!(send(Some("Bearer broken")).await, 503);
    // Two requests for one new token: the second waits for the first one's call.
    let first = tokio::spawn(send(Some("Bearer slow")));
    while !authorization_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains("token=slow"))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = send(Some("Bearer slow")).await;
    assert_ne!(first.await.unwrap(), 401);
    assert_ne!(second, 401);

    let scrape = http
        .get(&metrics.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse(&scrape);
    let requests = "tower_introspect_requests_total";
    assert_eq!(value(&samples, requests, &[("outcome", "anonymous")]), 1.0);
    assert_eq!(value(&samples, requests, &[("outcome", "accepted")]), 5.0);
    let rejected = |reason| [("outcome", "rejected"), ("reason", reason)];
    assert_eq!(value(&samples, requests, &rejected("inactive")), 2.0);
    assert_eq!(
        value(&samples, requests, &rejected("malformed_request")),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("outcome", "unavailable"), ("reason", "status")]
        ),
        1.0
    );

    let lookups = "tower_introspect_cache_lookups_total";
    for (result, count) in [
        ("hit", 2.0),
        ("negative_hit", 1.0),
        ("miss", 4.0),
        ("coalesced", 1.0),
    ] {
        assert_eq!(
            value(&samples, lookups, &[("result", result)]),
            count,
            "{result}"
        );
    }

    let calls = "tower_introspect_introspection_calls_total";
    for (outcome, count) in [("active", 2.0), ("inactive", 1.0), ("status", 1.0)] {
        assert_eq!(
            value(&samples, calls, &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
        let observed = "tower_introspect_introspection_duration_seconds_count";
        assert_eq!(
            value(&samples, observed, &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
    }
    // The slow call's two seconds fall in the histogram's (1, 2.5] bucket, not below.
    let buckets = "tower_introspect_introspection_duration_seconds_bucket";
    assert_eq!(
        value(&samples, buckets, &[("outcome", "active"), ("le", "1")]),
        1.0
    );
    assert_eq!(
        value(&samples, buckets, &[("outcome", "active"), ("le", "2.5")]),
        2.0
    );
    assert_eq!(
        value(&samples, "tower_introspect_introspection_in_flight", &[]),
        0.0,
        "every call has ended"
    );

    // No token, subject or client id reached a label.
    for secret in [
        "alice",
        "revoked",
        "broken",
        "slow",
        "bob",
        "client-1",
        "rs-client",
    ] {
        assert!(
            !scrape.contains(secret),
            "{secret:?} appears in the scrape:\n{scrape}"
        );
    }
    // The `expect` of each introspection mock is checked when the server drops.
}
