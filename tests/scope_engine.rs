//! The scope engine: hierarchies in every scope check, step-up challenges by MCP protocol
//! version, `offline_access` refused in configuration, and `Mcp-Method` / `Mcp-Name` headers in
//! the MCP scope layer.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use bytes::Bytes;
use common::*;
use http_body::{Body, Frame};
use http_body_util::Full;
use tower::ServiceExt;
use tower_introspect::mcp::{McpScopeLayer, McpScopePolicy};
use tower_introspect::metadata::ProtectedResourceMetadata;
use tower_introspect::scope::{ScopeHierarchy, StepUpScopes};
use tower_introspect::{BearerAuthLayer, PathScopeLayer, Principal, RequireScopeLayer};
use wiremock::MockServer;

const MCP_READ: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_data"}}"#;

fn repo_hierarchy() -> ScopeHierarchy {
    ScopeHierarchy::builder()
        .implies("repo:admin", ["repo:write", "repo:read"])
        .build()
        .unwrap()
}

/// `/require` behind [`RequireScopeLayer`], `/path` behind [`PathScopeLayer`], `/mcp` behind
/// [`McpScopeLayer`] (tool `read_data`), `/handler` deciding with [`Principal::satisfies`]; every
/// one requires `repo:read`. Returns the address and how many requests reached a handler.
async fn every_check(
    server: &MockServer,
    configure: impl FnOnce(
        BearerAuthLayer<tower_introspect::cache::CachedVerifier<tower_introspect::Introspector>>,
    ) -> BearerAuthLayer<
        tower_introspect::cache::CachedVerifier<tower_introspect::Introspector>,
    >,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let count = |reached: &Arc<AtomicUsize>| {
        let reached = reached.clone();
        move || {
            reached.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }
    };
    let handler_reached = reached.clone();
    let layer = configure(
        BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
            .resource_metadata(METADATA),
    );
    let app = Router::new()
        .route(
            "/require",
            get(count(&reached)).route_layer(RequireScopeLayer::all(["repo:read"]).unwrap()),
        )
        .route(
            "/path",
            get(count(&reached)).route_layer(
                PathScopeLayer::builder()
                    .path("/path", ["repo:read"])
                    .build()
                    .unwrap(),
            ),
        )
        .route(
            "/mcp",
            post(count(&reached)).route_layer(McpScopeLayer::new(
                McpScopePolicy::builder()
                    .tool("read_data", ["repo:read"])
                    .build()
                    .unwrap(),
            )),
        )
        .route(
            "/handler",
            get(move |request: Request| async move {
                let principal = request.extensions().get::<Principal>().unwrap();
                if principal.satisfies(&["repo:read"]) {
                    handler_reached.fetch_add(1, Ordering::SeqCst);
                    "ok"
                } else {
                    "denied"
                }
            }),
        )
        .layer(layer);
    (serve(app).await, reached)
}

/// Status, challenge and body of one request of `every_check`'s app.
async fn call(addr: SocketAddr, path: &str, token: &str) -> (u16, Option<String>, String) {
    let client = client();
    let request = if path == "/mcp" {
        client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(MCP_READ)
    } else {
        client.get(format!("http://{addr}{path}"))
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = header(&response, "www-authenticate");
    (status, challenge, response.text().await.unwrap())
}

#[tokio::test]
async fn a_hierarchy_lets_repo_admin_satisfy_repo_read_in_every_check() {
    let server = MockServer::start().await;
    expect_introspection(&server, "admin", active("ada", "repo:admin"), 1).await;
    expect_introspection(&server, "writer", active("wes", "repo:write"), 1).await;
    let (addr, reached) = every_check(&server, |l| l.scope_hierarchy(repo_hierarchy())).await;
    for path in ["/require", "/path", "/mcp"] {
        assert_eq!(
            call(addr, path, "admin").await,
            (200, None, "ok".into()),
            "{path}"
        );
        // Not implied: still refused, and the challenge names the narrow scope required.
        let (status, challenge, _) = call(addr, path, "writer").await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(challenge, Some(insufficient("repo:read")), "{path}");
    }
    assert_eq!(call(addr, "/handler", "admin").await.2, "ok");
    assert_eq!(call(addr, "/handler", "writer").await.2, "denied");
    assert_eq!(reached.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn without_a_hierarchy_matching_is_exact_and_the_challenge_names_the_narrow_scope() {
    let server = MockServer::start().await;
    expect_introspection(&server, "admin", active("ada", "repo:admin"), 1).await;
    let (addr, reached) = every_check(&server, |l| l).await;
    for path in ["/require", "/path", "/mcp"] {
        let (status, challenge, _) = call(addr, path, "admin").await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(challenge, Some(insufficient("repo:read")), "{path}");
    }
    assert_eq!(call(addr, "/handler", "admin").await.2, "denied");
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wildcard_grants_count_only_when_enabled() {
    let server = MockServer::start().await;
    expect_introspection(&server, "star", active("sam", "repo:*"), 2).await;
    let (exact, _) = every_check(&server, |l| l.scope_hierarchy(repo_hierarchy())).await;
    for path in ["/require", "/path", "/mcp"] {
        let (status, challenge, _) = call(exact, path, "star").await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(challenge, Some(insufficient("repo:read")), "{path}");
    }
    let wildcards = ScopeHierarchy::builder().wildcards(true).build().unwrap();
    let (addr, reached) = every_check(&server, |l| l.scope_hierarchy(wildcards)).await;
    for path in ["/require", "/path", "/mcp"] {
        assert_eq!(
            call(addr, path, "star").await,
            (200, None, "ok".into()),
            "{path}"
        );
    }
    assert_eq!(reached.load(Ordering::SeqCst), 3);
}

/// The challenge of a `repo:admin` route for a token with `profile repo:read offline_access`,
/// declaring `version` (if any), under `strategy` (if set).
async fn step_up_challenge(version: Option<&str>, strategy: Option<StepUpScopes>) -> String {
    let server = MockServer::start().await;
    expect_introspection(
        &server,
        "reader",
        active("rita", "profile repo:read offline_access"),
        1,
    )
    .await;
    let mut layer = BearerAuthLayer::introspect(introspector_for(&server).build().unwrap())
        .resource_metadata(METADATA);
    if let Some(strategy) = strategy {
        layer = layer.step_up_scopes(strategy);
    }
    let app = Router::new()
        .route(
            "/admin",
            get(|| async { "ok" }).route_layer(RequireScopeLayer::all(["repo:admin"]).unwrap()),
        )
        .layer(layer);
    let addr = serve(app).await;
    let mut request = client()
        .get(format!("http://{addr}/admin"))
        .bearer_auth("reader");
    if let Some(version) = version {
        request = request.header("mcp-protocol-version", version);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 403);
    header(&response, "www-authenticate").unwrap()
}

#[tokio::test]
async fn step_up_challenges_follow_the_protocol_version_by_default() {
    let required = insufficient("repo:admin");
    // `offline_access` was granted but is never named.
    let with_granted = insufficient("profile repo:admin repo:read");
    assert_eq!(step_up_challenge(Some("2026-07-28"), None).await, required);
    assert_eq!(
        step_up_challenge(Some("DRAFT-2026-v2"), None).await,
        required
    );
    assert_eq!(
        step_up_challenge(Some("2025-11-25"), None).await,
        with_granted
    );
    assert_eq!(step_up_challenge(Some("2025-06-18"), None).await, required);
    // No header: MCP reads it as 2025-03-26.
    assert_eq!(step_up_challenge(None, None).await, required);
}

#[tokio::test]
async fn a_configured_step_up_strategy_overrides_the_protocol_version() {
    let required = insufficient("repo:admin");
    let with_granted = insufficient("profile repo:admin repo:read");
    let only = Some(StepUpScopes::RequiredOnly);
    let granted = Some(StepUpScopes::RequiredAndGranted);
    assert_eq!(step_up_challenge(Some("2025-11-25"), only).await, required);
    assert_eq!(
        step_up_challenge(Some("2026-07-28"), granted).await,
        with_granted
    );
    assert_eq!(step_up_challenge(None, granted).await, with_granted);
}

/// The error `configure` refuses with, which it must.
fn refusal_of<T>(configured: Result<T, tower_introspect::ConfigError>) -> String {
    match configured {
        Ok(_) => panic!("the configuration was accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn offline_access_is_refused_in_every_configuration() {
    let introspector = tower_introspect::Introspector::builder()
        .endpoint("https://as.example/introspect")
        .client_secret_basic("a", "b")
        .build()
        .unwrap();
    let refusals = [
        refusal_of(RequireScopeLayer::all(["read", "offline_access"])),
        refusal_of(RequireScopeLayer::any(["offline_access"])),
        refusal_of(
            PathScopeLayer::builder()
                .path("/a", ["offline_access"])
                .build(),
        ),
        refusal_of(
            McpScopePolicy::builder()
                .tool("t", ["offline_access"])
                .build(),
        ),
        refusal_of(
            ProtectedResourceMetadata::new(RESOURCE, ISSUER)
                .unwrap()
                .scopes_supported(["read", "offline_access"]),
        ),
        refusal_of(
            BearerAuthLayer::introspect(introspector).challenge_scope("read offline_access"),
        ),
    ];
    for message in refusals {
        assert!(message.contains("\"offline_access\""), "{message}");
    }
}

#[test]
fn hierarchy_cycles_are_refused_when_built() {
    let error = ScopeHierarchy::builder()
        .implies("repo:admin", ["repo:write"])
        .implies("repo:write", ["repo:admin"])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("cycle"), "{error}");
}

/// A request body that counts how often it is polled (the inner service gets a fresh one).
struct CountedBody {
    inner: Full<Bytes>,
    polls: Option<Arc<AtomicUsize>>,
}

impl From<Bytes> for CountedBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            inner: Full::new(bytes),
            polls: None,
        }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(polls) = &self.polls {
            polls.fetch_add(1, Ordering::SeqCst);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}

/// Sends `body` with `headers` through an [`McpScopeLayer`] (tools `read_data`: `read`,
/// `admin_operation`: `admin`) for a principal granted `read`; returns the status, the challenge,
/// how often the layer polled the body and how many requests reached the inner service.
async fn through_scope_layer(
    trust: bool,
    headers: &[(&'static str, &str)],
    body: &str,
) -> (u16, Option<String>, usize, usize) {
    let reached = Arc::new(AtomicUsize::new(0));
    let inner_reached = reached.clone();
    let inner = tower::service_fn(move |_: http::Request<CountedBody>| {
        inner_reached.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(String::from("inner"))) }
    });
    let policy = McpScopePolicy::builder()
        .tool("read_data", ["read"])
        .tool("admin_operation", ["admin"])
        .build()
        .unwrap();
    let service = tower::Layer::layer(
        &McpScopeLayer::new(policy).trust_method_headers(trust),
        inner,
    );
    let polls = Arc::new(AtomicUsize::new(0));
    let mut request = http::Request::post("/mcp")
        .body(CountedBody {
            inner: Full::new(Bytes::from(body.to_owned())),
            polls: Some(polls.clone()),
        })
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let claims: tower_introspect::introspection::IntrospectionResponse =
        serde_json::from_value(active("rita", "read")).unwrap();
    request
        .extensions_mut()
        .insert(Principal::new(claims.into()));
    let response = service.oneshot(request).await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        response.status().as_u16(),
        challenge,
        polls.load(Ordering::SeqCst),
        reached.load(Ordering::SeqCst),
    )
}

const ADMIN_CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_operation"}}"#;

#[tokio::test]
async fn trusted_method_headers_decide_2026_requests_without_reading_the_body() {
    let read = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "read_data"),
    ];
    assert_eq!(
        through_scope_layer(true, &read, MCP_READ).await,
        (200, None, 0, 1)
    );
    let admin = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "admin_operation"),
    ];
    let (status, challenge, polls, reached) = through_scope_layer(true, &admin, ADMIN_CALL).await;
    assert_eq!((status, polls, reached), (403, 0, 0));
    assert_eq!(
        challenge.as_deref(),
        Some(
            r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="admin""#
        )
    );
}

#[tokio::test]
async fn method_headers_are_not_trusted_for_older_versions_or_without_the_opt_in() {
    // Header says read_data, body calls admin_operation: the body is read and decides.
    let older = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "read_data"),
    ];
    let (status, _, polls, reached) = through_scope_layer(true, &older, ADMIN_CALL).await;
    assert_eq!(status, 400);
    assert!(polls > 0);
    assert_eq!(reached, 0);
    let current = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "read_data"),
    ];
    let (status, _, polls, reached) = through_scope_layer(false, &current, ADMIN_CALL).await;
    assert_eq!((status, reached), (400, 0));
    assert!(polls > 0);
    // Agreeing headers, body read: judged by the body.
    let (status, _, polls, reached) = through_scope_layer(false, &current, MCP_READ).await;
    assert_eq!((status, reached), (200, 1));
    assert!(polls > 0);
}

#[tokio::test]
async fn method_headers_that_disagree_with_the_body_are_refused_over_http() {
    let server = MockServer::start().await;
    expect_introspection(&server, "admin", active("ada", "repo:admin"), 1).await;
    let (addr, reached) = every_check(&server, |l| l.scope_hierarchy(repo_hierarchy())).await;
    let send = |headers: &'static [(&'static str, &'static str)]| async move {
        let mut request = client()
            .post(format!("http://{addr}/mcp"))
            .header("content-type", "application/json")
            .bearer_auth("admin")
            .body(MCP_READ);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(send(&[("mcp-method", "tools/list")]).await, 400);
    assert_eq!(
        send(&[("mcp-method", "tools/call"), ("mcp-name", "other")]).await,
        400
    );
    assert_eq!(send(&[("mcp-name", "read_data")]).await, 400);
    assert_eq!(
        send(&[("mcp-method", "tools/call"), ("mcp-name", "read_data")]).await,
        200
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}
