//! JWT access tokens (RFC 9068) verified locally, as an attacker and as real issuers would send
//! them: each refusal with its exact status and challenge, the key set fetched only as often as
//! promised, and the issuer's key set endpoint never trusted beyond what it serves.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::signing::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::claims::VerifierKind;
use tower_introspect::jwt::{JwsAlgorithm, JwtIssuer, JwtVerifier};
use tower_introspect::{BearerAuthLayer, Principal, TokenVerifier};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn header_of(key: &Signer) -> Value {
    json!({"alg": format!("{:?}", key.alg), "typ": "at+jwt", "kid": key.kid})
}

/// The claims of a valid token of `issuer` for the tests' resource.
fn claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer, "sub": "alice", "aud": RESOURCE, "exp": now + 300, "iat": now,
        "jti": format!("jti-{}", rand_suffix()), "client_id": "app", "scope": "read write",
    })
}

fn rand_suffix() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn sign(key: &Signer, claims: &Value) -> String {
    sign_raw(key, &header_of(key), claims)
}

/// An issuer on loopback: RFC 8414 metadata naming its `jwks_uri`, and that key set.
struct Issuer {
    server: MockServer,
}

impl Issuer {
    async fn start(keys: &[&Signer]) -> Self {
        let server = MockServer::start().await;
        let issuer = Self { server };
        issuer.publish(keys).await;
        issuer
    }

    fn url(&self) -> String {
        self.server.uri()
    }

    /// Replaces the key set (and keeps the metadata).
    async fn publish(&self, keys: &[&Signer]) {
        self.publish_document(
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
        )
        .await;
    }

    async fn publish_document(&self, document: Value) {
        self.server.reset().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/oauth-authorization-server"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": self.url(),
                "jwks_uri": format!("{}/jwks", self.url()),
            })))
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("cache-control", "max-age=3600")
                    .set_body_json(document),
            )
            .mount(&self.server)
            .await;
    }

    /// Key set fetches received.
    async fn key_fetches(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/jwks")
            .count()
    }

    fn verifier(&self) -> JwtIssuer {
        JwtIssuer::builder(self.url())
            .audience(RESOURCE)
            .build()
            .unwrap()
    }
}

/// A recording app behind a bearer layer with a cached `verifier`.
struct App<V> {
    seen: Seen,
    cache: CachedVerifier<V>,
    router: axum::Router,
}

fn app<V: TokenVerifier + Clone>(verifier: V) -> App<V> {
    let seen = Seen::default();
    let layer = BearerAuthLayer::new(CachedVerifier::new(verifier, CacheConfig::default()))
        .resource_metadata(METADATA);
    let cache = layer.verifier().clone();
    App {
        router: recording_app(&seen).layer(layer),
        seen,
        cache,
    }
}

impl<V> App<V> {
    /// Status and `WWW-Authenticate` of `GET /mcp` with `token`.
    async fn send(&self, token: &str) -> (u16, Option<String>) {
        let request = http::Request::get("/mcp")
            .header("authorization", bearer(token))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), challenge)
    }
}

/// An issuer publishing key A, and an app that trusts it: the start of most tests here.
async fn one_key_app() -> (Signer, Issuer, App<JwtIssuer>) {
    install_crypto();
    let a = key_a();
    let issuer = Issuer::start(&[&a]).await;
    let app = app(issuer.verifier());
    (a, issuer, app)
}

fn invalid(description: &str) -> (u16, Option<String>) {
    (
        401,
        Some(format!(
            r#"Bearer error="invalid_token", error_description="{description}", resource_metadata="{METADATA}""#
        )),
    )
}

const BAD_SIGNATURE: &str = "The access token's signature is invalid";
const MALFORMED: &str = "The access token is malformed";
const UNKNOWN_KEY: &str = "The access token was signed with an unknown key";
const UNKNOWN_ISSUER: &str = "The access token was issued by an untrusted issuer";

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_claims_and_is_cached() {
    let (a, issuer, app) = one_key_app().await;
    // (A token bound to a key, `cnf.jkt`, needs a DPoP proof: see tests/dpop.rs.)
    let token = sign(&a, &claims(&issuer.url()));
    assert_eq!(app.send(&token).await, (200, None));
    assert_eq!(app.send(&token).await, (200, None));
    let principal: Principal = app.seen.last().unwrap();
    assert_eq!(principal.subject(), Some("alice"));
    assert_eq!(principal.client_id(), Some("app"));
    assert_eq!(principal.issuer(), Some(issuer.url().as_str()));
    assert_eq!(principal.audiences(), [RESOURCE]);
    assert_eq!(principal.scopes().as_str(), "read write");
    assert_eq!(principal.confirmation_thumbprint(), None);
    assert_eq!(principal.verified_by(), VerifierKind::Jwt);
    assert_eq!(app.seen.calls(), 2);
    let stats = app.cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1), "{stats:?}");
    // Discovery once, the key set once.
    assert_eq!(issuer.key_fetches().await, 1);
}

#[tokio::test]
async fn algorithm_confusion_and_alg_none_are_refused() {
    install_crypto();
    let rsa = signer("rs256.pem", Algorithm::RS256, "rsa");
    let issuer = Issuer::start(&[&rsa]).await;
    let app = app(issuer.verifier());
    let c = claims(&issuer.url());
    assert_eq!(app.send(&sign(&rsa, &c)).await, (200, None));

    // HS256 with the RSA public key (as published) as the HMAC secret.
    let public_pem = fixture("rs256.pub.pem");
    let hmac = Signer {
        key: Arc::new(EncodingKey::from_secret(&public_pem).unwrap()),
        alg: Algorithm::HS256,
        kid: "rsa".into(),
        jwk: Value::Null,
    };
    let mut c2 = claims(&issuer.url());
    c2["sub"] = json!("mallory");
    let confused = sign_raw(
        &hmac,
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa"}),
        &c2,
    );
    assert_eq!(app.send(&confused).await, invalid(MALFORMED));

    // alg none, with and without a signature part.
    let header = b64(br#"{"alg":"none","typ":"at+jwt","kid":"rsa"}"#);
    let body = b64(c2.to_string().as_bytes());
    assert_eq!(
        app.send(&format!("{header}.{body}.")).await,
        invalid(MALFORMED)
    );
    assert_eq!(
        app.send(&format!("{header}.{body}.AAAA")).await,
        invalid(MALFORMED)
    );
    // An allowed algorithm of the wrong family for the key (ES256 header, RSA kid).
    let es = key_a();
    let wrong_family = sign_raw(
        &es,
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "rsa"}),
        &c2,
    );
    assert_eq!(app.send(&wrong_family).await, invalid(UNKNOWN_KEY));
    assert_eq!(
        app.seen.calls(),
        1,
        "only the genuine token reached the handler"
    );
}

#[tokio::test]
async fn an_algorithm_outside_the_issuers_allow_list_is_refused() {
    install_crypto();
    let rsa = signer("rs256.pem", Algorithm::RS256, "rsa");
    let issuer = Issuer::start(&[&rsa]).await;
    let only_es256 = JwtIssuer::builder(issuer.url())
        .audience(RESOURCE)
        .algorithms([JwsAlgorithm::ES256])
        .build()
        .unwrap();
    let app = app(only_es256);
    assert_eq!(
        app.send(&sign(&rsa, &claims(&issuer.url()))).await,
        invalid(MALFORMED)
    );
}

#[tokio::test]
async fn kid_injection_is_a_lookup_miss_never_a_path_or_a_query() {
    let (a, issuer, app) = one_key_app().await;
    // Known keys first, so that what follows is judged against a loaded set.
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
    let long = "k".repeat(10 * 1024);
    for kid in [
        "../../etc/passwd",
        "key-a' OR '1'='1",
        "key-a\u{0}",
        long.as_str(),
        "KEY-A",
    ] {
        let mut header = header_of(&a);
        header["kid"] = json!(kid);
        let token = sign_raw(&a, &header, &claims(&issuer.url()));
        let (status, challenge) = app.send(&token).await;
        if token.len() > tower_introspect::layer::DEFAULT_MAX_TOKEN_LENGTH {
            // Longer than the layer accepts: refused before any verifier runs.
            assert_eq!(status, 400, "{kid:.20}");
            assert!(
                challenge.is_some_and(|c| c.contains(r#"error="invalid_request""#)),
                "{kid:.20}"
            );
        } else {
            assert_eq!((status, challenge), invalid(UNKNOWN_KEY), "{kid:.20}");
        }
    }
    // One initial fetch, and the unknown kids within the refetch interval caused none.
    assert_eq!(issuer.key_fetches().await, 1);
}

#[tokio::test]
async fn jku_x5u_jwk_and_x5c_headers_are_never_followed() {
    install_crypto();
    // A listener an attacker points the headers at; it counts any connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap: SocketAddr = listener.local_addr().unwrap();
    let contacted = Arc::new(AtomicUsize::new(0));
    let count = contacted.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let a = key_a();
    let attacker = key_b();
    let issuer = Issuer::start(&[&a]).await;
    let app = app(issuer.verifier());
    let header = json!({
        "alg": "ES256", "typ": "at+jwt", "kid": "key-b",
        "jku": format!("http://{trap}/jwks"),
        "x5u": format!("http://{trap}/cert"),
        "jwk": attacker.jwk,
    });
    let token = sign_raw(&attacker, &header, &claims(&issuer.url()));
    assert_eq!(app.send(&token).await, invalid(UNKNOWN_KEY));
    // The same with the issuer's kid: the embedded key is not used either.
    let mut header = header;
    header["kid"] = json!("key-a");
    let token = sign_raw(&attacker, &header, &claims(&issuer.url()));
    assert_eq!(app.send(&token).await, invalid(BAD_SIGNATURE));
    assert_eq!(contacted.load(Ordering::SeqCst), 0);
    assert_eq!(app.seen.calls(), 0);
}

#[tokio::test]
async fn wrong_typ_iss_aud_and_times_are_refused() {
    let (a, issuer, app) = one_key_app().await;
    let iss = issuer.url();
    let now = now();
    let with = |name: &str, value: Value| {
        let mut c = claims(&iss);
        c[name] = value;
        c
    };
    let typed = |typ: Value| {
        let mut header = header_of(&a);
        header["typ"] = typ;
        sign_raw(&a, &header, &claims(&iss))
    };
    let cases = [
        (
            typed(json!("JWT")),
            invalid("The presented token is not an access token"),
        ),
        (
            typed(json!("dpop+jwt")),
            invalid("The presented token is not an access token"),
        ),
        (
            typed(Value::Null),
            invalid("The presented token is not an access token"),
        ),
        (
            sign(&a, &with("aud", json!("https://other.example"))),
            invalid("The access token is not meant for this resource"),
        ),
        (
            sign(&a, &with("aud", json!([]))),
            invalid("The access token is not meant for this resource"),
        ),
        (
            sign(&a, &with("exp", json!(now - 61))),
            invalid("The access token expired"),
        ),
        (
            sign(&a, &with("nbf", json!(now + 120))),
            invalid("The access token is not valid yet"),
        ),
        (
            sign(&a, &with("iat", json!(now + 120))),
            invalid("The access token is not valid yet"),
        ),
        (
            sign(&a, &with("iss", json!(format!("{iss}/")))),
            invalid(UNKNOWN_ISSUER),
        ),
        (
            sign(&a, &with("typ", json!("Refresh"))),
            invalid("The presented token is not an access token"),
        ),
        (
            sign(&a, &{
                let mut c = claims(&iss);
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            invalid(MALFORMED),
        ),
        (
            sign_raw(
                &a,
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "key-a", "crit": ["exp"]}),
                &claims(&iss),
            ),
            invalid(MALFORMED),
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(app.send(&token).await, expected, "{token}");
    }
    // Within the leeway is fine.
    assert_eq!(
        app.send(&sign(&a, &with("exp", json!(now - 30)))).await,
        (200, None)
    );
    assert_eq!(app.seen.calls(), 1);
}

#[tokio::test]
async fn every_flipped_signature_bit_is_refused() {
    let (a, issuer, app) = one_key_app().await;
    let token = sign(&a, &claims(&issuer.url()));
    let (input, signature) = token.rsplit_once('.').unwrap();
    let raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(raw.len(), 64);
    for bit in 0..raw.len() * 8 {
        let mut flipped = raw.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let forged = format!("{input}.{}", b64(&flipped));
        assert_eq!(app.send(&forged).await, invalid(BAD_SIGNATURE), "bit {bit}");
    }
    // And a flipped bit in the claims.
    let (header, rest) = input.split_once('.').unwrap();
    let mut body = URL_SAFE_NO_PAD.decode(rest).unwrap();
    body[10] ^= 1;
    let forged = format!("{header}.{}.{signature}", b64(&body));
    // Either no longer JSON (malformed) or other claims under the old signature: refused.
    let refused = app.send(&forged).await;
    assert!(
        refused == invalid(MALFORMED) || refused == invalid(BAD_SIGNATURE),
        "{refused:?}"
    );
    assert_eq!(app.send(&token).await, (200, None));
    // 512 forgeries, each verified once and then refused from the negative cache entries.
    assert_eq!(app.seen.calls(), 1);
}

#[tokio::test]
async fn a_published_private_key_is_never_used() {
    install_crypto();
    let a = key_a();
    let mut leaked = key_b();
    // The issuer publishes key-b *with its private part*: anyone could sign with it.
    let private = jsonwebtoken::jwk::Jwk::from_encoding_key(&leaked.key, Algorithm::ES256).unwrap();
    let mut with_d = serde_json::to_value(private).unwrap();
    with_d["kid"] = json!("key-b");
    with_d["d"] = json!(b64(&[7; 32]));
    with_d.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    leaked.jwk = with_d;
    let issuer = Issuer::start(&[&a, &leaked]).await;
    let app = app(issuer.verifier());
    assert_eq!(
        app.send(&sign(&leaked, &claims(&issuer.url()))).await,
        invalid(UNKNOWN_KEY)
    );
    // The rest of the set still serves.
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
}

#[tokio::test]
async fn a_huge_key_set_is_refused_and_the_known_keys_keep_serving() {
    install_crypto();
    let a = key_a();
    let b = key_b();
    let issuer = Issuer::start(&[&a]).await;
    let app = app(JwtIssuer::builder(issuer.url())
        .audience(RESOURCE)
        .unknown_kid_refetch_interval(Duration::ZERO)
        .build()
        .unwrap());
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
    // 100 KiB of keys, key-b among them: over the 64 KiB bound, so refused whole.
    let mut keys = vec![b.jwk.clone(); 1];
    keys.extend((0..600).map(|i| {
        let mut k = a.jwk.clone();
        k["kid"] = json!(format!("padding-{i}-{}", "x".repeat(100)));
        k
    }));
    issuer.publish_document(json!({"keys": keys})).await;
    // Unknown kid: the refetch gets the huge document, which is refused: 503, the server's fault.
    assert_eq!(app.send(&sign(&b, &claims(&issuer.url()))).await.0, 503);
    // Known keys keep serving.
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
}

#[tokio::test]
async fn a_key_set_that_never_answers_times_out_into_503() {
    install_crypto();
    let a = key_a();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(json!({"keys": [a.jwk]})),
        )
        .mount(&server)
        .await;
    let verifier = JwtIssuer::builder(server.uri())
        .audience(RESOURCE)
        .jwks_uri(format!("{}/jwks", server.uri()))
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let app = app(verifier);
    let started = std::time::Instant::now();
    let (status, challenge) = app.send(&sign(&a, &claims(&server.uri()))).await;
    assert_eq!((status, challenge), (503, None));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
}

#[tokio::test]
async fn a_key_set_down_at_start_gives_503_until_it_is_up() {
    install_crypto();
    let a = key_a();
    let server = MockServer::start().await;
    let down = Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&server)
        .await;
    // Built while the issuer is down: nothing is fetched at build time.
    let app = app(JwtIssuer::builder(server.uri())
        .audience(RESOURCE)
        .build()
        .unwrap());
    let token = sign(&a, &claims(&server.uri()));
    assert_eq!(app.send(&token).await, (503, None));
    drop(down);
    let issuer = Issuer { server };
    issuer.publish(&[&a]).await;
    // The next attempt waits out the backoff (1 s after the first failure), in virtual time.
    tokio::time::pause();
    assert_eq!(app.send(&token).await, (503, None), "still backing off");
    tokio::time::advance(Duration::from_millis(1100)).await;
    tokio::time::resume();
    assert_eq!(app.send(&token).await, (200, None));
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_with_one_refetch_and_a_removed_key_stops() {
    install_crypto();
    let a = key_a();
    let b = key_b();
    let issuer = Issuer::start(&[&a]).await;
    let app = app(issuer.verifier());
    let old = sign(&a, &claims(&issuer.url()));
    assert_eq!(app.send(&old).await, (200, None));
    assert_eq!(issuer.key_fetches().await, 1);

    // The issuer adds key-b and signs with it. Within 30 s of the last fetch, no refetch.
    issuer.publish(&[&a, &b]).await;
    let new = sign(&b, &claims(&issuer.url()));
    assert_eq!(app.send(&new).await, invalid(UNKNOWN_KEY));
    assert_eq!(
        issuer.key_fetches().await,
        0,
        "reset counts from the republish"
    );
    app.cache.invalidate_all();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    // Past the interval: one refetch finds it.
    assert_eq!(app.send(&new).await, (200, None));
    assert_eq!(issuer.key_fetches().await, 1);

    // key-a leaves the set; after the next scheduled refresh (max-age 3600) it stops verifying.
    issuer.publish(&[&b]).await;
    app.cache.invalidate_all();
    let fresh_old = sign(&a, &claims(&issuer.url()));
    assert_eq!(app.send(&fresh_old).await, (200, None), "not refreshed yet");
    app.cache.invalidate_all();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3601)).await;
    tokio::time::resume();
    assert_eq!(app.send(&fresh_old).await, invalid(UNKNOWN_KEY));
    assert_eq!(issuer.key_fetches().await, 1, "one scheduled refresh");
    assert_eq!(app.send(&new).await, (200, None));
}

#[tokio::test]
async fn a_thousand_concurrent_unknown_kids_make_at_most_one_fetch() {
    let (a, issuer, app) = one_key_app().await;
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    issuer.server.reset().await;
    issuer.publish(&[&a]).await;
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            let mut header = header_of(&a);
            header["kid"] = json!(format!("unknown-{i}"));
            sign_raw(&a, &header, &claims(&issuer.url()))
        })
        .collect();
    let answers = futures_util::future::join_all(tokens.iter().map(|t| app.send(t))).await;
    assert!(answers.iter().all(|a| *a == invalid(UNKNOWN_KEY)));
    assert_eq!(issuer.key_fetches().await, 1);
    // And the next thousand, still within 30 s of that fetch, make none.
    let answers = futures_util::future::join_all(tokens.iter().map(|t| {
        let app = &app;
        async move {
            app.cache.invalidate(t);
            app.send(t).await
        }
    }))
    .await;
    assert!(answers.iter().all(|a| *a == invalid(UNKNOWN_KEY)));
    assert_eq!(issuer.key_fetches().await, 1);
}

#[tokio::test]
async fn several_issuers_each_verify_only_their_own_tokens() {
    install_crypto();
    let a = key_a();
    let b = key_b();
    let first = Issuer::start(&[&a]).await;
    let second = Issuer::start(&[&b]).await;
    let verifier = JwtVerifier::new([first.verifier(), second.verifier()]).unwrap();
    let app = app(verifier);
    assert_eq!(
        app.send(&sign(&a, &claims(&first.url()))).await,
        (200, None)
    );
    assert_eq!(
        app.send(&sign(&b, &claims(&second.url()))).await,
        (200, None)
    );
    // A token naming the first issuer but signed with the second's key (same kid): the first's
    // keys decide, and refuse it.
    let mut cross = key_b();
    cross.kid = "key-a".into();
    assert_eq!(
        app.send(&sign(&cross, &claims(&first.url()))).await,
        invalid(BAD_SIGNATURE)
    );
    // An issuer nobody trusts: refused with no network call.
    let stranger = MockServer::start().await;
    let before = (first.key_fetches().await, second.key_fetches().await);
    assert_eq!(
        app.send(&sign(&a, &claims(&stranger.uri()))).await,
        invalid(UNKNOWN_ISSUER)
    );
    assert_eq!(stranger.received_requests().await.unwrap().len(), 0);
    assert_eq!(
        (first.key_fetches().await, second.key_fetches().await),
        before
    );
}

#[tokio::test]
async fn fixed_keys_from_pem_or_jwks_need_no_network() {
    install_crypto();
    let a = key_a();
    let ed = signer("ed25519.pem", Algorithm::EdDSA, "ed");
    let issuer = "https://as.offline.example";
    let verifier = JwtIssuer::builder(issuer)
        .audience(RESOURCE)
        .pem_key(
            JwsAlgorithm::ES256,
            &fixture("es256-a.pub.pem"),
            Some("key-a"),
        )
        .jwks(&json!({"keys": [ed.jwk]}).to_string())
        .build()
        .unwrap();
    let app = app(verifier);
    assert_eq!(app.send(&sign(&a, &claims(issuer))).await, (200, None));
    assert_eq!(app.send(&sign(&ed, &claims(issuer))).await, (200, None));
    assert_eq!(
        app.send(&sign(&key_b(), &claims(issuer))).await,
        invalid(UNKNOWN_KEY)
    );
}

/// An Entra ID v2 access token: `typ: JWT`, scopes in `scp` (a string), the client in `azp`,
/// a tenant-specific issuer, RS256.
#[tokio::test]
async fn an_entra_shaped_token_verifies_with_the_generic_typ_opt_in() {
    install_crypto();
    let rsa = signer("rs256.pem", Algorithm::RS256, "entra-kid");
    let tenant = "9188040d-6c67-4c5b-b112-36a304b66dad";
    let iss = format!("https://login.microsoftonline.com/{tenant}/v2.0");
    let now = now();
    let token = sign_raw(
        &rsa,
        &json!({"typ": "JWT", "alg": "RS256", "kid": "entra-kid"}),
        &json!({
            "aud": "api://my-api", "iss": iss, "iat": now, "nbf": now, "exp": now + 3600,
            "aio": "AWQAm/8", "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0",
            "name": "Alice", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "preferred_username": "alice@contoso.example", "rh": "I", "scp": "Files.Read User.Read",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": tenant, "uti": "fqiBqXLP",
            "ver": "2.0",
        }),
    );
    let strict = JwtIssuer::builder(iss.clone())
        .audience("api://my-api")
        .jwks(&json!({"keys": [rsa.jwk]}).to_string())
        .build()
        .unwrap();
    let (status, _) = app(strict).send(&token).await;
    assert_eq!(status, 401, "typ JWT needs the opt-in");
    let entra = JwtIssuer::builder(iss)
        .audience("api://my-api")
        .accept_generic_typ(true)
        .jwks(&json!({"keys": [rsa.jwk]}).to_string())
        .build()
        .unwrap();
    let app = app(entra);
    assert_eq!(app.send(&token).await, (200, None));
    let p = app.seen.last().unwrap();
    assert_eq!(p.scopes().as_str(), "Files.Read User.Read");
    assert_eq!(p.client_id(), Some("6e74172b-be56-4843-9ff4-e66a39bb12e3"));
    assert_eq!(p.username(), Some("alice@contoso.example"));
    assert_eq!(p.claim("tid"), Some(&json!(tenant)));
}

/// A Keycloak access token: `typ: JWT` header, `typ: Bearer` claim, `azp`, scopes in `scope`,
/// audiences as an array; its refresh tokens (`typ: Refresh`) are refused even when signed with an
/// accepted key.
#[tokio::test]
async fn a_keycloak_shaped_token_verifies_and_its_refresh_token_does_not() {
    install_crypto();
    let rsa = signer("rs256.pem", Algorithm::RS256, "kc-kid");
    let iss = "https://sso.example/realms/acme";
    let now = now();
    let body = |typ: &str| {
        json!({
            "exp": now + 300, "iat": now, "jti": format!("kc-{typ}"), "iss": iss,
            "aud": [RESOURCE, "account"], "sub": "f:1234:alice", "typ": typ, "azp": "mcp-client",
            "session_state": "s", "scope": "openid profile read", "sid": "s",
            "preferred_username": "alice", "realm_access": {"roles": ["user"]},
        })
    };
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "kc-kid"});
    let keycloak = JwtIssuer::builder(iss)
        .audience(RESOURCE)
        .accept_generic_typ(true)
        .jwks(&json!({"keys": [rsa.jwk]}).to_string())
        .build()
        .unwrap();
    let app = app(keycloak);
    assert_eq!(
        app.send(&sign_raw(&rsa, &header, &body("Bearer"))).await,
        (200, None)
    );
    let p = app.seen.last().unwrap();
    assert_eq!(
        (p.client_id(), p.username()),
        (Some("mcp-client"), Some("alice"))
    );
    assert!(p.scopes().contains("read"));
    assert_eq!(
        app.send(&sign_raw(&rsa, &header, &body("Refresh"))).await,
        invalid("The presented token is not an access token")
    );
}

/// Introspection calls received by `server`.
async fn introspections(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/introspect")
        .count()
}

#[tokio::test]
async fn hybrid_routes_jwts_locally_and_opaque_tokens_to_introspection() {
    use tower_introspect::HybridVerifier;
    install_crypto();
    let a = key_a();
    let issuer = Issuer::start(&[&a]).await;
    let auth_server = MockServer::start().await;
    expect_introspection(&auth_server, "opaque-1", active("bob", "read"), 1).await;
    expect_introspection(&auth_server, "opaque-2", json!({"active": false}), 1).await;
    let hybrid = HybridVerifier::new(
        JwtVerifier::new([issuer.verifier()]).unwrap(),
        introspector_for(&auth_server).build().unwrap(),
    );
    let app = app(hybrid);
    assert_eq!(app.send("opaque-1").await, (200, None));
    assert_eq!(
        app.seen.last().unwrap().verified_by(),
        VerifierKind::Introspection
    );
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
    assert_eq!(app.seen.last().unwrap().verified_by(), VerifierKind::Jwt);
    assert_eq!(
        introspections(&auth_server).await,
        1,
        "the JWT was not introspected"
    );
    // `active: false` is final: nothing else is tried.
    assert_eq!(
        app.send("opaque-2").await,
        invalid("The access token is not active")
    );
    // A JWT from an untrusted issuer is refused, not introspected.
    assert_eq!(
        app.send(&sign(&a, &claims("https://elsewhere.example")))
            .await,
        invalid(UNKNOWN_ISSUER)
    );
    assert_eq!(introspections(&auth_server).await, 2);
}

#[tokio::test]
async fn jwt_only_refuses_opaque_tokens_and_incomplete_modes_do_not_build() {
    use tower_introspect::{ConfigError, HybridVerifier};
    install_crypto();
    let a = key_a();
    let issuer = Issuer::start(&[&a]).await;
    let jwt_only = HybridVerifier::builder()
        .jwt(JwtVerifier::new([issuer.verifier()]).unwrap())
        .build()
        .unwrap();
    let app = app(jwt_only);
    assert_eq!(app.send("opaque-token").await, invalid(MALFORMED));
    assert_eq!(
        app.send(&sign(&a, &claims(&issuer.url()))).await,
        (200, None)
    );
    assert!(matches!(
        HybridVerifier::builder().build(),
        Err(ConfigError::Missing { .. })
    ));
    assert!(matches!(
        HybridVerifier::builder()
            .jwt(JwtVerifier::new([issuer.verifier()]).unwrap())
            .introspect_jwts(true)
            .build(),
        Err(ConfigError::Invalid {
            setting: "introspect_jwts",
            ..
        })
    ));
}

#[tokio::test]
async fn hybrid_can_introspect_jwts_too_so_a_revoked_jwt_is_refused() {
    use tower_introspect::HybridVerifier;
    install_crypto();
    let a = key_a();
    let issuer = Issuer::start(&[&a]).await;
    let auth_server = MockServer::start().await;
    let live = sign(&a, &claims(&issuer.url()));
    let revoked = sign(&a, &claims(&issuer.url()));
    let forged = format!("{}x", &live[..live.len() - 1]);
    expect_introspection(&auth_server, &live, active("alice", "read"), 1).await;
    expect_introspection(&auth_server, &revoked, json!({"active": false}), 1).await;
    let hybrid = HybridVerifier::builder()
        .jwt(JwtVerifier::new([issuer.verifier()]).unwrap())
        .introspector(introspector_for(&auth_server).build().unwrap())
        .introspect_jwts(true)
        .build()
        .unwrap();
    let app = app(hybrid);
    assert_eq!(app.send(&live).await, (200, None));
    let p = app.seen.last().unwrap();
    assert_eq!(p.verified_by(), VerifierKind::JwtIntrospected);
    assert_eq!(
        p.scopes().as_str(),
        "read write",
        "the JWT's own verified claims"
    );
    assert_eq!(
        app.send(&revoked).await,
        invalid("The access token is not active")
    );
    // A forged JWT is refused locally and never sent to the authorization server.
    assert_eq!(app.send(&forged).await.0, 401);
    assert_eq!(introspections(&auth_server).await, 2);
}
