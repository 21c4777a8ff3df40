//! DPoP at the token endpoint (RFC 9449): with a proof every grant issues `token_type: DPoP`
//! tokens bound to the proof's key (`cnf.jkt` in the JWT and in introspection), without one
//! `Bearer` tokens as before; proofs for another request, stale or replayed ones are refused
//! without consuming anything; a public client's refresh token is bound to its key; `dpop_jkt`
//! binds a code; `dpop_bound_access_tokens` clients must send proofs; server nonces; the
//! bindings survive a restart on SQLite.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use oauth_provider::{AccessTokenFormat, Clock, Config, NonceSecret, Server, StorageConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tower_introspect::dpop::{DpopKey, ProofOptions};
use tower_introspect::jwt::JwsAlgorithm;

backend_tests!(
    every_grant_binds_with_a_proof_and_issues_bearer_tokens_without,
    a_replayed_proof_is_refused_and_the_grant_stays_usable,
    proofs_for_another_request_or_time_are_refused_and_consume_nothing,
    a_public_clients_refresh_token_is_bound_to_its_key,
    dpop_jkt_binds_the_authorization_code,
    a_dpop_bound_client_must_send_a_proof,
);

fn es256() -> DpopKey {
    DpopKey::generate(JwsAlgorithm::ES256).expect("key")
}

/// The token endpoint URL the metadata advertises (what `htu` must be).
fn token_url(env: &Env) -> String {
    format!("{}/token", env.issuer)
}

/// A fresh proof for `POST /token`.
fn proof(env: &Env, key: &DpopKey) -> String {
    key.proof("POST", &token_url(env), None, None)
}

/// `POST /token` with the given `DPoP` headers and, for confidential clients, HTTP Basic.
async fn token_with(
    env: &Env,
    form: &[(&str, &str)],
    proofs: &[&str],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = env.http.post(env.url("/token")).form(form);
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token");
    let headers = response.headers().clone();
    let (status, body) = json_of(response).await;
    (status, body, headers)
}

#[track_caller]
fn assert_dpop_error(result: &(StatusCode, Value, HeaderMap), error: &str) {
    assert_error(
        &(result.0, result.1.clone()),
        StatusCode::BAD_REQUEST,
        error,
    );
}

#[track_caller]
fn assert_issued(result: &(StatusCode, Value, HeaderMap), token_type: &str) -> Value {
    assert_eq!(result.0, StatusCode::OK, "{}", result.1);
    assert_eq!(result.1["token_type"], json!(token_type), "{}", result.1);
    result.1.clone()
}

fn text(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
        .to_owned()
}

/// Asserts how the access token introspects: bound to `jkt` (`token_type: DPoP`, `cnf.jkt`) or
/// an unbound bearer token.
async fn assert_binding(env: &Env, access_token: &str, jkt: Option<&str>) {
    let body = env.introspect(access_token).await;
    assert_eq!(body["active"], json!(true), "{body}");
    match jkt {
        Some(jkt) => {
            assert_eq!(body["token_type"], json!("DPoP"), "{body}");
            assert_eq!(body["cnf"], json!({ "jkt": jkt }), "{body}");
        }
        None => {
            assert_eq!(body["token_type"], json!("Bearer"), "{body}");
            assert!(body.get("cnf").is_none(), "{body}");
        }
    }
}

/// The stored binding of a raw token.
async fn stored_jkt(env: &Env, raw: &str) -> Option<String> {
    env.stored_token(raw).await.expect("stored").dpop_jkt
}

/// Authorize → login → approve with extra authorization request parameters; the code.
async fn code_with(env: &Env, req: &AuthRequest, extra: &[(&str, &str)]) -> String {
    let mut query = req.query();
    query.extend_from_slice(extra);
    let resp = env.authorize(&query).await;
    assert_eq!(resp.status(), StatusCode::OK, "login page");
    let page = resp.text().await.unwrap();
    let page = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    let resp = env.decide(&page, "approve").await;
    redirect_params(&resp, &req.redirect_uri)["code"].clone()
}

fn refresh_form<'a>(client_id: &'a str, refresh_token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ]
}

async fn every_grant_binds_with_a_proof_and_issues_bearer_tokens_without(backend: Backend) {
    let env = Env::start(backend).await;
    let key = es256();
    let jkt = Some(key.thumbprint());

    // Public client: authorization code, then refresh, with proofs.
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), jkt).await;
    let rt = text(&body, "refresh_token");
    let body = assert_issued(
        &token_with(
            &env,
            &refresh_form(&client_id, &rt),
            &[&proof(&env, &key)],
            None,
        )
        .await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), jkt).await;

    // Without a proof: bearer tokens, as before.
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[], None).await,
        "Bearer",
    );
    assert_binding(&env, &text(&body, "access_token"), None).await;
    let rt = text(&body, "refresh_token");
    assert_eq!(stored_jkt(&env, &rt).await, None);
    let body = assert_issued(
        &token_with(&env, &refresh_form(&client_id, &rt), &[], None).await,
        "Bearer",
    );
    assert_binding(&env, &text(&body, "access_token"), None).await;

    // Confidential client: client credentials with and without a proof.
    let (id, secret) = env
        .confidential_client(json!([
            "authorization_code",
            "refresh_token",
            "client_credentials"
        ]))
        .await;
    let basic = Some((id.as_str(), secret.as_str()));
    let cc = [("grant_type", "client_credentials")];
    let body = assert_issued(
        &token_with(&env, &cc, &[&proof(&env, &key)], basic).await,
        "DPoP",
    );
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_binding(&env, &text(&body, "access_token"), jkt).await;
    let body = assert_issued(&token_with(&env, &cc, &[], basic).await, "Bearer");
    assert_binding(&env, &text(&body, "access_token"), None).await;

    // Its refresh token is not bound (its authentication protects it), but a proof at refresh
    // binds the new access token.
    let req = AuthRequest::new(&id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[&proof(&env, &key)], basic).await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), jkt).await;
    let rt = text(&body, "refresh_token");
    assert_eq!(stored_jkt(&env, &rt).await, None);
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", &rt)];
    let body = assert_issued(&token_with(&env, &refresh, &[], basic).await, "Bearer");
    assert_binding(&env, &text(&body, "access_token"), None).await;
    let rt = text(&body, "refresh_token");
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", &rt)];
    let body = assert_issued(
        &token_with(&env, &refresh, &[&proof(&env, &key)], basic).await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), jkt).await;
    assert_eq!(stored_jkt(&env, &text(&body, "refresh_token")).await, None);
    env.shutdown().await;
}

/// The claims of a JWT, unverified (the JWT tests verify signatures; here only `cnf` matters).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_access_tokens_carry_cnf_jkt() {
    let config = test_config().with_access_token_format(AccessTokenFormat::Jwt);
    let env = Env::start_with(Backend::Memory, config).await;
    let key = DpopKey::generate(JwsAlgorithm::EdDSA).unwrap();
    let cnf = json!({ "jkt": key.thumbprint() });

    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    let at = text(&body, "access_token");
    assert_eq!(jwt_claims(&at)["cnf"], cnf);
    assert_binding(&env, &at, Some(key.thumbprint())).await;
    let rt = text(&body, "refresh_token");
    let body = assert_issued(
        &token_with(
            &env,
            &refresh_form(&client_id, &rt),
            &[&proof(&env, &key)],
            None,
        )
        .await,
        "DPoP",
    );
    assert_eq!(jwt_claims(&text(&body, "access_token"))["cnf"], cnf);

    let (id, secret) = env.confidential_client(json!(["client_credentials"])).await;
    let basic = Some((id.as_str(), secret.as_str()));
    let cc = [("grant_type", "client_credentials")];
    let body = assert_issued(
        &token_with(&env, &cc, &[&proof(&env, &key)], basic).await,
        "DPoP",
    );
    let at = text(&body, "access_token");
    assert_eq!(jwt_claims(&at)["cnf"], cnf);
    assert_binding(&env, &at, Some(key.thumbprint())).await;
    // Without a proof: no cnf at all.
    let body = assert_issued(&token_with(&env, &cc, &[], basic).await, "Bearer");
    let at = text(&body, "access_token");
    assert!(jwt_claims(&at).get("cnf").is_none());
    assert_binding(&env, &at, None).await;
    env.shutdown().await;
}

async fn a_replayed_proof_is_refused_and_the_grant_stays_usable(backend: Backend) {
    let env = Env::start(backend).await;
    let key = es256();
    let client_id = env.public_client().await;
    let (first, second) = (AuthRequest::new(&client_id), AuthRequest::new(&client_id));
    let (first_code, second_code) = (env.code(&first).await, env.code(&second).await);

    let used = proof(&env, &key);
    assert_issued(
        &token_with(&env, &first.redeem_form(&first_code), &[&used], None).await,
        "DPoP",
    );
    let replay = token_with(&env, &second.redeem_form(&second_code), &[&used], None).await;
    assert_dpop_error(&replay, "invalid_dpop_proof");
    // The code was not consumed.
    let body = assert_issued(
        &token_with(
            &env,
            &second.redeem_form(&second_code),
            &[&proof(&env, &key)],
            None,
        )
        .await,
        "DPoP",
    );

    // The same at refresh: the refused refresh token is neither rotated nor taken for reuse.
    let rt = text(&body, "refresh_token");
    let used = proof(&env, &key);
    let body = assert_issued(
        &token_with(&env, &refresh_form(&client_id, &rt), &[&used], None).await,
        "DPoP",
    );
    let rt = text(&body, "refresh_token");
    let replay = token_with(&env, &refresh_form(&client_id, &rt), &[&used], None).await;
    assert_dpop_error(&replay, "invalid_dpop_proof");
    env.assert_refresh_usable(&rt, true).await;
    let body = assert_issued(
        &token_with(
            &env,
            &refresh_form(&client_id, &rt),
            &[&proof(&env, &key)],
            None,
        )
        .await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), Some(key.thumbprint())).await;
    env.shutdown().await;
}

async fn proofs_for_another_request_or_time_are_refused_and_consume_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let key = es256();
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let form = req.redeem_form(&code);
    let url = token_url(&env);

    let ten_minutes_ago = {
        let mut options = ProofOptions::new(None, None);
        options.issued_at = Some(SystemTime::now() - Duration::from_secs(600));
        key.proof_with("POST", &url, &options)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let not_dpop_typ = key.sign_raw(
        &json!({ "typ": "JWT", "alg": "ES256", "jwk": key.public_jwk() }),
        &json!({ "jti": "x1", "htm": "POST", "htu": url, "iat": now }),
    );
    for (what, proofs) in [
        ("another method", vec![key.proof("GET", &url, None, None)]),
        (
            "another URL",
            vec![key.proof("POST", &format!("{}/introspect", env.issuer), None, None)],
        ),
        (
            "another server",
            vec![key.proof("POST", "https://elsewhere.example/token", None, None)],
        ),
        ("iat 10 minutes old", vec![ten_minutes_ago]),
        ("typ JWT", vec![not_dpop_typ]),
        ("not a JWS", vec!["not-a-proof".to_owned()]),
        ("two headers", vec![proof(&env, &key), proof(&env, &key)]),
    ] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let result = token_with(&env, &form, &proofs, None).await;
        assert_eq!(result.0, StatusCode::BAD_REQUEST, "{what}: {}", result.1);
        assert_eq!(result.1["error"], json!("invalid_dpop_proof"), "{what}");
    }
    // Nothing was consumed.
    assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    env.shutdown().await;
}

async fn a_public_clients_refresh_token_is_bound_to_its_key(backend: Backend) {
    let env = Env::start(backend).await;
    let (key, other) = (es256(), es256());
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    let rt = text(&body, "refresh_token");
    assert_eq!(
        stored_jkt(&env, &rt).await.as_deref(),
        Some(key.thumbprint())
    );

    // No proof, or another key: refused, nothing rotated, no reuse alarm.
    let form = refresh_form(&client_id, &rt);
    assert_dpop_error(
        &token_with(&env, &form, &[], None).await,
        "invalid_dpop_proof",
    );
    assert_dpop_error(
        &token_with(&env, &form, &[&proof(&env, &other)], None).await,
        "invalid_dpop_proof",
    );
    env.assert_refresh_usable(&rt, true).await;
    env.assert_active(&text(&body, "access_token"), true).await;

    // The right key: the new pair stays bound to it.
    let body = assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), Some(key.thumbprint())).await;
    let rt = text(&body, "refresh_token");
    assert_eq!(
        stored_jkt(&env, &rt).await.as_deref(),
        Some(key.thumbprint())
    );
    let form = refresh_form(&client_id, &rt);
    assert_dpop_error(
        &token_with(&env, &form, &[&proof(&env, &other)], None).await,
        "invalid_dpop_proof",
    );
    env.assert_refresh_usable(&rt, true).await;
    assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    env.shutdown().await;
}

async fn dpop_jkt_binds_the_authorization_code(backend: Backend) {
    let env = Env::start(backend).await;
    let (key, other) = (es256(), es256());
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = code_with(&env, &req, &[("dpop_jkt", key.thumbprint())]).await;
    let form = req.redeem_form(&code);
    assert_dpop_error(
        &token_with(&env, &form, &[], None).await,
        "invalid_dpop_proof",
    );
    assert_dpop_error(
        &token_with(&env, &form, &[&proof(&env, &other)], None).await,
        "invalid_dpop_proof",
    );
    let body = assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    assert_binding(&env, &text(&body, "access_token"), Some(key.thumbprint())).await;

    // A malformed dpop_jkt is an invalid_request redirect.
    for bad in [
        "short",
        &format!("{}=", &key.thumbprint()[..42]),
        "a".repeat(44).as_str(),
    ] {
        let mut query = req.query();
        query.push(("dpop_jkt", bad));
        let resp = env.authorize(&query).await;
        let params = redirect_params(&resp, &req.redirect_uri);
        assert_eq!(params["error"], "invalid_request", "{bad}");
    }
    env.shutdown().await;
}

async fn a_dpop_bound_client_must_send_a_proof(backend: Backend) {
    let env = Env::start(backend).await;
    let key = es256();
    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "dpop_bound_access_tokens": true,
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["dpop_bound_access_tokens"], json!(true));
    let client_id = text(&body, "client_id");
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let form = req.redeem_form(&code);
    assert_dpop_error(
        &token_with(&env, &form, &[], None).await,
        "invalid_dpop_proof",
    );
    assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );

    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "dpop_bound_access_tokens": "yes",
        }))
        .await;
    assert_error(
        &(status, body),
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
    );
    env.shutdown().await;
}

const NONCE_SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_required_when_configured() {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let clock = Clock::manual(start as i64);
    let config = Config {
        dpop_nonce_secret: Some(NonceSecret::parse(NONCE_SECRET).unwrap()),
        clock: clock.clone(),
        ..test_config()
    };
    let env = Env::start_with(Backend::Memory, config).await;
    let key = es256();
    let url = token_url(&env);
    let client_id = env.public_client().await;
    let (first, second) = (AuthRequest::new(&client_id), AuthRequest::new(&client_id));
    let (first_code, second_code) = (env.code(&first).await, env.code(&second).await);
    let form = first.redeem_form(&first_code);

    // No nonce, or one the server never made: use_dpop_nonce and a nonce to retry with.
    let forged = "A".repeat(32);
    for nonce in [None, Some(forged.as_str())] {
        let result = token_with(&env, &form, &[&key.proof("POST", &url, None, nonce)], None).await;
        assert_dpop_error(&result, "use_dpop_nonce");
        assert!(result.2.contains_key("dpop-nonce"), "{:?}", result.2);
    }
    let refused = token_with(&env, &form, &[&proof(&env, &key)], None).await;
    let nonce = refused.2["dpop-nonce"].to_str().unwrap().to_owned();
    let result = token_with(
        &env,
        &form,
        &[&key.proof("POST", &url, None, Some(&nonce))],
        None,
    )
    .await;
    assert_issued(&result, "DPoP");
    // A current nonce needs no replacement.
    assert!(!result.2.contains_key("dpop-nonce"));

    // One rotation later the nonce is stale: still accepted, and the answer carries the next.
    clock.advance(300);
    let mut options = ProofOptions::new(None, Some(&nonce));
    options.issued_at = Some(UNIX_EPOCH + Duration::from_secs(start + 300));
    let stale = key.proof_with("POST", &url, &options);
    let result = token_with(&env, &second.redeem_form(&second_code), &[&stale], None).await;
    assert_issued(&result, "DPoP");
    let next = result.2["dpop-nonce"].to_str().unwrap();
    assert_ne!(next, nonce);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_the_proof_algorithms() {
    let env = Env::start(Backend::Memory).await;
    let (status, body) = json_of(
        env.http
            .get(env.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<&str> = JwsAlgorithm::DEFAULT_ALLOWED
        .iter()
        .map(|alg| alg.name())
        .collect();
    assert_eq!(body["dpop_signing_alg_values_supported"], json!(expected));
    assert_eq!(
        body["dpop_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "EdDSA"])
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config().with_storage(StorageConfig::Sqlite {
        path: dir.path().join("oauth.db"),
    });
    let server = Server::bind(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));
    let (key, other) = (es256(), es256());

    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let body = assert_issued(
        &token_with(&env, &req.redeem_form(&code), &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    let (at, rt) = (text(&body, "access_token"), text(&body, "refresh_token"));
    let pending_req = AuthRequest::new(&client_id);
    let pending_code = code_with(&env, &pending_req, &[("dpop_jkt", key.thumbprint())]).await;
    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "dpop_bound_access_tokens": true,
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bound_client = text(&body, "client_id");
    let dir = env.shutdown().await.unwrap();

    // Same file, new process state, new port (so a new token endpoint URL).
    let server = Server::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));
    assert_binding(&env, &at, Some(key.thumbprint())).await;
    let form = refresh_form(&client_id, &rt);
    assert_dpop_error(
        &token_with(&env, &form, &[], None).await,
        "invalid_dpop_proof",
    );
    assert_dpop_error(
        &token_with(&env, &form, &[&proof(&env, &other)], None).await,
        "invalid_dpop_proof",
    );
    assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    let form = pending_req.redeem_form(&pending_code);
    assert_dpop_error(
        &token_with(&env, &form, &[&proof(&env, &other)], None).await,
        "invalid_dpop_proof",
    );
    assert_issued(
        &token_with(&env, &form, &[&proof(&env, &key)], None).await,
        "DPoP",
    );
    let req = AuthRequest::new(&bound_client);
    let code = env.code(&req).await;
    assert_dpop_error(
        &token_with(&env, &req.redeem_form(&code), &[], None).await,
        "invalid_dpop_proof",
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_nonce_secret_from_its_environment() {
    let process = Process::spawn(
        &[],
        &[
            ("OAUTH_STORAGE_BACKEND", "memory"),
            ("OAUTH_BIND", "127.0.0.1:0"),
            ("OAUTH_DEMO", "1"),
            ("OAUTH_DPOP_NONCE_SECRET", NONCE_SECRET),
        ],
    )
    .await;
    let env = Env::remote(&process.base, &process.base.clone());
    let key = es256();
    let basic = Some((
        oauth_provider::DEMO_RESOURCE_SERVER_ID,
        oauth_provider::DEMO_RESOURCE_SERVER_SECRET,
    ));
    let cc = [("grant_type", "client_credentials")];
    let refused = token_with(&env, &cc, &[&proof(&env, &key)], basic).await;
    assert_dpop_error(&refused, "use_dpop_nonce");
    let nonce = refused.2["dpop-nonce"].to_str().unwrap();
    let with_nonce = key.proof("POST", &token_url(&env), None, Some(nonce));
    assert_issued(&token_with(&env, &cc, &[&with_nonce], basic).await, "DPoP");
    process.stop().await;

    // A secret shorter than 32 bytes stops the binary before it listens.
    let out = tokio::process::Command::new(BIN)
        .args(["--storage", "memory", "--bind", "127.0.0.1:0"])
        .args(["--dpop-nonce-secret", "00112233445566778899aabbccddeeff"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 random bytes"), "{stderr}");
}
