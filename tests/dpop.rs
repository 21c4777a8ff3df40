//! DPoP (RFC 9449) at the bearer layer, as an attacker would try it: a real axum server on
//! loopback, a wiremock authorization server that introspects bound and unbound tokens (or a
//! JWT issuer), and proofs signed by `DpopKey`. Every refusal is asserted with its exact status
//! and challenge, and with what the handler and the authorization server saw.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_introspect::BearerAuthLayer;
use tower_introspect::claims::VerifierKind;
use tower_introspect::dpop::{Dpop, DpopKey, DpopPolicy, NonceSource, ProofChecker, ProofOptions};
use tower_introspect::jwt::{JwsAlgorithm, JwtIssuer, JwtVerifier};
use tower_introspect::metadata::ProtectedResourceMetadata;
use wiremock::MockServer;

const ALGS: &str = r#"algs="RS256 PS256 ES256 EdDSA""#;

fn es256() -> DpopKey {
    DpopKey::generate(JwsAlgorithm::ES256).unwrap()
}

/// An introspection answer for a token bound to `key`.
fn bound_to(key: &DpopKey) -> Value {
    let mut body = active("alice", "read");
    body["token_type"] = json!("DPoP");
    body["cnf"] = json!({"jkt": key.thumbprint()});
    body
}

/// A loopback listener, so that the app can be built knowing its own origin.
async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

fn start(listener: tokio::net::TcpListener, router: Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The recording app behind an introspection layer at `server`, with `dpop` if given.
async fn app(server: &MockServer, dpop: impl FnOnce(&str) -> Option<Dpop>) -> (String, Seen) {
    let (listener, origin) = listen().await;
    let seen = Seen::default();
    let mut layer = BearerAuthLayer::introspect(introspector_for(server).build().unwrap());
    if let Some(dpop) = dpop(&origin) {
        layer = layer.dpop(dpop);
    }
    start(listener, recording_app(&seen).layer(layer));
    (origin, seen)
}

fn allowed(origin: &str) -> Option<Dpop> {
    Some(Dpop::builder().origin(origin).build().unwrap())
}

fn required(origin: &str) -> Option<Dpop> {
    Some(
        Dpop::builder()
            .origin(origin)
            .policy(DpopPolicy::Required)
            .build()
            .unwrap(),
    )
}

#[derive(Debug)]
struct Reply {
    status: u16,
    challenge: Option<String>,
    nonce: Option<String>,
}

/// Sends `method` to `url` with the given `Authorization` and `DPoP` header values.
async fn send(method: &str, url: &str, authorization: Option<&str>, proofs: &[&str]) -> Reply {
    let mut request = client().request(method.parse().unwrap(), url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        challenge: header(&response, "www-authenticate"),
        nonce: header(&response, "dpop-nonce"),
    }
}

/// A `GET {origin}/mcp` with the token as DPoP and a fresh proof of `key`.
async fn get_with_proof(origin: &str, token: &str, key: &DpopKey) -> Reply {
    let url = format!("{origin}/mcp");
    let proof = key.proof("GET", &url, Some(token), None);
    send("GET", &url, Some(&format!("DPoP {token}")), &[&proof]).await
}

/// The challenge of an `invalid_dpop_proof` refusal when bearer tokens are also accepted.
fn proof_refused(description: &str) -> String {
    format!(r#"Bearer, DPoP error="invalid_dpop_proof", error_description="{description}", {ALGS}"#)
}

fn token_refused_dpop(description: &str) -> String {
    format!(r#"Bearer, DPoP error="invalid_token", error_description="{description}", {ALGS}"#)
}

#[tokio::test]
async fn a_bound_token_with_fresh_proofs_passes_every_time_and_is_introspected_once() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let (origin, seen) = app(&server, allowed).await;
    for _ in 0..3 {
        let reply = get_with_proof(&origin, "bound-1", &key).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert_eq!(seen.calls(), 3);
    let principal = seen.last().unwrap();
    assert_eq!(principal.subject(), Some("alice"));
    assert_eq!(principal.confirmation_thumbprint(), Some(key.thumbprint()));
    // An EdDSA key works the same way.
    let ed = DpopKey::generate(JwsAlgorithm::EdDSA).unwrap();
    expect_introspection(&server, "bound-ed", bound_to(&ed), 1).await;
    assert_eq!(get_with_proof(&origin, "bound-ed", &ed).await.status, 200);
}

#[tokio::test]
async fn a_replayed_proof_is_refused_even_on_a_cached_verdict() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let (origin, seen) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    let proof = key.proof("GET", &url, Some("bound-1"), None);
    let first = send("GET", &url, Some("DPoP bound-1"), &[&proof]).await;
    assert_eq!(first.status, 200);
    let replay = send("GET", &url, Some("DPoP bound-1"), &[&proof]).await;
    assert_eq!(replay.status, 401);
    assert_eq!(
        replay.challenge.unwrap(),
        proof_refused("The DPoP proof was already used")
    );
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn the_downgrade_a_bound_token_sent_as_bearer_is_refused_under_every_policy() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 3).await;
    let description =
        "The access token is bound to a key: present it with the DPoP scheme and a proof";
    // Allowed: the DPoP challenge carries the error, the bearer one sits beside it.
    let (origin, seen) = app(&server, allowed).await;
    let reply = send("GET", &format!("{origin}/mcp"), Some("Bearer bound-1"), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.unwrap(), token_refused_dpop(description));
    // DPoP not configured at all: still refused, with a bearer-only challenge.
    let (plain, seen_plain) = app(&server, |_| None).await;
    let reply = send("GET", &format!("{plain}/mcp"), Some("Bearer bound-1"), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        format!(r#"Bearer error="invalid_token", error_description="{description}""#)
    );
    // Disabled: the same.
    let (disabled, _) = app(&server, |_| {
        Some(
            Dpop::builder()
                .policy(DpopPolicy::Disabled)
                .build()
                .unwrap(),
        )
    })
    .await;
    let reply = send(
        "GET",
        &format!("{disabled}/mcp"),
        Some("Bearer bound-1"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 401);
    // A proof sent along does not help a bearer-scheme request.
    let proof = key.proof("GET", &format!("{origin}/mcp"), Some("bound-1"), None);
    let reply = send(
        "GET",
        &format!("{origin}/mcp"),
        Some("Bearer bound-1"),
        &[&proof],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(seen.calls() + seen_plain.calls(), 0);
}

#[tokio::test]
async fn a_token_bound_by_a_method_the_layer_cannot_check_is_refused_however_presented() {
    let server = MockServer::start().await;
    let key = es256();
    let certificate = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
    let with_cnf = |cnf: Value| {
        let mut body = active("alice", "read");
        body["cnf"] = cnf;
        body
    };
    // Mutual TLS (RFC 8705), a JWK, a jkt that is not a string, a cnf that is not an object,
    // and a DPoP key plus a certificate: each introspected once, then refused from the cache.
    let cases = [
        ("mtls-1", certificate.clone()),
        (
            "jwk-1",
            json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}),
        ),
        ("number-1", json!({"jkt": 5})),
        ("string-1", json!("jkt")),
        (
            "both-1",
            json!({"jkt": key.thumbprint(), "x5t#S256": certificate["x5t#S256"]}),
        ),
    ];
    for (token, cnf) in &cases {
        expect_introspection(&server, token, with_cnf(cnf.clone()), 1).await;
    }
    let description =
        "The access token is bound by a confirmation method this resource cannot verify";
    let (origin, seen) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    for (token, _) in &cases {
        for _ in 0..2 {
            let reply = send("GET", &url, Some(&format!("Bearer {token}")), &[]).await;
            assert_eq!(reply.status, 401, "{token}");
            assert_eq!(
                reply.challenge.as_deref(),
                Some(format!(r#"Bearer error="invalid_token", error_description="{description}", DPoP {ALGS}"#).as_str()),
                "{token}"
            );
        }
    }
    // With the DPoP scheme and a valid proof of the jkt key: the certificate binding still
    // cannot be checked.
    let reply = get_with_proof(&origin, "both-1", &key).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.challenge.unwrap().contains(description),
        "refused for the binding"
    );
    assert_eq!(seen.calls(), 0);

    // Opted in (something else enforces the certificate binding): the certificate-bound token
    // passes as a bearer token; the DPoP key of the other one is still enforced.
    let opted_in = MockServer::start().await;
    expect_introspection(&opted_in, "mtls-1", with_cnf(certificate.clone()), 1).await;
    expect_introspection(&opted_in, "both-1", with_cnf(cases[4].1.clone()), 1).await;
    expect_introspection(&opted_in, "number-1", with_cnf(cases[2].1.clone()), 1).await;
    expect_introspection(&opted_in, "string-1", with_cnf(cases[3].1.clone()), 1).await;
    let (listener, origin) = listen().await;
    let seen = Seen::default();
    let layer = BearerAuthLayer::introspect(introspector_for(&opted_in).build().unwrap())
        .dpop(allowed(&origin).unwrap())
        .accept_unverifiable_bindings(true);
    start(listener, recording_app(&seen).layer(layer));
    let url = format!("{origin}/mcp");
    assert_eq!(
        send("GET", &url, Some("Bearer mtls-1"), &[]).await.status,
        200
    );
    assert_eq!(
        send("GET", &url, Some("Bearer both-1"), &[]).await.status,
        401
    );
    assert_eq!(get_with_proof(&origin, "both-1", &key).await.status, 200);
    // A malformed binding is no other method: still refused.
    for token in ["number-1", "string-1"] {
        let reply = send("GET", &url, Some(&format!("Bearer {token}")), &[]).await;
        assert_eq!(reply.status, 401, "{token}");
        assert!(reply.challenge.unwrap().contains(description), "{token}");
    }
    assert_eq!(seen.calls(), 2);
}

#[tokio::test]
async fn an_unbound_token_sent_with_the_dpop_scheme_is_refused_and_works_as_bearer() {
    let server = MockServer::start().await;
    expect_introspection(&server, "plain-1", active("bob", "read"), 1).await;
    let (origin, seen) = app(&server, allowed).await;
    let reply = get_with_proof(&origin, "plain-1", &es256()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        token_refused_dpop("The access token is not bound to a DPoP key")
    );
    let reply = send("GET", &format!("{origin}/mcp"), Some("Bearer plain-1"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(seen.calls(), 1);
    assert_eq!(seen.last().unwrap().confirmation_thumbprint(), None);
}

#[tokio::test]
async fn a_proof_for_another_request_token_or_key_is_refused() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let (origin, seen) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    let dpop = Some("DPoP bound-1");
    let cases = [
        (
            key.proof("POST", &url, Some("bound-1"), None),
            "The DPoP proof is for another HTTP method",
        ),
        (
            key.proof("GET", &format!("{origin}/other"), Some("bound-1"), None),
            "The DPoP proof is for another URL",
        ),
        (
            key.proof("GET", "http://127.0.0.1:1/mcp", Some("bound-1"), None),
            "The DPoP proof is for another URL",
        ),
        (
            key.proof("GET", &url, Some("another-token"), None),
            "The DPoP proof is not bound to this access token",
        ),
        (
            key.proof("GET", &url, None, None),
            "The DPoP proof is not bound to this access token",
        ),
    ];
    for (proof, description) in cases {
        let reply = send("GET", &url, dpop, &[&proof]).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.challenge.unwrap(), proof_refused(description));
    }
    // Signed by another key than the token's cnf.jkt: the token is verified, the binding is not.
    let thief = es256();
    let reply = send(
        "GET",
        &url,
        dpop,
        &[&thief.proof("GET", &url, Some("bound-1"), None)],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        proof_refused("The DPoP proof's key is not the key the token is bound to")
    );
    // The query does not take part in htu.
    let with_query = format!("{url}?page=2");
    let proof = key.proof("GET", &with_query, Some("bound-1"), None);
    assert_eq!(send("GET", &with_query, dpop, &[&proof]).await.status, 200);
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn iat_outside_the_window_is_refused() {
    let server = MockServer::start().await;
    let key = es256();
    let (origin, seen) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    for offset in [-600i64, 600] {
        let issued_at = if offset < 0 {
            SystemTime::now() - Duration::from_secs(600)
        } else {
            SystemTime::now() + Duration::from_secs(600)
        };
        let options = ProofOptions::new(Some("bound-1"), None).issued_at(issued_at);
        let proof = key.proof_with("GET", &url, &options);
        let reply = send("GET", &url, Some("DPoP bound-1"), &[&proof]).await;
        assert_eq!(reply.status, 401, "{offset}");
        assert_eq!(
            reply.challenge.unwrap(),
            proof_refused("The DPoP proof was not issued recently")
        );
    }
    assert_eq!(seen.calls(), 0);
    // No token was introspected for a refused proof.
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn forged_keys_and_algorithms_are_refused_before_any_introspection() {
    let server = MockServer::start().await;
    let key = es256();
    let (origin, _) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
    let claims = json!({
        "jti": "forged-1", "htm": "GET", "htu": url, "iat": now(),
        "ath": URL_SAFE_NO_PAD.encode(sha256(b"bound-1")),
    });
    let mut private = header.clone();
    private["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let unsigned = |alg: &str, signature: &str| {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let cases = [
        (
            key.sign_raw(&private, &claims),
            "The DPoP proof's key is not an acceptable public key",
        ),
        (unsigned("none", ""), "The DPoP proof is malformed"),
        (
            unsigned("HS256", "c2lnbmF0dXJl"),
            "The DPoP proof's algorithm is not supported",
        ),
        (
            key.sign_raw(&json!({"alg": "ES256", "jwk": key.public_jwk()}), &claims),
            "The DPoP proof's typ is not dpop+jwt",
        ),
    ];
    for (proof, description) in cases {
        let reply = send("GET", &url, Some("DPoP bound-1"), &[&proof]).await;
        assert_eq!(reply.status, 401, "{description}");
        assert_eq!(reply.challenge.unwrap(), proof_refused(description));
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

#[tokio::test]
async fn a_proof_without_a_token_and_a_token_without_a_proof() {
    let server = MockServer::start().await;
    let key = es256();
    let (origin, seen) = app(&server, allowed).await;
    let url = format!("{origin}/mcp");
    // A proof alone is no credential: the ordinary no-token challenge, for both schemes.
    let proof = key.proof("GET", &url, Some("bound-1"), None);
    let reply = send("GET", &url, None, &[&proof]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.unwrap(), format!("Bearer, DPoP {ALGS}"));
    // A DPoP token without a proof, or with two.
    for proofs in [vec![], vec![proof.as_str(), proof.as_str()]] {
        let reply = send("GET", &url, Some("DPoP bound-1"), &proofs).await;
        assert_eq!(reply.status, 401);
        assert_eq!(
            reply.challenge.unwrap(),
            proof_refused("Exactly one DPoP proof header is required")
        );
    }
    // A malformed DPoP authorization header.
    let reply = send("GET", &url, Some("DPoP"), &[&proof]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.challenge.unwrap(),
        r#"Bearer, DPoP error="invalid_request", error_description="The DPoP access token is missing", algs="RS256 PS256 ES256 EdDSA""#
    );
    assert_eq!(seen.calls(), 0);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn required_refuses_bearer_tokens_without_verifying_them() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let (origin, seen) = app(&server, required).await;
    let url = format!("{origin}/mcp");
    let reply = send("GET", &url, None, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.unwrap(), format!("DPoP {ALGS}"));
    let reply = send("GET", &url, Some("Bearer plain-1"), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        format!(
            r#"DPoP error="invalid_token", error_description="This resource accepts DPoP-bound access tokens only", {ALGS}"#
        )
    );
    assert_eq!(get_with_proof(&origin, "bound-1", &key).await.status, 200);
    assert_eq!(seen.calls(), 1);
    // Only bound-1 was introspected (the mock expects exactly one call, for it).
}

#[tokio::test]
async fn without_dpop_configured_the_scheme_is_not_recognised() {
    let server = MockServer::start().await;
    let key = es256();
    let (origin, _) = app(&server, |_| None).await;
    let reply = get_with_proof(&origin, "bound-1", &key).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.unwrap(), "Bearer");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn two_layers_behind_one_balancer_share_the_nonce_key() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 2).await;
    let secret = [42u8; 32];
    // Both instances answer under the one public origin the balancer exposes; each is reached
    // here on its own port, so each lists both origins.
    let (listener_a, origin_a) = listen().await;
    let (listener_b, origin_b) = listen().await;
    let mut seen = Vec::new();
    for listener in [listener_a, listener_b] {
        let checker = ProofChecker::builder()
            .nonces(NonceSource::new(secret, Duration::from_secs(300)).unwrap())
            .build()
            .unwrap();
        let dpop = Dpop::builder()
            .origin(&origin_a)
            .origin(&origin_b)
            .checker(checker)
            .build()
            .unwrap();
        let instance_seen = Seen::default();
        let layer =
            BearerAuthLayer::introspect(introspector_for(&server).build().unwrap()).dpop(dpop);
        start(listener, recording_app(&instance_seen).layer(layer));
        seen.push(instance_seen);
    }
    // Without a nonce, instance A asks for one.
    let reply = get_with_proof(&origin_a, "bound-1", &key).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        r#"Bearer, DPoP error="use_dpop_nonce", error_description="A DPoP nonce from the server is required", algs="RS256 PS256 ES256 EdDSA""#
    );
    let nonce = reply.nonce.expect("a DPoP-Nonce header");
    // Instance B accepts A's nonce: no shared state but the secret.
    let url_b = format!("{origin_b}/mcp");
    let proof = key.proof("GET", &url_b, Some("bound-1"), Some(&nonce));
    let reply = send("GET", &url_b, Some("DPoP bound-1"), &[&proof]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.nonce, None, "a current nonce needs no replacement");
    // A nonce of the previous period still passes, and the response hands out the current one.
    let previous = NonceSource::new(secret, Duration::from_secs(300))
        .unwrap()
        .current_at(SystemTime::now() - Duration::from_secs(300));
    let url_a = format!("{origin_a}/mcp");
    let proof = key.proof("GET", &url_a, Some("bound-1"), Some(&previous));
    let reply = send("GET", &url_a, Some("DPoP bound-1"), &[&proof]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.nonce.as_deref(), Some(nonce.as_str()));
    // A forged nonce is refused.
    let proof = key.proof(
        "GET",
        &url_a,
        Some("bound-1"),
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    let reply = send("GET", &url_a, Some("DPoP bound-1"), &[&proof]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(seen[0].calls() + seen[1].calls(), 2);
}

/// 10,000 distinct proofs against a replay store of 1,024: every accepted one stays remembered
/// (its replay is refused), and once the store is full, new proofs get 503 rather than an old
/// identifier being forgotten.
#[tokio::test]
async fn a_flood_of_fresh_proofs_fills_the_replay_store_without_evicting_any() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let checker = ProofChecker::builder()
        .replay_capacity(1024)
        .build()
        .unwrap();
    let dpop = Dpop::builder()
        .origin("https://rs.example")
        .checker(checker.clone())
        .build()
        .unwrap();
    let seen = Seen::default();
    let router = recording_app(&seen)
        .layer(BearerAuthLayer::introspect(introspector_for(&server).build().unwrap()).dpop(dpop));
    let call = |proof: String| {
        let router = router.clone();
        async move {
            let request = http::Request::get("/mcp")
                .header("authorization", "DPoP bound-1")
                .header("dpop", proof)
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap()
        }
    };
    let mut accepted = Vec::new();
    let mut full = 0;
    for _ in 0..10_000 {
        let proof = key.proof("GET", "https://rs.example/mcp", Some("bound-1"), None);
        let response = call(proof.clone()).await;
        match response.status().as_u16() {
            200 => accepted.push(proof),
            503 => {
                assert_eq!(response.headers()["retry-after"], "5");
                assert!(response.headers().get("www-authenticate").is_none());
                full += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted.len(), checker.replay_capacity());
    assert_eq!(full, 10_000 - checker.replay_capacity());
    assert!(checker.replay_len() <= checker.replay_capacity());
    assert!(checker.replay_max_bytes() <= 1024 * 64);
    for proof in accepted {
        let response = call(proof).await;
        assert_eq!(response.status(), 401, "a remembered proof was forgotten");
    }
    assert_eq!(seen.calls(), checker.replay_capacity());
}

#[tokio::test]
async fn a_bound_jwt_is_checked_against_its_cnf_claim() {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/jwt/es256-a.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let public = std::fs::read(format!(
        "{}/tests/fixtures/jwt/es256-a.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let issuer = JwtIssuer::builder(ISSUER)
        .audience(RESOURCE)
        .pem_key(JwsAlgorithm::ES256, &public, None)
        .build()
        .unwrap();
    let key = es256();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({
            "iss": ISSUER, "sub": "carol", "aud": RESOURCE, "exp": now() + 300, "iat": now(),
            "jti": "t1", "client_id": "app", "scope": "read", "cnf": {"jkt": key.thumbprint()},
        }),
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    let (listener, origin) = listen().await;
    let seen = Seen::default();
    let layer = BearerAuthLayer::jwt(JwtVerifier::new([issuer]).unwrap())
        .dpop(Dpop::builder().origin(&origin).build().unwrap());
    start(listener, recording_app(&seen).layer(layer));
    assert_eq!(get_with_proof(&origin, &token, &key).await.status, 200);
    let principal = seen.last().unwrap();
    assert_eq!(principal.subject(), Some("carol"));
    assert_eq!(principal.confirmation_thumbprint(), Some(key.thumbprint()));
    assert_eq!(principal.verified_by(), VerifierKind::Jwt);
    assert_eq!(get_with_proof(&origin, &token, &es256()).await.status, 401);
    let reply = send("GET", &format!("{origin}/mcp"), Some(&bearer(&token)), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(seen.calls(), 1);
}

#[test]
fn metadata_advertises_the_policy() {
    let document = |dpop: &Dpop| {
        serde_json::to_value(
            ProtectedResourceMetadata::new(RESOURCE, ISSUER)
                .unwrap()
                .dpop(dpop),
        )
        .unwrap()
    };
    let allowed = Dpop::builder()
        .origin("https://rs.example")
        .build()
        .unwrap();
    let doc = document(&allowed);
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "EdDSA"])
    );
    assert!(doc.get("dpop_bound_access_tokens_required").is_none());
    let required = Dpop::builder()
        .origin("https://rs.example")
        .policy(DpopPolicy::Required)
        .checker(
            ProofChecker::builder()
                .algorithms([JwsAlgorithm::ES256])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let doc = document(&required);
    assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(true));
    let disabled = Dpop::builder()
        .policy(DpopPolicy::Disabled)
        .build()
        .unwrap();
    assert!(
        document(&disabled)
            .get("dpop_signing_alg_values_supported")
            .is_none()
    );
}

#[tokio::test]
async fn a_scope_layer_inside_words_its_step_up_challenge_for_the_dpop_scheme() {
    let server = MockServer::start().await;
    let key = es256();
    expect_introspection(&server, "bound-1", bound_to(&key), 1).await;
    let (listener, origin) = listen().await;
    let seen = Seen::default();
    let layer = BearerAuthLayer::introspect(introspector_for(&server).build().unwrap())
        .dpop(allowed(&origin).unwrap());
    let router = recording_app(&seen)
        .layer(tower_introspect::RequireScopeLayer::all(["admin"]).unwrap())
        .layer(layer);
    start(listener, router);
    let reply = get_with_proof(&origin, "bound-1", &key).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.challenge.unwrap(),
        format!(
            r#"Bearer, DPoP error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="admin", {ALGS}"#
        )
    );
    assert_eq!(seen.calls(), 0);
}
