//! Shared fixtures: a wiremock authorization server, a protected axum app on loopback, a client.
#![allow(dead_code)] // each test crate uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::routing::any;
use serde_json::{Value, json};
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::{BearerAuthLayer, Introspector, IntrospectorBuilder, Principal};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, ResponseTemplate};

pub mod signing;

pub const RESOURCE: &str = "https://rs.example/mcp";
pub const ISSUER: &str = "https://as.example";
pub const METADATA: &str = "https://rs.example/.well-known/oauth-protected-resource/mcp";

/// Installs the ring provider once, as an application would before making a reqwest client.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Matches a form-encoded request body that has `name=value`.
pub struct FormParam(pub &'static str, pub String);

impl Match for FormParam {
    fn matches(&self, request: &wiremock::Request) -> bool {
        form_urlencoded::parse(&request.body).any(|(k, v)| k == self.0 && v == self.1.as_str())
    }
}

/// The parsed form of a request the mock AS received.
pub fn form_of(request: &wiremock::Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A valid introspection answer for our resource and issuer, expiring in an hour.
pub fn active(sub: &str, scope: &str) -> Value {
    json!({
        "active": true,
        "sub": sub,
        "username": format!("{sub}-name"),
        "client_id": "client-1",
        "scope": scope,
        "aud": RESOURCE,
        "iss": ISSUER,
        "token_type": "Bearer",
        "exp": now() + 3600,
        "iat": now(),
        "tenant": "acme",
    })
}

/// Mounts `/introspect` answering `body` for `token`, expecting exactly `calls` calls.
pub async fn expect_introspection(server: &MockServer, token: &str, body: Value, calls: u64) {
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(FormParam("token", token.to_owned()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(calls)
        .mount(server)
        .await;
}

/// An introspector builder for `server` with the validation our tests assume.
pub fn introspector_for(server: &MockServer) -> IntrospectorBuilder {
    install_crypto();
    Introspector::builder()
        .endpoint(format!("{}/introspect", server.uri()))
        .client_secret_basic("rs-client", "rs-secret")
        .audience(RESOURCE)
        .issuer(ISSUER)
}

/// What the protected handler observed.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<Option<Principal>>>>);

impl Seen {
    pub fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn last(&self) -> Option<Principal> {
        self.0.lock().unwrap().last().cloned().flatten()
    }
}

/// An axum router whose every route records the principal it was given and answers 200 "ok".
pub fn recording_app(seen: &Seen) -> Router {
    let seen = seen.clone();
    Router::new().route(
        "/{*path}",
        any(move |request: Request| {
            let seen = seen.clone();
            async move {
                seen.0
                    .lock()
                    .unwrap()
                    .push(request.extensions().get::<Principal>().cloned());
                "ok"
            }
        }),
    )
}

/// The standard protected app: recording handler behind a cached introspection layer.
#[derive(Clone)]
pub struct Protected {
    pub seen: Seen,
    pub cache: CachedVerifier<Introspector>,
    pub router: Router,
}

impl Protected {
    /// Sends one `GET /mcp` with `token`: its status and `Retry-After`.
    pub async fn send(&self, token: &str) -> (u16, Option<String>) {
        use tower::ServiceExt;
        let request = http::Request::get("/mcp")
            .header("authorization", bearer(token))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), retry_after)
    }
}

pub fn protected(
    introspector: Introspector,
    cache: CacheConfig,
    configure: impl FnOnce(
        BearerAuthLayer<CachedVerifier<Introspector>>,
    ) -> BearerAuthLayer<CachedVerifier<Introspector>>,
) -> Protected {
    let seen = Seen::default();
    let layer = configure(BearerAuthLayer::introspect_with_cache(introspector, cache));
    let cache = layer.verifier().clone();
    let router = recording_app(&seen).layer(layer);
    Protected {
        seen,
        cache,
        router,
    }
}

/// Serves `router` on a free loopback port until the test ends.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A response reduced to what the tests assert.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub challenge: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

/// GETs `path` on `addr` with the given raw `Authorization` header values.
pub async fn get(addr: SocketAddr, path: &str, authorization: &[&str]) -> Answer {
    let values: Vec<&[u8]> = authorization.iter().map(|v| v.as_bytes()).collect();
    get_with_raw_authorization(addr, path, &values).await
}

/// Like [`get`], with `Authorization` values given as bytes (e.g. control or non-ASCII bytes).
pub async fn get_with_raw_authorization(
    addr: SocketAddr,
    path: &str,
    authorization: &[&[u8]],
) -> Answer {
    let mut request = client().get(format!("http://{addr}{path}"));
    for value in authorization {
        let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        challenge: header(&response, "www-authenticate"),
        retry_after: header(&response, "retry-after"),
        body: String::new(),
    }
    .with_body(response)
    .await
}

impl Answer {
    async fn with_body(mut self, response: reqwest::Response) -> Self {
        self.body = response.text().await.unwrap();
        self
    }
}

/// A response header as text, if present.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `insufficient_scope` challenge naming `scope`, with the tests' `resource_metadata`.
pub fn insufficient(scope: &str) -> String {
    format!(
        r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="{scope}", resource_metadata="{METADATA}""#
    )
}

/// An app protected by an introspector of `server` with the cache configured as `cache`.
pub fn protected_by(server: &MockServer, cache: CacheConfig) -> Protected {
    protected(introspector_for(server).build().unwrap(), cache, |l| l)
}

/// An authorization server that answers `body` once, then is down (503) for good.
pub async fn answers_once_then_down(body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    server
}

/// An introspector that discovers `server`'s endpoint lazily (so it builds while `server` is
/// down), for tokens meant for [`RESOURCE`].
pub fn lazy_introspector(server: &MockServer) -> Introspector {
    install_crypto();
    Introspector::builder()
        .client_secret_basic("rs-client", "rs-secret")
        .audience(RESOURCE)
        .discover_lazily(server.uri())
        .build()
        .expect("builds without reaching the authorization server")
}

/// The demo MCP server's settings for introspecting at `server`'s `/introspect`.
pub fn demo_auth(server: &MockServer) -> tower_introspect_demo::mcp_server::AuthSettings {
    tower_introspect_demo::mcp_server::AuthSettings {
        issuer: ISSUER.to_owned(),
        tokens: tower_introspect_demo::mcp_server::TokenMode::Introspect,
        jwks_uri: None,
        introspection_endpoint: Some(format!("{}/introspect", server.uri())),
        client_id: "rs-client".to_owned(),
        client_secret: "rs-secret".to_owned(),
        introspect_jwts: false,
        cache: CacheConfig::default(),
        ssf: None,
    }
}
