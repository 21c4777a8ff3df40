//! The anonymous `client_credentials` escalation against the reference provider, end to end: an
//! anonymous caller tries every route to an `admin` token for the demo MCP server (a real
//! `tower-introspect`-protected rmcp server on loopback) and never reaches `admin_operation`.
//! Runs on both storage backends.
//!
//! Before the provider's registration policy, route 1 worked: open registration accepted
//! `grant_types: ["client_credentials"]`, the scope defaulted to every supported scope, the token
//! endpoint accepted the MCP server's URL as `resource`, and `admin_operation` ran.

use oauth_provider::{
    Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, Server, StorageConfig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_introspect::cache::CacheConfig;
use tower_introspect_demo::mcp_client::{McpSession, Outcome};
use tower_introspect_demo::mcp_server::{AuthSettings, McpServer};

const REGISTRATION_TOKEN: &str = "operator-only-initial-access-token";

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.expect("register");
    (resp.status(), resp.json().await.expect("JSON"))
}

async fn client_credentials(
    http: &reqwest::Client,
    issuer: &str,
    id: &str,
    secret: &str,
    resource: &str,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{issuer}/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "admin"),
            ("resource", resource),
        ])
        .send()
        .await
        .expect("token");
    (resp.status(), resp.json().await.expect("JSON"))
}

/// The token a route produced, if any (only possible when the policy fails).
fn stolen(status: StatusCode, body: &Value) -> Option<String> {
    (status == StatusCode::OK)
        .then(|| body["access_token"].as_str().map(str::to_owned))
        .flatten()
}

async fn escalation_is_refused(storage: StorageConfig) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp_url = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());
    let config = Config {
        registration_token: Some(REGISTRATION_TOKEN.into()),
        ..Config::demo().with_storage(storage).with_resource(&mcp_url)
    };
    let provider = Server::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("provider");
    let issuer = provider.issuer().to_owned();
    let auth = AuthSettings {
        issuer: issuer.clone(),
        tokens: tower_introspect_demo::mcp_server::TokenMode::Introspect,
        jwks_uri: None,
        introspection_endpoint: None,
        client_id: DEMO_RESOURCE_SERVER_ID.to_owned(),
        client_secret: DEMO_RESOURCE_SERVER_SECRET.to_owned(),
        introspect_jwts: false,
        cache: CacheConfig::default(),
        ssf: None,
    };
    let mcp = McpServer::start(mcp_listener, &auth)
        .await
        .expect("MCP server");
    let http = reqwest::Client::new();
    let register = format!("{issuer}/register");
    let mut tokens = Vec::new();

    // Route 1: register a client_credentials client anonymously, scope left to the default.
    let (status, body) = post_json(
        &http,
        &register,
        None,
        json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"]}),
    )
    .await;
    if status == StatusCode::CREATED {
        let (s, b) = client_credentials(
            &http,
            &issuer,
            body["client_id"].as_str().unwrap(),
            body["client_secret"].as_str().unwrap(),
            &mcp_url,
        )
        .await;
        tokens.extend(stolen(s, &b));
    }
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_client_metadata")),
        "{body}"
    );

    // Route 2: an authorization-code client (allowed) that then asks for client_credentials.
    let (status, body) = post_json(
        &http,
        &register,
        None,
        json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_basic", "scope": "read write admin"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, token) = client_credentials(
        &http,
        &issuer,
        body["client_id"].as_str().unwrap(),
        body["client_secret"].as_str().unwrap(),
        &mcp_url,
    )
    .await;
    tokens.extend(stolen(status, &token));
    assert_eq!(
        (status, token["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unauthorized_client")),
        "{token}"
    );

    // Route 3: a guessed initial access token.
    let (status, body) = post_json(
        &http,
        &register,
        Some("guessed-initial-access-token"),
        json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "scope": "admin"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_token")),
        "{body}"
    );

    // Route 4: even the initial access token never grants `admin` to a self-granting client.
    let (status, body) = post_json(
        &http,
        &register,
        Some(REGISTRATION_TOKEN),
        json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "scope": "admin"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_client_metadata")),
        "{body}"
    );

    // The MCP server's admin_operation is never reached: the attacker holds no token, so the
    // only call left is an anonymous one, which the bearer layer challenges; no token ever got
    // as far as introspection.
    assert!(tokens.is_empty(), "the attacker obtained a token");
    let mut session = McpSession::connect(&mcp.url, tokens.first().map(String::as_str))
        .await
        .expect("anonymous session (public handshake)");
    let outcome = session
        .call_tool("admin_operation", json!({}))
        .await
        .expect("call");
    assert_eq!(outcome, Outcome::Unauthorized(None));
    assert_eq!(mcp.cache.stats().introspection_calls, 0);
    provider.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_credentials_escalation_is_refused_memory() {
    escalation_is_refused(StorageConfig::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_credentials_escalation_is_refused_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    escalation_is_refused(StorageConfig::Sqlite {
        path: dir.path().join("oauth.db"),
    })
    .await;
}
