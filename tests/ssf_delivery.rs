//! Shared Signals between the real parts: the reference provider's transmitter pushing to the
//! library's receiver in front of a real MCP server. While the receiver's push endpoint cannot be
//! reached, revoked tokens keep working from the cache (the provider keeps failing and retrying);
//! once it is back, every queued event arrives exactly once and ends exactly its verdict.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use oauth_provider::{
    Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, DEMO_SSF_RECEIVER_ID,
    DEMO_SSF_RECEIVER_SECRET, Server,
};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_introspect_demo::confirmation::RequestStates;
use tower_introspect_demo::mcp_server::{AuthSettings, DpopOptions, app_full};
use tower_introspect_demo::oauth_client;
use tower_introspect_demo::ssf_stream::{self, PUSH_PATH, SsfClient};

const TOKENS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it holds; panics with `what` after [`DEADLINE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_while_the_receiver_is_unreachable_arrive_when_it_is_back() {
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The MCP server: the demo's app (introspection, verdict cache) on loopback.
    let mcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());
    let mut config = Config::demo().with_resource(&resource);
    config.ssf.allow_http_loopback = true;
    config.ssf.retry_initial = Duration::from_millis(20);
    config.ssf.retry_max = Duration::from_millis(200);
    config.ssf.poll_interval = Duration::from_millis(20);
    let provider = Server::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let issuer = provider.issuer().to_owned();
    let auth = AuthSettings::introspection(
        &issuer,
        DEMO_RESOURCE_SERVER_ID,
        DEMO_RESOURCE_SERVER_SECRET,
    );
    let (router, cache) = app_full(
        &resource,
        &auth,
        RequestStates::random(),
        &DpopOptions::default(),
    )
    .await
    .unwrap();
    let mcp = tokio::spawn(async move { axum::serve(mcp_listener, router).await });
    let endpoint = resource.clone();

    // The push endpoint lives on its own loopback address, reserved and then left unbound: every
    // push is refused at connect time. Only this test binds 127.0.0.9, so nobody else takes the
    // port meanwhile.
    let reserved = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 9), 0))
        .await
        .unwrap();
    let push_addr: SocketAddr = reserved.local_addr().unwrap();
    drop(reserved);
    let stream = ssf_stream::subscribe(
        &issuer,
        &SsfClient {
            client_id: DEMO_SSF_RECEIVER_ID.to_owned(),
            client_secret: DEMO_SSF_RECEIVER_SECRET.to_owned(),
        },
        &format!("http://{push_addr}{PUSH_PATH}"),
    )
    .await
    .unwrap();
    let receiver = ssf_stream::receiver(&issuer, &stream, &cache).unwrap();

    // alice's tokens, each accepted once, so each verdict is cached.
    let discovery = oauth_client::discover(&resource).await.unwrap();
    let client_id = oauth_client::register(&discovery, "ssf delivery")
        .await
        .unwrap();
    let http = ssf_stream::http_client().unwrap();
    let mut tokens = Vec::new();
    for _ in 0..TOKENS {
        let token = oauth_client::authorize(&discovery, &client_id, "alice", "password123", "read")
            .await
            .unwrap()
            .access_token;
        assert!(!ssf_stream::refuses(&http, &endpoint, &token).await.unwrap());
        tokens.push(token);
    }
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), TOKENS as u64);

    // Revoked at the provider while the receiver is unreachable.
    for token in &tokens {
        oauth_client::revoke(&discovery, &client_id, token)
            .await
            .unwrap();
    }
    // The provider has tried every event at least twice, and keeps them.
    let storage = provider.state().storage().clone();
    wait_for("every event to have failed twice", || {
        let storage = storage.clone();
        let stream_id = stream.stream_id.clone();
        async move {
            let pending = storage.pending_outbox(&stream_id, 100).await.unwrap();
            pending.len() == TOKENS && pending.iter().all(|row| row.attempts >= 2)
        }
    })
    .await;
    // Meanwhile the server still serves the revoked tokens from its cache: the window SSF closes.
    for token in &tokens {
        assert!(
            !ssf_stream::refuses(&http, &endpoint, token).await.unwrap(),
            "no event arrived, so the cached verdict stands"
        );
    }
    assert_eq!(receiver.stats().accepted, 0);

    // The push endpoint comes back at the same address.
    let listener = TcpListener::bind(push_addr).await.unwrap();
    let push = Router::new().route_service(PUSH_PATH, receiver.push_endpoint().unwrap());
    let push_server = tokio::spawn(async move { axum::serve(listener, push).await });
    wait_for("the queued events to be delivered", || {
        let storage = storage.clone();
        let stream_id = stream.stream_id.clone();
        async move {
            storage
                .pending_outbox(&stream_id, 100)
                .await
                .unwrap()
                .is_empty()
        }
    })
    .await;

    // Each event arrived once (a second delivery would have been refused as a replay) and ended
    // its token's verdict: every token is refused now, without waiting for its cache entry.
    let stats = receiver.stats();
    assert_eq!(stats.accepted, TOKENS as u64, "{stats:?}");
    assert_eq!(stats.refused, 0, "{stats:?}");
    assert_eq!(stats.unavailable, 0, "{stats:?}");
    assert_eq!(stats.revocations, TOKENS as u64, "{stats:?}");
    assert_eq!(stats.verdicts_forgotten, TOKENS as u64, "{stats:?}");
    for token in &tokens {
        assert!(ssf_stream::refuses(&http, &endpoint, token).await.unwrap());
    }

    push_server.abort();
    mcp.abort();
    provider.shutdown().await.unwrap();
}
