//! The Shared Signals transmitter with real components: servers on loopback sockets, a real
//! receiver (a small axum server) that records every push, SETs verified with the key the
//! provider publishes at `/jwks`, the provider binary killed with SIGKILL, and two instances on
//! one PostgreSQL database.
//!
//! Nothing here sleeps for a fixed time to let something happen: every wait polls for the
//! condition with a deadline.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth_provider::ssf::events::{
    ACCOUNT_DISABLED, CREDENTIAL_CHANGE, SESSION_REVOKED, TOKEN_REVOKED, VERIFICATION,
};
use oauth_provider::{
    Config, DEMO_ADMIN_CLIENT_ID, DEMO_ADMIN_CLIENT_SECRET, DEMO_RESOURCE_SERVER_ID,
    DEMO_RESOURCE_SERVER_SECRET, DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET, Server,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

backend_tests!(
    stream_management_is_authorized_validated_and_bounded,
    verification_is_pushed_as_a_signed_set,
    revocation_announces_each_unexpired_access_token,
    refresh_reuse_announces_the_revoked_session,
    password_change_and_disabling_announce_and_revoke,
    poll_delivery_offers_unacknowledged_sets_again,
    paused_streams_queue_within_their_bound,
    the_outbox_leases_retries_settles_and_purges,
    concurrent_announcements_never_exceed_a_streams_pending_cap,
);

const DEADLINE: Duration = Duration::from_secs(30);

/// The demo configuration with loopback push endpoints allowed and quick retries.
fn ssf_config() -> Config {
    let mut config = test_config();
    config.ssf.allow_http_loopback = true;
    config.ssf.retry_initial = Duration::from_millis(100);
    config.ssf.retry_max = Duration::from_millis(400);
    config.ssf.poll_interval = Duration::from_millis(100);
    config.ssf.long_poll = Duration::from_secs(1);
    config.ssf.max_streams_per_client = 3;
    // Tests verify streams in quick succession (pacing has its own test).
    config.ssf.min_verification_interval = Duration::ZERO;
    // Registered client_credentials clients may manage streams too.
    config.registrable_scopes = Some(["read", "write", "ssf"].map(String::from).to_vec());
    config
}

/// Waits until `check` holds, polling every 20 ms, or panics after [`DEADLINE`].
async fn wait_until<F: FnMut() -> bool>(what: &str, mut check: F) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver.

const ACCEPT: u8 = 0;
const UNAVAILABLE: u8 = 1;
const REFUSE: u8 = 2;
/// `503` with `Retry-After: 1`.
const BACK_IN_A_SECOND: u8 = 3;
/// `503` with `Retry-After: 3600`.
const BACK_IN_AN_HOUR: u8 = 4;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Push {
    set: String,
    content_type: Option<String>,
    accept: Option<String>,
    authorization: Option<String>,
    /// Whether it was answered 202.
    accepted: bool,
    /// When it arrived.
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    mode: Arc<AtomicU8>,
    pushes: Arc<Mutex<Vec<Push>>>,
}

impl Receiver {
    /// Serves on `listener`; returns the receiver and its endpoint URL.
    async fn serve(listener: TcpListener) -> (Self, String) {
        let receiver = Receiver::default();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    async fn start() -> (Self, String) {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn pushes(&self) -> Vec<Push> {
        self.pushes.lock().unwrap().clone()
    }

    /// The accepted SETs.
    fn accepted(&self) -> Vec<String> {
        self.pushes()
            .into_iter()
            .filter(|p| p.accepted)
            .map(|p| p.set)
            .collect()
    }

    fn requests(&self) -> usize {
        self.pushes.lock().unwrap().len()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mode = receiver.mode.load(Ordering::SeqCst);
    receiver.pushes.lock().unwrap().push(Push {
        set: String::from_utf8_lossy(&body).into_owned(),
        content_type: header("content-type"),
        accept: header("accept"),
        authorization: header("authorization"),
        accepted: mode == ACCEPT,
        at: Instant::now(),
    });
    match mode {
        ACCEPT => AxumStatus::ACCEPTED.into_response(),
        UNAVAILABLE => AxumStatus::SERVICE_UNAVAILABLE.into_response(),
        BACK_IN_A_SECOND => {
            (AxumStatus::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response()
        }
        BACK_IN_AN_HOUR => {
            (AxumStatus::SERVICE_UNAVAILABLE, [("retry-after", "3600")]).into_response()
        }
        _ => (
            AxumStatus::BAD_REQUEST,
            axum::Json(json!({"err": "invalid_audience", "description": "not for us"})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn client_token(env: &Env, id: &str, secret: &str, scope: &str) -> String {
    let (status, body) = env
        .token_basic(
            id,
            secret,
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn ssf_token(env: &Env) -> String {
    client_token(env, DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET, "ssf").await
}

async fn admin_token(env: &Env) -> String {
    client_token(env, DEMO_ADMIN_CLIENT_ID, DEMO_ADMIN_CLIENT_SECRET, "admin").await
}

/// A request with a bearer token and a JSON body.
async fn call(
    env: &Env,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = env.http.request(method, env.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    let (status, body) = json_of(response).await;
    (status, body, headers)
}

async fn create_stream(env: &Env, token: &str, body: Value) -> Value {
    let (status, config, _) = call(
        env,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{config}");
    config
}

async fn push_stream(env: &Env, token: &str, endpoint: &str, events: &[&str]) -> String {
    let config = create_stream(
        env,
        token,
        json!({
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": endpoint,
                         "authorization_header": "Bearer receiver-secret"},
            "events_requested": events,
        }),
    )
    .await;
    config["stream_id"].as_str().unwrap().to_owned()
}

async fn verify_stream(env: &Env, token: &str, stream_id: &str, state: &str) {
    let (status, body, _) = call(
        env,
        reqwest::Method::POST,
        "/ssf/verify",
        Some(token),
        Some(json!({"stream_id": stream_id, "state": state})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Verifies a SET with the key `env` publishes at `/jwks`: ES256, `typ: secevent+jwt`, `iss`,
/// `aud`, a `jti` of at least 128 bits, one event. Returns its claims.
async fn verify_set(env: &Env, set: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(set).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("kid");
    let (_, jwks, _) = call(env, reqwest::Method::GET, "/jwks", None, None).await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == json!(kid))
        .unwrap_or_else(|| panic!("kid {kid} is not in {jwks}"));
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud"]);
    validation.set_issuer(&[env.issuer.as_str()]);
    validation.set_audience(&[aud]);
    let claims = jsonwebtoken::decode::<Value>(set, &key, &validation)
        .expect("signature, iss and aud")
        .claims;
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "events", "iat", "iss", "jti", "sub_id"]);
    assert_eq!(claims["aud"], json!(aud), "aud is a string");
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        jti.len() >= 22
            && jti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{jti}"
    );
    assert_eq!(claims["events"].as_object().unwrap().len(), 1, "{claims}");
    assert!(claims["iat"].is_i64());
    claims
}

fn event_type(claims: &Value) -> &str {
    claims["events"].as_object().unwrap().keys().next().unwrap()
}

/// Waits for `n` accepted SETs and returns their verified claims.
async fn accepted_claims(env: &Env, receiver: &Receiver, n: usize, aud: &str) -> Vec<Value> {
    wait_until(&format!("{n} accepted SETs"), || {
        receiver.accepted().len() >= n
    })
    .await;
    let mut claims = Vec::new();
    for set in receiver.accepted() {
        claims.push(verify_set(env, &set, aud).await);
    }
    claims
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

// ---------------------------------------------------------------------------------------------
// Metadata.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_document_names_every_endpoint() {
    let env = Env::start_with(Backend::Memory, ssf_config()).await;
    let (status, doc, _) = call(
        &env,
        reqwest::Method::GET,
        "/.well-known/ssf-configuration",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let issuer = env.issuer.clone();
    assert_eq!(
        doc,
        json!({
            "spec_version": "1_0",
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
            "configuration_endpoint": format!("{issuer}/ssf/stream"),
            "status_endpoint": format!("{issuer}/ssf/status"),
            "verification_endpoint": format!("{issuer}/ssf/verify"),
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "default_subjects": "ALL",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_is_registrable_only_when_configured() {
    let env = Env::start(Backend::Memory).await;
    let (status, body) = env
        .register_with_token(
            REGISTRATION_TOKEN,
            json!({"token_endpoint_auth_method": "client_secret_basic",
                   "grant_types": ["client_credentials"], "scope": "ssf"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], json!("invalid_client_metadata"));
    let (status, body) = env
        .register_with_token(
            REGISTRATION_TOKEN,
            json!({"token_endpoint_auth_method": "client_secret_basic",
                   "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], json!("read write"), "not by default");
}

// ---------------------------------------------------------------------------------------------
// Stream management.

async fn stream_management_is_authorized_validated_and_bounded(backend: Backend) {
    let env = Env::start_with(backend, ssf_config()).await;
    let token = ssf_token(&env).await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // No token: 401 with a Bearer challenge; a bogus one: invalid_token; no scope: 403.
    let (status, _, headers) = call(&env, get.clone(), "/ssf/stream", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let (status, body, headers) =
        call(&env, get.clone(), "/ssf/stream", Some("at_bogus"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let read_token = client_token(
        &env,
        DEMO_RESOURCE_SERVER_ID,
        DEMO_RESOURCE_SERVER_SECRET,
        "read",
    )
    .await;
    let (status, body, headers) =
        call(&env, get.clone(), "/ssf/stream", Some(&read_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], json!("insufficient_scope"));
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"ssf\"")
    );

    // Create: the configuration, never the authorization header.
    let config = create_stream(
        &env,
        &token,
        json!({
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://receiver.example/ssf",
                         "authorization_header": "Bearer s3cr3t"},
            "events_requested": [TOKEN_REVOKED, "urn:example:unknown", SESSION_REVOKED],
            "description": "test stream",
        }),
    )
    .await;
    let stream_id = text(&config, "stream_id").to_owned();
    assert_eq!(config["iss"], json!(env.issuer));
    assert_eq!(config["aud"], json!(DEMO_SSF_RECEIVER_ID));
    assert_eq!(
        config["events_delivered"],
        json!([TOKEN_REVOKED, SESSION_REVOKED])
    );
    assert_eq!(
        config["delivery"],
        json!({"method": "urn:ietf:rfc:8935", "endpoint_url": "https://receiver.example/ssf"})
    );
    assert_eq!(config["events_supported"].as_array().unwrap().len(), 4);
    assert_eq!(config["description"], json!("test stream"));
    assert!(!config.to_string().contains("s3cr3t"));

    // A poll stream's endpoint is ours.
    let poll = create_stream(
        &env,
        &token,
        json!({"delivery": {"method": "urn:ietf:rfc:8936"}, "events_requested": [VERIFICATION]}),
    )
    .await;
    let poll_id = text(&poll, "stream_id").to_owned();
    assert_eq!(
        poll["delivery"]["endpoint_url"],
        json!(format!("{}/ssf/poll/{poll_id}", env.issuer))
    );
    assert_eq!(poll["events_delivered"], json!([]));

    // Bad endpoints and bodies: 400, nothing stored.
    for endpoint in [
        "http://receiver.example/ssf",
        "ftp://receiver.example/ssf",
        "https://user:pw@receiver.example/ssf",
        "not a url",
    ] {
        let (status, body, _) = call(
            &env,
            post.clone(),
            "/ssf/stream",
            Some(&token),
            Some(json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": endpoint}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint}: {body}");
        assert_eq!(body["error"], json!("invalid_request"));
    }
    for bad in [
        json!({"delivery": {"method": "urn:example:carrier-pigeon"}}),
        json!({"events_requested": "not a list"}),
        json!({"description": "x".repeat(300)}),
        json!(["not", "an", "object"]),
    ] {
        let (status, body, _) =
            call(&env, post.clone(), "/ssf/stream", Some(&token), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    // Read one, list, patch, replace.
    let path = format!("/ssf/stream?stream_id={stream_id}");
    let (status, read, _) = call(&env, get.clone(), &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, config);
    let (status, list, _) = call(&env, get.clone(), "/ssf/stream", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, patched, _) = call(
        &env,
        reqwest::Method::PATCH,
        "/ssf/stream",
        Some(&token),
        Some(json!({"stream_id": stream_id, "description": "renamed"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], json!("renamed"));
    assert_eq!(patched["events_requested"], config["events_requested"]);
    assert_eq!(patched["delivery"], config["delivery"]);
    let (status, replaced, _) = call(
        &env,
        reqwest::Method::PUT,
        "/ssf/stream",
        Some(&token),
        Some(
            json!({"stream_id": stream_id, "delivery": {"method": "urn:ietf:rfc:8936"},
                    "events_requested": [CREDENTIAL_CHANGE]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["events_delivered"], json!([CREDENTIAL_CHANGE]));
    assert!(replaced.get("description").is_none(), "{replaced}");
    assert_eq!(replaced["delivery"]["method"], json!("urn:ietf:rfc:8936"));

    // Status.
    let status_path = format!("/ssf/status?stream_id={stream_id}");
    let (status, body, _) = call(&env, get.clone(), &status_path, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"stream_id": stream_id.clone(), "status": "enabled"})
    );
    let (status, body, _) = call(
        &env,
        post.clone(),
        "/ssf/status",
        Some(&token),
        Some(json!({"stream_id": stream_id, "status": "paused"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("paused"));
    let (status, _, _) = call(
        &env,
        post.clone(),
        "/ssf/status",
        Some(&token),
        Some(json!({"stream_id": stream_id, "status": "sleeping"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another client's token sees none of it: 404 everywhere.
    let (other_id, other_secret) = {
        let (status, body) = env
            .register_with_token(
                REGISTRATION_TOKEN,
                json!({"token_endpoint_auth_method": "client_secret_basic",
                       "grant_types": ["client_credentials"], "scope": "ssf"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            text(&body, "client_id").to_owned(),
            text(&body, "client_secret").to_owned(),
        )
    };
    let other = client_token(&env, &other_id, &other_secret, "ssf").await;
    let (status, list, _) = call(&env, get.clone(), "/ssf/stream", Some(&other), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));
    for (method, path, body) in [
        (get.clone(), path.clone(), None),
        (get.clone(), status_path.clone(), None),
        (
            reqwest::Method::DELETE,
            format!("/ssf/stream?stream_id={stream_id}"),
            None,
        ),
        (
            reqwest::Method::PATCH,
            "/ssf/stream".to_owned(),
            Some(json!({"stream_id": stream_id, "description": "mine"})),
        ),
        (
            post.clone(),
            "/ssf/status".to_owned(),
            Some(json!({"stream_id": stream_id, "status": "disabled"})),
        ),
        (
            post.clone(),
            "/ssf/verify".to_owned(),
            Some(json!({"stream_id": stream_id})),
        ),
        (
            post.clone(),
            format!("/ssf/poll/{poll_id}"),
            Some(json!({"returnImmediately": true})),
        ),
    ] {
        let (status, body, _) = call(&env, method.clone(), &path, Some(&other), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (_, body, _) = call(&env, get.clone(), &status_path, Some(&token), None).await;
    assert_eq!(
        body["status"],
        json!("paused"),
        "unchanged by the other client"
    );

    // The per-client bound (3 in this configuration).
    create_stream(&env, &token, json!({})).await;
    let (status, body, _) = call(
        &env,
        post.clone(),
        "/ssf/stream",
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The other client has its own allowance.
    create_stream(&env, &other, json!({})).await;

    // Delete: 204, then 404.
    let delete_path = format!("/ssf/stream?stream_id={stream_id}");
    let (status, _, _) = call(
        &env,
        reqwest::Method::DELETE,
        &delete_path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&env, get.clone(), &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &env,
        reqwest::Method::DELETE,
        &delete_path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    create_stream(&env, &token, json!({})).await;
}

// ---------------------------------------------------------------------------------------------
// Push delivery of each event.

async fn verification_is_pushed_as_a_signed_set(backend: Backend) {
    let env = Env::start_with(backend, ssf_config()).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    let stream_id = push_stream(&env, &token, &endpoint, &[]).await;
    verify_stream(&env, &token, &stream_id, "state-123").await;
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[0]["sub_id"],
        json!({"format": "opaque", "id": stream_id})
    );
    assert_eq!(
        claims[0]["events"],
        json!({ VERIFICATION: {"state": "state-123"} })
    );
    let push = &receiver.pushes()[0];
    assert_eq!(
        push.content_type.as_deref(),
        Some("application/secevent+jwt")
    );
    assert_eq!(push.accept.as_deref(), Some("application/json"));
    assert_eq!(
        push.authorization.as_deref(),
        Some("Bearer receiver-secret")
    );
    // Without a state, the payload is empty.
    let (status, _, _) = call(
        &env,
        reqwest::Method::POST,
        "/ssf/verify",
        Some(&token),
        Some(json!({"stream_id": stream_id})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let claims = accepted_claims(&env, &receiver, 2, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(claims[1]["events"], json!({ VERIFICATION: {} }));
    assert_ne!(claims[0]["jti"], claims[1]["jti"]);
}

async fn revocation_announces_each_unexpired_access_token(backend: Backend) {
    let env = Env::start_with(backend, ssf_config()).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    push_stream(&env, &token, &endpoint, &[TOKEN_REVOKED]).await;
    // A grant with two live access tokens (the first, and the one of a refresh).
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    let (status, second) = env
        .refresh(&client_id, text(&first, "refresh_token"), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let mut jtis = Vec::new();
    for at in [text(&first, "access_token"), text(&second, "access_token")] {
        let info = env.introspect(at).await;
        jtis.push(text(&info, "jti").to_owned());
    }
    // An unrelated grant is not announced.
    let other = env.tokens(&AuthRequest::new(&client_id)).await;

    let response = env
        .http
        .post(env.url("/revoke"))
        .form(&[
            ("token", text(&second, "refresh_token")),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims = accepted_claims(&env, &receiver, 2, DEMO_SSF_RECEIVER_ID).await;
    let mut announced: Vec<String> = claims
        .iter()
        .map(|c| {
            assert_eq!(event_type(c), TOKEN_REVOKED);
            assert_eq!(c["sub_id"]["format"], json!("jwt_id"));
            assert_eq!(c["sub_id"]["iss"], json!(env.issuer));
            let timestamp = &c["events"][TOKEN_REVOKED]["event_timestamp"];
            assert_eq!(timestamp, &c["iat"]);
            c["sub_id"]["jti"].as_str().unwrap().to_owned()
        })
        .collect();
    announced.sort();
    jtis.sort();
    assert_eq!(announced, jtis);
    env.assert_active(text(&first, "access_token"), false).await;
    env.assert_active(text(&other, "access_token"), true).await;
    // The other grant's revocation is its own event; nothing else was sent.
    let response = env
        .http
        .post(env.url("/revoke"))
        .form(&[
            ("token", text(&other, "access_token")),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims = accepted_claims(&env, &receiver, 3, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(claims.len(), 3);
}

async fn refresh_reuse_announces_the_revoked_session(backend: Backend) {
    let mut config = ssf_config();
    config.lifetimes.refresh_reuse_grace = Duration::ZERO;
    let env = Env::start_with(backend, config).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    push_stream(&env, &token, &endpoint, &[SESSION_REVOKED]).await;
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    let info = env.introspect(text(&first, "access_token")).await;
    let sid = text(&info, "sid").to_owned();
    let rt = text(&first, "refresh_token");
    let (status, _) = env.refresh(&client_id, rt, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &env.refresh(&client_id, rt, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[0]["sub_id"],
        json!({"format": "complex",
               "user": {"format": "iss_sub", "iss": env.issuer, "sub": "alice"},
               "session": {"format": "opaque", "id": sid}})
    );
    let payload = &claims[0]["events"][SESSION_REVOKED];
    assert_eq!(payload["initiating_entity"], json!("policy"));
    assert_eq!(
        payload["reason_admin"],
        json!({"en": "refresh token reuse"})
    );
    assert!(payload["event_timestamp"].is_i64());
    env.assert_active(text(&first, "access_token"), false).await;
}

/// Signs in through the login form; returns the page the login answered with.
async fn login_page(env: &Env, client_id: &str, username: &str, password: &str) -> String {
    let req = AuthRequest::new(client_id);
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    env.login(&page, username, password)
        .await
        .text()
        .await
        .unwrap()
}

async fn password_change_and_disabling_announce_and_revoke(backend: Backend) {
    let env = Env::start_with(backend, ssf_config()).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    push_stream(
        &env,
        &token,
        &endpoint,
        &[CREDENTIAL_CHANGE, ACCOUNT_DISABLED, TOKEN_REVOKED],
    )
    .await;
    let admin = admin_token(&env).await;
    let post = reqwest::Method::POST;
    let client_id = env.public_client().await;
    let grant = env.tokens(&AuthRequest::new(&client_id)).await;
    let bob = {
        let req = AuthRequest::new(&client_id);
        let code = env.authorize_and_approve(&req, "bob", "secret456").await["code"].clone();
        let (status, body) = env.token(&req.redeem_form(&code)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };

    // Refusals change nothing.
    for (path, token, body, expected) in [
        (
            "/admin/users/alice/password",
            None,
            json!({"password": "new-password-1"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/admin/users/alice/password",
            Some(token.as_str()),
            json!({"password": "new-password-1"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/admin/users/nobody/password",
            Some(admin.as_str()),
            json!({"password": "new-password-1"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/admin/users/alice/password",
            Some(admin.as_str()),
            json!({"password": "short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/users/alice/password",
            Some(admin.as_str()),
            json!({"pass": "new-password-1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/users/nobody/disable",
            Some(admin.as_str()),
            json!({}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer, _) = call(&env, post.clone(), path, token, Some(body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    env.assert_active(text(&grant, "access_token"), true).await;

    // A new password: the events, the user's tokens inactive, the old password refused.
    let grant_jti = env.introspect(text(&grant, "access_token")).await["jti"].clone();
    let (status, body, _) = call(
        &env,
        post.clone(),
        "/admin/users/alice/password",
        Some(&admin),
        Some(json!({"password": "new-password-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // credential-change for alice, and token-revoked for her one unexpired access token (for
    // receivers that check JWTs locally); pushes may arrive in either order.
    let claims = accepted_claims(&env, &receiver, 2, DEMO_SSF_RECEIVER_ID).await;
    let of_type = |event: &str| -> Vec<&Value> {
        claims
            .iter()
            .filter(|c| c["events"].get(event).is_some())
            .collect()
    };
    let revoked = of_type(TOKEN_REVOKED);
    assert_eq!(revoked.len(), 1, "{claims:?}");
    assert_eq!(
        revoked[0]["sub_id"],
        json!({"format": "jwt_id", "iss": env.issuer, "jti": grant_jti})
    );
    let change = of_type(CREDENTIAL_CHANGE);
    assert_eq!(change.len(), 1, "{claims:?}");
    assert_eq!(
        change[0]["sub_id"],
        json!({"format": "iss_sub", "iss": env.issuer, "sub": "alice"})
    );
    let payload = &change[0]["events"][CREDENTIAL_CHANGE];
    assert_eq!(payload["credential_type"], json!("password"));
    assert_eq!(payload["change_type"], json!("update"));
    assert!(payload["event_timestamp"].is_i64());
    env.assert_active(text(&grant, "access_token"), false).await;
    assert_error(
        &env.refresh(&client_id, text(&grant, "refresh_token"), &[])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    env.assert_active(text(&bob, "access_token"), true).await;
    let page = login_page(&env, &client_id, "alice", "password123").await;
    assert!(!page.contains("Authorize access"), "old password refused");
    let grant = {
        let req = AuthRequest::new(&client_id);
        let code = env
            .authorize_and_approve(&req, "alice", "new-password-1")
            .await["code"]
            .clone();
        let (status, body) = env.token(&req.redeem_form(&code)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };

    // Disabled: the event, tokens inactive, no login, no refresh.
    let (status, body, _) = call(
        &env,
        post.clone(),
        "/admin/users/alice/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let claims = accepted_claims(&env, &receiver, 3, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[2]["events"],
        json!({ ACCOUNT_DISABLED: {"event_timestamp": claims[2]["iat"]} })
    );
    assert_eq!(
        claims[2]["sub_id"],
        json!({"format": "iss_sub", "iss": env.issuer, "sub": "alice"})
    );
    env.assert_active(text(&grant, "access_token"), false).await;
    assert_error(
        &env.refresh(&client_id, text(&grant, "refresh_token"), &[])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let page = login_page(&env, &client_id, "alice", "new-password-1").await;
    assert!(
        !page.contains("Authorize access"),
        "a disabled user cannot log in"
    );
    env.assert_active(text(&bob, "access_token"), true).await;

    // Enabled again: the new password works (no event).
    let (status, _, _) = call(
        &env,
        post.clone(),
        "/admin/users/alice/enable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    env.authorize_and_approve(&AuthRequest::new(&client_id), "alice", "new-password-1")
        .await;
    assert_eq!(receiver.accepted().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Poll delivery.

async fn poll(env: &Env, token: &str, stream_id: &str, body: Value) -> Value {
    let (status, answer, _) = call(
        env,
        reqwest::Method::POST,
        &format!("/ssf/poll/{stream_id}"),
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn jtis_of(answer: &Value) -> Vec<String> {
    let mut jtis: Vec<String> = answer["sets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    jtis.sort();
    jtis
}

async fn poll_delivery_offers_unacknowledged_sets_again(backend: Backend) {
    let env = Env::start_with(backend, ssf_config()).await;
    let token = ssf_token(&env).await;
    let config = create_stream(
        &env,
        &token,
        json!({"delivery": {"method": "urn:ietf:rfc:8936"}}),
    )
    .await;
    let stream_id = text(&config, "stream_id").to_owned();
    // Nothing yet: returnImmediately answers at once; a long poll waits (1 s here) and answers
    // empty.
    let empty = poll(&env, &token, &stream_id, json!({"returnImmediately": true})).await;
    assert_eq!(empty, json!({"sets": {}, "moreAvailable": false}));
    let started = Instant::now();
    let empty = poll(&env, &token, &stream_id, json!({})).await;
    assert_eq!(empty["sets"], json!({}));
    assert!(started.elapsed() >= Duration::from_millis(900));

    for state in ["a", "b", "c"] {
        verify_stream(&env, &token, &stream_id, state).await;
    }
    let first = poll(
        &env,
        &token,
        &stream_id,
        json!({"maxEvents": 2, "returnImmediately": true}),
    )
    .await;
    assert_eq!(first["moreAvailable"], json!(true));
    let mut states = BTreeMap::new();
    for (jti, set) in first["sets"].as_object().unwrap() {
        let claims = verify_set(&env, set.as_str().unwrap(), DEMO_SSF_RECEIVER_ID).await;
        assert_eq!(&claims["jti"], jti);
        states.insert(jti.clone(), claims["events"][VERIFICATION]["state"].clone());
    }
    let mut values: Vec<String> = states.values().map(Value::to_string).collect();
    values.sort();
    assert_eq!(values, ["\"a\"", "\"b\""], "the oldest first");
    let first_jtis = jtis_of(&first);
    assert_eq!(first_jtis.len(), 2);

    // Acknowledge one of them: the other is offered again, with the third.
    let second = poll(
        &env,
        &token,
        &stream_id,
        json!({"ack": [first_jtis[0]], "returnImmediately": true}),
    )
    .await;
    assert_eq!(second["moreAvailable"], json!(false));
    let second_jtis = jtis_of(&second);
    assert_eq!(second_jtis.len(), 2, "{second}");
    assert!(second_jtis.contains(&first_jtis[1]));
    assert!(!second_jtis.contains(&first_jtis[0]));

    // Acknowledge one and refuse the other: nothing is left.
    let mut errors = serde_json::Map::new();
    errors.insert(
        second_jtis[1].clone(),
        json!({"err": "invalid_key", "description": "unknown kid"}),
    );
    let third = poll(
        &env,
        &token,
        &stream_id,
        json!({"ack": [second_jtis[0]], "setErrs": errors, "returnImmediately": true}),
    )
    .await;
    assert_eq!(third, json!({"sets": {}, "moreAvailable": false}));

    // A long poll returns as soon as an event arrives.
    let waiting = {
        let (http, url, token) = (
            env.http.clone(),
            env.url(&format!("/ssf/poll/{stream_id}")),
            token.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"maxEvents": 5}))
                .send()
                .await
                .unwrap();
            json_of(response).await
        })
    };
    verify_stream(&env, &token, &stream_id, "late").await;
    let (status, answer) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    // Either the waiting poll saw it, or it ended before the event and the event waits.
    if answer["sets"].as_object().unwrap().is_empty() {
        let answer = poll(&env, &token, &stream_id, json!({"returnImmediately": true})).await;
        assert_eq!(jtis_of(&answer).len(), 1);
    } else {
        assert_eq!(jtis_of(&answer).len(), 1);
    }

    // A bad poll body is refused.
    let (status, _, _) = call(
        &env,
        reqwest::Method::POST,
        &format!("/ssf/poll/{stream_id}"),
        Some(&token),
        Some(json!({"maxEvents": -1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn paused_streams_queue_within_their_bound(backend: Backend) {
    let mut config = ssf_config();
    config.ssf.max_pending_per_stream = 3;
    let env = Env::start_with(backend, config).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    let stream_id = push_stream(&env, &token, &endpoint, &[]).await;
    let set_status = |status: &'static str| {
        call(
            &env,
            reqwest::Method::POST,
            "/ssf/status",
            Some(&token),
            Some(json!({"stream_id": stream_id, "status": status})),
        )
    };
    assert_eq!(set_status("paused").await.0, StatusCode::OK);
    for i in 0..5 {
        verify_stream(&env, &token, &stream_id, &format!("s{i}")).await;
    }
    // Three queued, two dropped and counted; nothing delivered while paused.
    let server = env.server.as_ref().unwrap();
    assert_eq!(
        env.storage()
            .count_pending_outbox(&stream_id)
            .await
            .unwrap(),
        3
    );
    assert_eq!(server.state().ssf_dropped(), 2);
    assert_eq!(receiver.requests(), 0);
    assert_eq!(set_status("enabled").await.0, StatusCode::OK);
    let claims = accepted_claims(&env, &receiver, 3, DEMO_SSF_RECEIVER_ID).await;
    let states: Vec<&Value> = claims
        .iter()
        .map(|c| &c["events"][VERIFICATION]["state"])
        .collect();
    assert_eq!(states.len(), 3);
    // Disabled: nothing queues.
    assert_eq!(set_status("disabled").await.0, StatusCode::OK);
    verify_stream(&env, &token, &stream_id, "ignored").await;
    assert_eq!(
        env.storage()
            .count_pending_outbox(&stream_id)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_requests_are_paced_per_stream() {
    let mut config = ssf_config();
    config.ssf.min_verification_interval = Duration::from_secs(60);
    let env = Env::start_with(Backend::Memory, config).await;
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    let first = push_stream(&env, &token, &endpoint, &[]).await;
    let second = push_stream(&env, &token, &endpoint, &[]).await;
    let (_, stream, _) = call(
        &env,
        reqwest::Method::GET,
        &format!("/ssf/stream?stream_id={first}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(stream["min_verification_interval"], json!(60));
    verify_stream(&env, &token, &first, "one").await;
    let (status, body, headers) = call(
        &env,
        reqwest::Method::POST,
        "/ssf/verify",
        Some(&token),
        Some(json!({"stream_id": first, "state": "two"})),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        body,
        json!({"error": "too_many_requests", "error_description":
               "a verification of this stream was requested less than min_verification_interval ago"})
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another stream has its own pace.
    verify_stream(&env, &token, &second, "three").await;
    // Only the admitted verifications were queued and pushed.
    let claims = accepted_claims(&env, &receiver, 2, DEMO_SSF_RECEIVER_ID).await;
    let mut states: Vec<&str> = claims
        .iter()
        .map(|c| c["events"][VERIFICATION]["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["one", "three"]);
}

// ---------------------------------------------------------------------------------------------
// Where pushes may go: a stream's owner chooses the endpoint, so it must not reach the
// provider's own network.

/// Asks for a push stream to `endpoint`; the status and body of the answer.
async fn create(env: &Env, token: &str, endpoint: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(
        env,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(token),
        Some(json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": endpoint}})),
    )
    .await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_endpoints_at_private_addresses_are_refused_unless_allowed() {
    let mut config = ssf_config();
    config.ssf.allow_http_loopback = false;
    let env = Env::start_with(Backend::Memory, config.clone()).await;
    let token = ssf_token(&env).await;
    for endpoint in [
        "https://10.0.0.1/ssf",
        "https://192.168.1.10:8443/ssf",
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1/ssf",
        "https://[::1]/ssf",
        "https://[fd00::1]/ssf",
        "https://[::ffff:10.0.0.1]/ssf",
        "https://0.0.0.0/ssf",
    ] {
        let (status, body) = create(&env, &token, endpoint).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint}: {body}");
        assert_eq!(
            body,
            json!({"error": "invalid_request", "error_description":
                   "endpoint_url is a private, loopback, link-local or reserved address"}),
            "{endpoint}"
        );
    }
    // A public literal, and names (checked when resolved, at each push), are accepted.
    for endpoint in ["https://93.184.216.34/ssf", "https://receiver.example/ssf"] {
        let (status, body) = create(&env, &token, endpoint).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}: {body}");
    }

    // A name that resolves to a refused address: the push is never attempted (no connection
    // reaches the listener) and the event is failed, not retried.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stream_id = push_stream(
        &env,
        &token,
        &format!("https://localhost:{port}/events"),
        &[],
    )
    .await;
    verify_stream(&env, &token, &stream_id, "inside").await;
    let start = Instant::now();
    while env
        .storage()
        .count_pending_outbox(&stream_id)
        .await
        .unwrap()
        != 0
    {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for the event to be failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no connection was made"
    );

    // Allowed (receivers on an internal network): the same endpoints are accepted.
    config.ssf.allow_private_endpoints = true;
    let env = Env::start_with(Backend::Memory, config).await;
    let token = ssf_token(&env).await;
    for endpoint in ["https://10.0.0.1/ssf", "https://[fd00::1]/ssf"] {
        let (status, body) = create(&env, &token, endpoint).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retries.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_retry_after_is_honoured_up_to_retry_max() {
    let mut config = ssf_config();
    // The backoff alone would retry after 50–100 ms, then 100–200 ms, 200–400 ms.
    config.ssf.retry_max = Duration::from_secs(2);
    let env = Env::start_with(Backend::Memory, config).await;
    let (receiver, endpoint) = Receiver::start().await;
    receiver.set_mode(BACK_IN_A_SECOND);
    let token = ssf_token(&env).await;
    let stream_id = push_stream(&env, &token, &endpoint, &[]).await;
    verify_stream(&env, &token, &stream_id, "patience").await;
    wait_until("a retry", || receiver.requests() == 2).await;
    // "Retry-After: 1" is longer than the backoff: the retry waited for it.
    let pushes = receiver.pushes();
    let waited = pushes[1].at - pushes[0].at;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    // "Retry-After: 3600" is beyond retry_max: the retry comes after retry_max, not an hour.
    receiver.set_mode(BACK_IN_AN_HOUR);
    wait_until("two more attempts", || receiver.requests() == 4).await;
    let pushes = receiver.pushes();
    let waited = pushes[3].at - pushes[2].at;
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    receiver.set_mode(ACCEPT);
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[0]["events"][VERIFICATION]["state"],
        json!("patience")
    );
    // Every attempt carried the same SET.
    assert!(receiver.pushes().iter().all(|p| p.set == pushes[0].set));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_receiver_gets_every_event_once_it_recovers() {
    let env = Env::start_with(Backend::Sqlite, ssf_config()).await;
    let (receiver, endpoint) = Receiver::start().await;
    receiver.set_mode(UNAVAILABLE);
    let token = ssf_token(&env).await;
    let stream_id = push_stream(&env, &token, &endpoint, &[]).await;
    for i in 0..5 {
        verify_stream(&env, &token, &stream_id, &format!("s{i}")).await;
    }
    // Every event was tried at least twice (a first attempt and a retry) while it answered 503.
    wait_until("retries", || {
        let pushes = receiver.pushes();
        let mut per_set: HashMap<String, usize> = HashMap::new();
        for p in &pushes {
            *per_set.entry(p.set.clone()).or_default() += 1;
        }
        per_set.len() == 5 && per_set.values().all(|n| *n >= 2)
    })
    .await;
    receiver.set_mode(ACCEPT);
    let claims = accepted_claims(&env, &receiver, 5, DEMO_SSF_RECEIVER_ID).await;
    let mut jtis: Vec<&str> = claims.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    jtis.sort_unstable();
    jtis.dedup();
    assert_eq!(jtis.len(), 5, "five distinct events");
    let requests = receiver.requests();
    assert!(
        requests >= 15,
        "5 events × (≥2 refused + 1 accepted): {requests}"
    );
    // The same SET (same jti, same signature) is sent again on a retry.
    let refused: Vec<String> = receiver
        .pushes()
        .into_iter()
        .filter(|p| !p.accepted)
        .map(|p| p.set)
        .collect();
    assert!(receiver.accepted().iter().all(|set| {
        let jti = jti_of(set);
        refused.iter().any(|r| jti_of(r) == jti)
    }));
    assert_eq!(
        env.storage()
            .count_pending_outbox(&stream_id)
            .await
            .unwrap(),
        0
    );
}

fn jti_of(set: &str) -> String {
    use base64::Engine;
    let payload = set.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_the_receiver_refuses_with_400_is_not_retried() {
    let env = Env::start_with(Backend::Sqlite, ssf_config()).await;
    let (receiver, endpoint) = Receiver::start().await;
    receiver.set_mode(REFUSE);
    let token = ssf_token(&env).await;
    let stream_id = push_stream(&env, &token, &endpoint, &[]).await;
    verify_stream(&env, &token, &stream_id, "refused").await;
    wait_until("the refusal", || receiver.requests() == 1).await;
    // Settled for good: failed, not pending (a retry would need it pending).
    let storage = env.storage().clone();
    let start = Instant::now();
    while storage.count_pending_outbox(&stream_id).await.unwrap() != 0 {
        assert!(start.elapsed() < DEADLINE, "the refused SET stays pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A later event is delivered; the refused one was never sent again.
    receiver.set_mode(ACCEPT);
    verify_stream(&env, &token, &stream_id, "accepted").await;
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[0]["events"][VERIFICATION]["state"],
        json!("accepted")
    );
    assert_eq!(receiver.requests(), 2);
}

// ---------------------------------------------------------------------------------------------
// Durability: kill -9 between the revocation and its delivery.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_kill_9_is_delivered_after_restart() {
    const ISSUER: &str = "http://auth.test";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let db = db.to_str().unwrap();
    let args = [
        "--demo",
        "--storage",
        "sqlite",
        "--sqlite-path",
        db,
        "--bind",
        "127.0.0.1:0",
        "--issuer",
        ISSUER,
        "--ssf-allow-http-loopback",
        "--ssf-retry-initial-ms",
        "100",
        "--ssf-retry-max",
        "1",
        "--ssf-poll-interval-ms",
        "100",
        // The kill may land while the first instance holds the event's lease (between a failed
        // push and its rescheduling): the second instance takes it once the lease runs out.
        "--ssf-lease",
        "1",
    ];
    // The receiver's address is reserved, but nobody listens there yet: pushes fail.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let endpoint = format!("http://{receiver_addr}/events");

    // Every run logs at trace level into one file, checked at the end.
    let log_path = dir.path().join("stderr.log");
    let log = || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        std::process::Stdio::from(file)
    };
    let first = Process::spawn_logging(&args, &[], "trace", log()).await;
    let env = Env::remote(&first.base, ISSUER);
    let token = ssf_token(&env).await;
    push_stream(&env, &token, &endpoint, &[TOKEN_REVOKED]).await;
    let access = client_token(
        &env,
        DEMO_RESOURCE_SERVER_ID,
        DEMO_RESOURCE_SERVER_SECRET,
        "read",
    )
    .await;
    let jti = text(&env.introspect(&access).await, "jti").to_owned();
    let response = env
        .http
        .post(env.url("/revoke"))
        .basic_auth(DEMO_RESOURCE_SERVER_ID, Some(DEMO_RESOURCE_SERVER_SECRET))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The revocation answered: its event is committed. Kill the provider before any delivery
    // can have succeeded (nobody listens at the receiver's address).
    first.stop().await;

    let listener = TcpListener::bind(receiver_addr).await.unwrap();
    let (receiver, _) = Receiver::serve(listener).await;
    let second = Process::spawn_logging(&args, &[], "trace", log()).await;
    let env = Env::remote(&second.base, ISSUER);
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(
        claims[0]["sub_id"],
        json!({"format": "jwt_id", "iss": ISSUER, "jti": jti})
    );
    assert_eq!(event_type(&claims[0]), TOKEN_REVOKED);
    env.assert_active(&access, false).await;
    second.stop().await;

    // The logs name the stream and the jti, never a SET, a token or the push Authorization
    // header.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains(&jti), "the logs were captured");
    let set = &receiver.accepted()[0];
    let signature = set.rsplit('.').next().unwrap();
    for secret in [
        set.as_str(),
        signature,
        token.as_str(),
        access.as_str(),
        "receiver-secret",
    ] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
}

// ---------------------------------------------------------------------------------------------
// Two instances on one PostgreSQL database.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_deliver_each_event_exactly_once() {
    use common::postgres::{TestDatabase, server_url};
    if server_url("two_instances_on_postgres_deliver_each_event_exactly_once").is_none() {
        return;
    }
    let database = TestDatabase::create().await;
    let storages: [Arc<dyn oauth_provider::storage::Storage>; 2] = [
        Arc::new(database.open().await),
        Arc::new(database.open().await),
    ];
    two_instances_deliver_each_event_exactly_once(storages).await;
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_deliver_each_event_exactly_once() {
    use oauth_provider::storage::SqliteStorage;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let first = SqliteStorage::open(&db).await.unwrap();
    let second = SqliteStorage::open(&db).await.unwrap();
    two_instances_deliver_each_event_exactly_once([Arc::new(first), Arc::new(second)]).await;
}

/// Two servers on one database (two pools, as two processes would have): 50 events queued
/// through both at once, each pushed once, whichever deliverer claimed it.
async fn two_instances_deliver_each_event_exactly_once(
    storages: [Arc<dyn oauth_provider::storage::Storage>; 2],
) {
    const EVENTS: usize = 50;
    let mut servers = Vec::new();
    for storage in storages {
        let mut config = ssf_config();
        config.issuer = Some("http://auth.test".to_owned());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        servers.push(
            Server::start_with_storage(config, listener, storage)
                .await
                .unwrap(),
        );
    }
    let envs: Vec<Env> = servers
        .iter()
        .map(|s| Env::remote(&s.base_url(), s.issuer()))
        .collect();
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&envs[0]).await;
    let stream_id = push_stream(&envs[0], &token, &endpoint, &[]).await;
    // Events queued through both instances, concurrently: both deliverers compete for them.
    let mut tasks = Vec::new();
    for i in 0..EVENTS {
        let env = Env::remote(&envs[i % 2].base, &envs[i % 2].issuer);
        let (token, stream_id) = (token.clone(), stream_id.clone());
        tasks.push(tokio::spawn(async move {
            verify_stream(&env, &token, &stream_id, &format!("e{i}")).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    wait_until("every event", || receiver.accepted().len() >= EVENTS).await;
    let storage = servers[0].state().storage().clone();
    let start = Instant::now();
    while storage.count_pending_outbox(&stream_id).await.unwrap() != 0 {
        assert!(start.elapsed() < DEADLINE, "events left pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut per_jti: HashMap<String, usize> = HashMap::new();
    for set in receiver.accepted() {
        *per_jti.entry(jti_of(&set)).or_default() += 1;
    }
    assert_eq!(per_jti.len(), EVENTS);
    assert!(per_jti.values().all(|n| *n == 1), "{per_jti:?}");
    assert_eq!(receiver.requests(), EVENTS);
    for set in receiver.accepted().iter().take(3) {
        verify_set(&envs[1], set, DEMO_SSF_RECEIVER_ID).await;
    }
    for server in servers {
        server.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The user administration commands, against a running instance's database.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_commands_change_users_and_running_instances_deliver_the_events() {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    const ISSUER: &str = "http://auth.test";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let storage_args = [
        "--demo",
        "--storage",
        "sqlite",
        "--sqlite-path",
        db.to_str().unwrap(),
        "--issuer",
        ISSUER,
    ];
    let mut server_args = storage_args.to_vec();
    server_args.extend([
        "--bind",
        "127.0.0.1:0",
        "--ssf-allow-http-loopback",
        "--ssf-poll-interval-ms",
        "100",
    ]);
    let server = Process::spawn(&server_args, &[]).await;
    let env = Env::remote(&server.base, ISSUER);
    let (receiver, endpoint) = Receiver::start().await;
    let token = ssf_token(&env).await;
    push_stream(
        &env,
        &token,
        &endpoint,
        &[ACCOUNT_DISABLED, CREDENTIAL_CHANGE],
    )
    .await;
    let client_id = env.public_client().await;
    let grant = env.tokens(&AuthRequest::new(&client_id)).await;

    let command = |args: &[&str]| {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(storage_args)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let output = command(&["disable-user", "nobody"]).output().await.unwrap();
    assert!(!output.status.success());
    let output = command(&["disable-user", "alice"]).output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 SSF event(s) queued"));
    let claims = accepted_claims(&env, &receiver, 1, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(event_type(&claims[0]), ACCOUNT_DISABLED);
    assert_eq!(
        claims[0]["sub_id"],
        json!({"format": "iss_sub", "iss": ISSUER, "sub": "alice"})
    );
    env.assert_active(text(&grant, "access_token"), false).await;

    let mut child = command(&["set-user-password", "bob"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"bobs-new-password\n").await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let claims = accepted_claims(&env, &receiver, 2, DEMO_SSF_RECEIVER_ID).await;
    assert_eq!(event_type(&claims[1]), CREDENTIAL_CHANGE);
    assert_eq!(claims[1]["sub_id"]["sub"], json!("bob"));
    env.authorize_and_approve(&AuthRequest::new(&client_id), "bob", "bobs-new-password")
        .await;

    let output = command(&["enable-user", "alice"]).output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    env.authorize_and_approve(&AuthRequest::new(&client_id), "alice", "password123")
        .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The outbox contract, on the storage directly.

async fn the_outbox_leases_retries_settles_and_purges(backend: Backend) {
    use oauth_provider::model::{Announcement, Delivery, Stream, StreamStatus};
    use oauth_provider::ssf::events::verification;
    let dir = tempfile::tempdir().unwrap();
    let (storage, _database) = open_storage(backend, &dir).await;
    oauth_provider::seed::seed_demo_clients(storage.as_ref(), 0)
        .await
        .unwrap();
    let stream = Stream {
        stream_id: "stream-1".to_owned(),
        client_id: DEMO_SSF_RECEIVER_ID.to_owned(),
        delivery: Delivery::Push {
            endpoint_url: "https://receiver.example/ssf".to_owned(),
            authorization_header: Some("Bearer x".to_owned()),
        },
        events_requested: Vec::new(),
        events_delivered: Vec::new(),
        description: None,
        status: StreamStatus::Enabled,
        created_at: 0,
    };
    assert!(storage.create_stream(&stream, 1).await.unwrap());
    let second = Stream {
        stream_id: "stream-2".to_owned(),
        ..stream.clone()
    };
    assert!(!storage.create_stream(&second, 1).await.unwrap(), "capped");
    assert_eq!(storage.get_stream("stream-1").await.unwrap(), Some(stream));

    let (now, now_ms) = (1_700_000_000_i64, 1_700_000_000_000_i64);
    let events = [
        verification("https://as.example", "stream-1", Some("a"), now),
        verification("https://as.example", "stream-1", Some("b"), now),
        verification("https://as.example", "stream-1", Some("c"), now),
    ];
    let announce = Announcement {
        events: &events,
        token_revoked_by: None,
        now,
        now_ms,
        max_pending_per_stream: 2,
    };
    let fanout = storage
        .announce_to_stream("stream-1", &announce)
        .await
        .unwrap();
    assert_eq!((fanout.queued, fanout.dropped), (2, 1));

    // Claimed once, with a lease; nobody else gets them meanwhile.
    let lease = now_ms + 30_000;
    let rows = storage.claim_outbox(now_ms, lease, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.attempts == 1 && r.stream_id == "stream-1")
    );
    assert!(rows[0].id < rows[1].id);
    assert_eq!(rows[0].claims, events[0].claims);
    assert!(
        storage
            .claim_outbox(now_ms + 1, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // One delivered; one released for a retry in a second.
    storage
        .finish_outbox(rows[0].id, now_ms, None)
        .await
        .unwrap();
    storage
        .retry_outbox(rows[1].id, now_ms + 1000, "HTTP 503")
        .await
        .unwrap();
    assert!(
        storage
            .claim_outbox(now_ms + 500, now_ms + 30_500, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let retried = storage
        .claim_outbox(now_ms + 1000, now_ms + 31_000, 10)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (rows[1].id, 2));
    assert_eq!(retried[0].jti, rows[1].jti, "the same jti on every attempt");
    assert_eq!(storage.count_pending_outbox("stream-1").await.unwrap(), 1);
    storage
        .finish_outbox(retried[0].id, now_ms + 1000, Some("invalid_key"))
        .await
        .unwrap();
    assert_eq!(storage.count_pending_outbox("stream-1").await.unwrap(), 0);

    // Settled rows stay a day, then the cleanup purges them.
    assert_eq!(storage.purge_expired(now + 3600).await.unwrap(), 0);
    assert_eq!(storage.purge_expired(now + 86_402).await.unwrap(), 2);

    // Paused: claimed by nobody; deleting the stream drops its rows.
    assert!(
        storage
            .set_stream_status("stream-1", DEMO_SSF_RECEIVER_ID, StreamStatus::Paused)
            .await
            .unwrap()
    );
    storage
        .announce_to_stream("stream-1", &announce)
        .await
        .unwrap();
    assert!(
        storage
            .claim_outbox(now_ms, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !storage
            .delete_stream("stream-1", "someone-else")
            .await
            .unwrap()
    );
    assert!(
        storage
            .delete_stream("stream-1", DEMO_SSF_RECEIVER_ID)
            .await
            .unwrap()
    );
    assert_eq!(storage.count_pending_outbox("stream-1").await.unwrap(), 0);
    storage.close().await;
}

/// Twenty transactions queue an event for one stream at once: the stream's cap of pending rows
/// holds exactly (on PostgreSQL the transactions run on several connections and would each see
/// room without the stream's lock).
async fn concurrent_announcements_never_exceed_a_streams_pending_cap(backend: Backend) {
    use oauth_provider::model::{Announcement, Delivery, Stream, StreamStatus};
    use oauth_provider::ssf::events::verification;
    const CAP: u64 = 5;
    const WRITERS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let (storage, _database) = open_storage(backend, &dir).await;
    oauth_provider::seed::seed_demo_clients(storage.as_ref(), 0)
        .await
        .unwrap();
    let stream = Stream {
        stream_id: "capped".to_owned(),
        client_id: DEMO_SSF_RECEIVER_ID.to_owned(),
        delivery: Delivery::Poll,
        events_requested: Vec::new(),
        events_delivered: Vec::new(),
        description: None,
        status: StreamStatus::Enabled,
        created_at: 0,
    };
    assert!(storage.create_stream(&stream, 1).await.unwrap());
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let events = [verification(
                    "https://as.example",
                    "capped",
                    Some(&format!("s{i}")),
                    1_700_000_000,
                )];
                let announce = Announcement {
                    events: &events,
                    token_revoked_by: None,
                    now: 1_700_000_000,
                    now_ms: 1_700_000_000_000,
                    max_pending_per_stream: CAP,
                };
                storage
                    .announce_to_stream("capped", &announce)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut queued, mut dropped) = (0, 0);
    for writer in writers {
        let fanout = writer.await.unwrap();
        queued += fanout.queued;
        dropped += fanout.dropped;
    }
    assert_eq!((queued, dropped), (CAP, WRITERS as u64 - CAP));
    assert_eq!(storage.count_pending_outbox("capped").await.unwrap(), CAP);
}
