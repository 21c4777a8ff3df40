//! The Shared Signals receiver as a transmitter and as an attacker would use it: pushed and polled
//! Security Event Tokens end cached verdicts at once; forged, replayed, misaddressed, oversized and
//! unauthenticated deliveries are refused with their exact RFC 8935 answers and change nothing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::signing::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower_introspect::cache::CacheConfig;
use tower_introspect::ssf::{SetError, SsfReceiver, SsfReceiverBuilder, event};
use tower_introspect::{ConfigError, Introspector};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TRANSMITTER: &str = ISSUER;
const AUDIENCE: &str = "rs-client";
const STREAM_AUTHORIZATION: &str = "Bearer stream-secret";

fn jwks(keys: &[&Signer]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A receiver for the tests' transmitter, trusting `key_a`, acting on `protected`'s cache.
fn receiver(protected: &Protected) -> SsfReceiverBuilder {
    SsfReceiver::builder(TRANSMITTER, AUDIENCE)
        .jwks(&jwks(&[&key_a()]))
        .push_authorization(STREAM_AUTHORIZATION)
        .invalidates(&protected.cache)
}

/// The claims of a valid SET carrying one `event` about `sub_id`.
fn set_claims(event: &str, sub_id: Value) -> Value {
    json!({
        "iss": TRANSMITTER, "aud": AUDIENCE, "iat": now(), "jti": unique("set"),
        "sub_id": sub_id, "events": {event: {"event_timestamp": now()}},
    })
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn secevent_header(key: &Signer) -> Value {
    json!({"alg": format!("{:?}", key.alg), "typ": "secevent+jwt", "kid": key.kid})
}

fn sign_set(claims: &Value) -> String {
    let key = key_a();
    sign_raw(&key, &secevent_header(&key), claims)
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": ISSUER, "sub": sub})
}

/// An introspection server that knows `tokens` as (token, claims) pairs, each active once and
/// inactive afterwards, so a second introspection of a token shows the revocation.
async fn authorization_server(tokens: &[(&str, Value)]) -> MockServer {
    let server = MockServer::start().await;
    for (token, claims) in tokens {
        Mock::given(method("POST"))
            .and(path("/introspect"))
            .and(FormParam("token", (*token).to_owned()))
            .respond_with(ResponseTemplate::new(200).set_body_json(claims))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .mount(&server)
        .await;
    server
}

fn claims_of(sub: &str, extra: Value) -> Value {
    let mut claims = active(sub, "read");
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

async fn introspections(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// The protected app and its authorization server, with every token of `tokens` cached.
async fn warmed(tokens: &[(&str, Value)]) -> (Protected, MockServer) {
    let server = authorization_server(tokens).await;
    let introspector: Introspector = introspector_for(&server).build().unwrap();
    let protected = protected(introspector, CacheConfig::default(), |layer| layer);
    for (token, _) in tokens {
        assert_eq!(
            protected.send(token).await.0,
            200,
            "{token} is valid at first"
        );
    }
    assert_eq!(introspections(&server).await, tokens.len());
    (protected, server)
}

/// Serves the receiver's push endpoint on loopback.
async fn push_endpoint(receiver: &SsfReceiver) -> SocketAddr {
    serve(axum::Router::new().route_service("/ssf/events", receiver.push_endpoint().unwrap())).await
}

struct Pushed {
    status: u16,
    body: String,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
}

async fn push_raw(
    addr: SocketAddr,
    authorization: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Pushed {
    let mut request = client()
        .post(format!("http://{addr}/ssf/events"))
        .header("content-type", content_type)
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    Pushed {
        status: response.status().as_u16(),
        www_authenticate: header(&response, "www-authenticate"),
        retry_after: header(&response, "retry-after"),
        body: response.text().await.unwrap(),
    }
}

async fn push(addr: SocketAddr, set: &str) -> Pushed {
    push_raw(
        addr,
        Some(STREAM_AUTHORIZATION),
        "application/secevent+jwt",
        set.to_owned(),
    )
    .await
}

fn rfc8935(err: &str, description: &str) -> String {
    json!({"err": err, "description": description}).to_string()
}

#[tokio::test]
async fn a_pushed_token_revocation_ends_that_cached_verdict_only() {
    let (protected, server) = warmed(&[
        ("tok-1", claims_of("alice", json!({"jti": "jti-1"}))),
        ("tok-2", claims_of("alice", json!({"jti": "jti-2"}))),
    ])
    .await;
    let receiver = receiver(&protected).build().unwrap();
    let addr = push_endpoint(&receiver).await;

    let set = sign_set(&set_claims(
        event::TOKEN_REVOKED,
        json!({"format": "jwt_id", "iss": ISSUER, "jti": "jti-1"}),
    ));
    let pushed = push(addr, &set).await;
    assert_eq!((pushed.status, pushed.body.as_str()), (202, ""));

    // The revoked token is asked about again, and refused; the other one is still cached.
    assert_eq!(protected.send("tok-1").await.0, 401);
    assert_eq!(protected.send("tok-2").await.0, 200);
    assert_eq!(introspections(&server).await, 3);
    let stats = receiver.stats();
    assert_eq!(
        (stats.accepted, stats.revocations, stats.verdicts_forgotten),
        (1, 1, 1)
    );
}

/// Which of alice's and bob's cached verdicts each event and subject format ends.
#[tokio::test]
async fn each_event_and_subject_format_ends_exactly_its_verdicts() {
    let alice_session_1 = json!({"jti": "a1", "sid": "s1", "email": "Alice@Example.com"});
    let alice_session_2 = json!({"jti": "a2", "sid": "s2"});
    let alice_no_session = json!({"jti": "a3"});
    let bob = json!({"jti": "b1", "sid": "s1"});
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            event::CREDENTIAL_CHANGE,
            iss_sub("alice"),
            &["a1", "a2", "a3"],
        ),
        (
            event::ACCOUNT_DISABLED,
            iss_sub("alice"),
            &["a1", "a2", "a3"],
        ),
        (event::ACCOUNT_PURGED, iss_sub("alice"), &["a1", "a2", "a3"]),
        (
            event::TOKEN_CLAIMS_CHANGE,
            iss_sub("alice"),
            &["a1", "a2", "a3"],
        ),
        (
            event::SESSION_REVOKED,
            json!({"format": "opaque", "id": "alice"}),
            &["a1", "a2", "a3"],
        ),
        (
            event::SESSION_REVOKED,
            json!({"format": "email", "email": "alice@example.COM"}),
            &["a1"],
        ),
        // One session of alice: that session's verdict, and hers that name no session; not
        // bob's, whose sid is the same string.
        (
            event::SESSION_REVOKED,
            json!({"format": "complex", "user": iss_sub("alice"),
                   "session": {"format": "opaque", "id": "s1"}}),
            &["a1", "a3", "b1"],
        ),
        (
            event::TOKEN_REVOKED,
            json!({"format": "jwt_id", "iss": ISSUER, "jti": "a2"}),
            &["a2"],
        ),
        (
            event::CREDENTIAL_CHANGE,
            json!({"format": "aliases", "identifiers": [iss_sub("bob"),
                   {"format": "jwt_id", "iss": ISSUER, "jti": "a3"}]}),
            &["a3", "b1"],
        ),
        // Another issuer's alice is not ours.
        (
            event::CREDENTIAL_CHANGE,
            json!({"format": "iss_sub", "iss": "https://other.example", "sub": "alice"}),
            &[],
        ),
    ];
    for (event, subject, ended) in cases {
        let tokens = [
            ("a1", claims_of("alice", alice_session_1.clone())),
            ("a2", claims_of("alice", alice_session_2.clone())),
            ("a3", claims_of("alice", alice_no_session.clone())),
            ("b1", claims_of("bob", bob.clone())),
        ];
        let (protected, server) = warmed(&tokens).await;
        let receiver = receiver(&protected).build().unwrap();
        let receipt = receiver
            .receive(&sign_set(&set_claims(event, subject.clone())))
            .await
            .unwrap();
        assert_eq!(receipt.verdicts_forgotten, ended.len(), "{event} {subject}");
        for (token, _) in &tokens {
            let expected = if ended.contains(token) { 401 } else { 200 };
            assert_eq!(
                protected.send(token).await.0,
                expected,
                "{token} after {event} {subject}"
            );
        }
        assert_eq!(introspections(&server).await, 4 + ended.len());
    }
}

#[tokio::test]
async fn the_older_caep_subject_inside_the_event_is_read_too() {
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let claims = json!({
        "iss": TRANSMITTER, "aud": [AUDIENCE, "someone-else"], "iat": now(), "jti": unique("set"),
        "events": {event::SESSION_REVOKED: {"subject": iss_sub("alice")}},
    });
    receiver.receive(&sign_set(&claims)).await.unwrap();
    assert_eq!(protected.send("t").await.0, 401);
    assert_eq!(introspections(&server).await, 2);
}

#[tokio::test]
async fn unknown_events_and_subjects_are_acknowledged_counted_and_change_nothing() {
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    for claims in [
        set_claims(
            "https://example.com/event-type/something-new",
            iss_sub("alice"),
        ),
        set_claims(
            event::CREDENTIAL_CHANGE,
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
        ),
        set_claims(
            event::VERIFICATION,
            json!({"format": "opaque", "id": "stream-1"}),
        ),
    ] {
        let pushed = push(addr, &sign_set(&claims)).await;
        assert_eq!((pushed.status, pushed.body.as_str()), (202, ""));
    }
    assert_eq!(protected.send("t").await.0, 200);
    assert_eq!(introspections(&server).await, 1);
    let stats = receiver.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.unknown_events,
            stats.unmatched_subjects,
            stats.revocations
        ),
        (3, 1, 1, 1)
    );
}

/// Every forgery is refused with its RFC 8935 answer, and the cached verdict still stands.
#[tokio::test]
async fn forged_and_misaddressed_sets_are_refused_and_change_nothing() {
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    let revoke_alice = || set_claims(event::CREDENTIAL_CHANGE, iss_sub("alice"));
    let with = |name: &str, value: Value| {
        let mut claims = revoke_alice();
        claims[name] = value;
        claims
    };
    let key = key_a();
    let other = key_b();
    let hmac = Signer {
        key: std::sync::Arc::new(EncodingKey::from_secret(&fixture("es256-a.pub.pem")).unwrap()),
        alg: Algorithm::HS256,
        kid: "key-a".into(),
        jwk: json!({}),
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "secevent+jwt"})
            .to_string()
            .as_bytes()),
        b64(revoke_alice().to_string().as_bytes())
    );
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "another key under our kid",
            sign_raw(
                &other,
                &json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "key-a"}),
                &revoke_alice(),
            ),
            "invalid_key",
            "the SET's signature does not verify",
        ),
        (
            "a key we do not know",
            sign_raw(&other, &secevent_header(&other), &revoke_alice()),
            "invalid_key",
            "the SET names no key of the transmitter",
        ),
        // An empty signature is not even a JWS.
        (
            "alg none",
            unsigned,
            "invalid_request",
            "the body is not a compact JWS",
        ),
        (
            "HMAC keyed with the public key",
            sign_raw(
                &hmac,
                &json!({"alg": "HS256", "typ": "secevent+jwt", "kid": "key-a"}),
                &revoke_alice(),
            ),
            "invalid_key",
            "the SET's alg is not accepted",
        ),
        (
            "an access token's typ",
            sign_raw(
                &key,
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "key-a"}),
                &revoke_alice(),
            ),
            "invalid_request",
            "the SET's typ is not secevent+jwt",
        ),
        (
            "another audience",
            sign_set(&with("aud", json!("another-receiver"))),
            "invalid_audience",
            "the SET's aud does not name this receiver",
        ),
        (
            "an audience differing in case",
            sign_set(&with("aud", json!(AUDIENCE.to_uppercase()))),
            "invalid_audience",
            "the SET's aud does not name this receiver",
        ),
        (
            "another issuer",
            sign_set(&with("iss", json!("https://as.example/"))),
            "invalid_issuer",
            "the SET's iss is not the transmitter this receiver trusts",
        ),
        (
            "too old",
            sign_set(&with("iat", json!(now() - 2 * 3600))),
            "invalid_request",
            "the SET's iat is older than this receiver accepts",
        ),
        (
            "from the future",
            sign_set(&with("iat", json!(now() + 600))),
            "invalid_request",
            "the SET's iat is in the future",
        ),
        (
            "expired",
            sign_set(&with("exp", json!(now() - 600))),
            "invalid_request",
            "the SET has expired",
        ),
        (
            "no jti",
            sign_set(&with("jti", json!(""))),
            "invalid_request",
            "the SET has no usable jti",
        ),
        (
            "no events",
            sign_set(&with("events", json!({}))),
            "invalid_request",
            "the SET has no usable events claim",
        ),
        (
            "a flipped signature bit",
            {
                let mut set = sign_set(&revoke_alice()).into_bytes();
                let last = set.len() - 3;
                set[last] = if set[last] == b'A' { b'B' } else { b'A' };
                String::from_utf8(set).unwrap()
            },
            "invalid_key",
            "the SET's signature does not verify",
        ),
        (
            "not a JWS",
            "{\"events\":{}}".to_owned(),
            "invalid_request",
            "the body is not a compact JWS",
        ),
    ];
    let count = cases.len() as u64;
    for (case, set, err, description) in cases {
        let pushed = push(addr, &set).await;
        assert_eq!(
            (pushed.status, pushed.body),
            (400, rfc8935(err, description)),
            "{case}"
        );
    }
    assert_eq!(protected.send("t").await.0, 200, "nothing was revoked");
    assert_eq!(introspections(&server).await, 1);
    assert_eq!(receiver.stats().refused, count);
    assert_eq!(receiver.stats().accepted, 0);
}

#[tokio::test]
async fn a_replayed_set_is_refused_and_a_refused_set_does_not_use_up_its_jti() {
    let (protected, _server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    let claims = set_claims(event::CREDENTIAL_CHANGE, iss_sub("nobody"));
    // The same jti in a SET refused first (for another audience) ...
    let mut misaddressed = claims.clone();
    misaddressed["aud"] = json!("another-receiver");
    assert_eq!(push(addr, &sign_set(&misaddressed)).await.status, 400);
    // ... is still fresh for the real one, which is accepted once.
    let set = sign_set(&claims);
    assert_eq!(push(addr, &set).await.status, 202);
    let replayed = push(addr, &set).await;
    assert_eq!(
        (replayed.status, replayed.body),
        (
            400,
            rfc8935(
                "invalid_request",
                "a SET with this jti was already received"
            )
        )
    );
    assert_eq!(receiver.stats().accepted, 1);
}

#[tokio::test]
async fn the_push_endpoint_authenticates_the_transmitter_before_anything_else() {
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    let set = sign_set(&set_claims(event::CREDENTIAL_CHANGE, iss_sub("alice")));
    let unauthenticated = rfc8935(
        "authentication_failed",
        "the request lacks the stream's authorization",
    );
    for authorization in [
        None,
        Some("Bearer stream-secreT"),
        Some("bearer stream-secret"),
        Some("Bearer stream-secre"),
    ] {
        let pushed = push_raw(addr, authorization, "application/secevent+jwt", set.clone()).await;
        assert_eq!(
            (
                pushed.status,
                pushed.www_authenticate.as_deref(),
                pushed.body.as_str()
            ),
            (401, Some("Bearer"), unauthenticated.as_str()),
            "{authorization:?}"
        );
    }
    // Authenticated, but not a SET delivery.
    let json_body = push_raw(
        addr,
        Some(STREAM_AUTHORIZATION),
        "application/json",
        set.clone(),
    )
    .await;
    assert_eq!(
        (json_body.status, json_body.body),
        (
            400,
            rfc8935(
                "invalid_request",
                "the content type is not application/secevent+jwt"
            )
        )
    );
    let get = client()
        .get(format!("http://{addr}/ssf/events"))
        .header("authorization", STREAM_AUTHORIZATION)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(header(&get, "allow").as_deref(), Some("POST"));

    // Nothing above acted, and no SET was read: four unauthenticated pushes, a JSON body, a GET.
    let stats = receiver.stats();
    assert_eq!(
        (stats.pushes_refused, stats.refused, stats.accepted),
        (6, 0, 0)
    );
    // The SET itself is still good.
    assert_eq!(protected.send("t").await.0, 200);
    assert_eq!(push(addr, &set).await.status, 202);
    assert_eq!(protected.send("t").await.0, 401);
    assert_eq!(introspections(&server).await, 2);
    assert_eq!(receiver.stats().accepted, 1);
}

#[tokio::test]
async fn an_oversized_body_is_refused_unread_whether_declared_or_streamed() {
    let (protected, _server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).max_body_bytes(4096).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    let too_large = rfc8935(
        "invalid_request",
        "the body is larger than this receiver accepts",
    );
    let declared = push(addr, &"a".repeat(4097)).await;
    assert_eq!((declared.status, declared.body), (400, too_large));
    // Chunked, with no Content-Length: cut off at the cap.
    let chunks = http_body_util::StreamBody::new(futures_util::stream::iter((0..64).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from(vec![b'a'; 1024])))
    })));
    let streamed = push_raw(
        addr,
        Some(STREAM_AUTHORIZATION),
        "application/secevent+jwt",
        reqwest::Body::wrap(chunks),
    )
    .await;
    assert_eq!(
        (streamed.status, streamed.body),
        (
            400,
            rfc8935(
                "invalid_request",
                "the body is larger than this receiver accepts, or could not be read"
            )
        )
    );
    let stats = receiver.stats();
    assert_eq!((stats.pushes_refused, stats.refused), (2, 0));
    assert_eq!(protected.send("t").await.0, 200);
}

/// Keys found through the transmitter's SSF configuration; while they cannot be had, SETs get 503
/// with `Retry-After` (the transmitter sends them again) and nothing is acted on.
#[tokio::test]
async fn keys_come_from_the_ssf_configuration_and_their_outage_is_a_retry_later() {
    install_crypto();
    let transmitter = MockServer::start().await;
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = SsfReceiver::builder(transmitter.uri(), AUDIENCE)
        .push_authorization(STREAM_AUTHORIZATION)
        .invalidates(&protected.cache)
        .build()
        .unwrap();
    let addr = push_endpoint(&receiver).await;
    let mut claims = set_claims(event::CREDENTIAL_CHANGE, iss_sub("alice"));
    claims["iss"] = json!(transmitter.uri());
    let set = sign_set(&claims);

    // Nothing published yet.
    let pushed = push(addr, &set).await;
    assert_eq!(
        (pushed.status, pushed.retry_after.as_deref(), pushed.body),
        (
            503,
            Some("5"),
            rfc8935(
                "temporarily_unavailable",
                "the SET cannot be checked now; send it again later"
            )
        )
    );
    assert_eq!(protected.send("t").await.0, 200);
    assert_eq!(receiver.stats().unavailable, 1);

    Mock::given(method("GET"))
        .and(path("/.well-known/ssf-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spec_version": "1_0", "issuer": transmitter.uri(),
            "jwks_uri": format!("{}/jwks", transmitter.uri()),
        })))
        .mount(&transmitter)
        .await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_string(jwks(&[&key_a()])))
        .mount(&transmitter)
        .await;
    // The key set fetch backs off after a failure (a second); the transmitter retries until the
    // SET is taken, as it would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pushed = push(addr, &set).await;
        if pushed.status == 202 {
            break;
        }
        assert_eq!(pushed.status, 503);
        assert!(tokio::time::Instant::now() < deadline, "keys never fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(protected.send("t").await.0, 401);
    assert_eq!(introspections(&server).await, 2);
}

#[tokio::test]
async fn polled_sets_are_acknowledged_or_reported_in_the_next_poll_and_acks_survive_a_failed_poll()
{
    let (protected, server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).build().unwrap();
    let transmitter = MockServer::start().await;
    let good = set_claims(event::CREDENTIAL_CHANGE, iss_sub("alice"));
    let good_jti = good["jti"].as_str().unwrap().to_owned();
    let mut forged = set_claims(event::CREDENTIAL_CHANGE, iss_sub("bob"));
    forged["aud"] = json!("another-receiver");
    let forged_jti = forged["jti"].as_str().unwrap().to_owned();
    let poll = || {
        Mock::given(method("POST"))
            .and(path("/ssf/poll/stream-1"))
            .and(wiremock::matchers::header(
                "authorization",
                "Bearer poll-token",
            ))
    };
    // First poll: two SETs.
    poll()
        .and(body_partial_json(
            json!({"ack": [], "returnImmediately": true, "maxEvents": 10}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sets": {good_jti.clone(): sign_set(&good), forged_jti.clone(): sign_set(&forged)},
            "moreAvailable": false,
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&transmitter)
        .await;
    // Second poll fails.
    poll()
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&transmitter)
        .await;
    // Third poll must still carry the acknowledgement and the error.
    poll()
        .and(body_partial_json(json!({
            "ack": [good_jti],
            "setErrs": {forged_jti.clone(): {"err": "invalid_audience",
                "description": "the SET's aud does not name this receiver"}},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sets": {}})))
        .with_priority(3)
        .mount(&transmitter)
        .await;

    let mut poller = receiver
        .poller(
            format!("{}/ssf/poll/stream-1", transmitter.uri()),
            "Bearer poll-token",
        )
        .max_events(10)
        .build()
        .unwrap();
    let first = poller.poll_once().await.unwrap();
    assert_eq!(
        (
            first.received,
            first.accepted,
            first.refused,
            first.more_available
        ),
        (2, 1, 1, false)
    );
    assert_eq!(
        protected.send("t").await.0,
        401,
        "acted on before acknowledging"
    );
    assert!(poller.poll_once().await.is_err());
    let third = poller.poll_once().await.unwrap();
    assert_eq!(third.received, 0);
    assert_eq!(transmitter.received_requests().await.unwrap().len(), 3);
    assert_eq!(introspections(&server).await, 2);
}

#[tokio::test]
async fn a_receiver_that_would_act_on_nothing_or_take_anyones_push_is_refused() {
    install_crypto();
    let error = SsfReceiver::builder(TRANSMITTER, AUDIENCE)
        .jwks(&jwks(&[&key_a()]))
        .build()
        .unwrap_err();
    assert!(matches!(
        error,
        ConfigError::Missing {
            setting: "invalidates",
            ..
        }
    ));

    let server = MockServer::start().await;
    let introspector: Introspector = introspector_for(&server).build().unwrap();
    let protected = protected(introspector, CacheConfig::default(), |layer| layer);
    let receiver = SsfReceiver::builder(TRANSMITTER, AUDIENCE)
        .jwks(&jwks(&[&key_a()]))
        .invalidates(&protected.cache)
        .build()
        .unwrap();
    assert!(matches!(
        receiver.push_endpoint().unwrap_err(),
        ConfigError::Missing {
            setting: "push_authorization",
            ..
        }
    ));
    // Polling an http endpoint off loopback would hand the poll token to the network.
    assert!(matches!(
        receiver
            .poller("http://transmitter.example/poll", "Bearer x")
            .build()
            .unwrap_err(),
        ConfigError::InvalidUrl { .. }
    ));
}

#[test]
fn error_codes_are_rfc_8935s() {
    assert_eq!(SetError::InvalidAudience.code(), Some("invalid_audience"));
    assert_eq!(SetError::InvalidIssuer.code(), Some("invalid_issuer"));
    assert_eq!(SetError::InvalidKey("x").code(), Some("invalid_key"));
    assert_eq!(
        SetError::InvalidRequest("x").code(),
        Some("invalid_request")
    );
    assert_eq!(
        SetError::AuthenticationFailed.code(),
        Some("authentication_failed")
    );
    assert!(!SetError::InvalidRequest("x").is_transient());
}

/// A JWT stays valid by its signature after it is revoked: the cache remembers the revocation,
/// so the token is refused even when it is verified again, while a later login of the same user
/// and a merely changed credential are accepted.
#[tokio::test]
async fn a_revoked_jwt_stays_refused_though_its_signature_still_verifies() {
    use tower::ServiceExt;
    use tower_introspect::BearerAuthLayer;
    use tower_introspect::jwt::{JwtIssuer, JwtVerifier};

    let key = key_a();
    let issuer = JwtIssuer::builder(ISSUER)
        .audience(RESOURCE)
        .jwks(&jwks(&[&key]))
        .build()
        .unwrap();
    let layer = BearerAuthLayer::jwt(JwtVerifier::new([issuer]).unwrap());
    let cache = layer.verifier().clone();
    let seen = Seen::default();
    let router = recording_app(&seen).layer(layer);
    let status = |token: String| {
        let router = router.clone();
        async move {
            let request = http::Request::get("/mcp")
                .header("authorization", bearer(&token))
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap().status().as_u16()
        }
    };
    let jwt = |sub: &str, jti: &str, iat: i64| {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid});
        sign_raw(
            &key,
            &header,
            &json!({"iss": ISSUER, "sub": sub, "aud": RESOURCE, "iat": iat, "exp": now() + 3600,
                    "jti": jti, "client_id": "app", "scope": "read"}),
        )
    };
    let receiver = SsfReceiver::builder(TRANSMITTER, AUDIENCE)
        .jwks(&jwks(&[&key_a()]))
        .invalidates(&cache)
        .build()
        .unwrap();
    let earlier = now() - 60;
    let (a1, a2, b1) = (
        jwt("alice", "a1", earlier),
        jwt("alice", "a2", earlier),
        jwt("bob", "b1", earlier),
    );
    for token in [&a1, &a2, &b1] {
        assert_eq!(status(token.clone()).await, 200);
    }

    // One token revoked: refused now, and again after the cache is emptied.
    let event = |event: &str, subject: Value| sign_set(&set_claims(event, subject));
    receiver
        .receive(&event(
            event::TOKEN_REVOKED,
            json!({"format": "jwt_id", "iss": ISSUER, "jti": "a1"}),
        ))
        .await
        .unwrap();
    assert_eq!(status(a1.clone()).await, 401);
    cache.invalidate_all();
    assert_eq!(
        status(a1.clone()).await,
        401,
        "verified again, still revoked"
    );
    assert_eq!(status(a2.clone()).await, 200);

    // A changed credential only makes bob's token checked again: it is still valid.
    receiver
        .receive(&event(event::CREDENTIAL_CHANGE, iss_sub("bob")))
        .await
        .unwrap();
    assert_eq!(status(b1.clone()).await, 200);

    // alice's account disabled: every token of hers issued by then is refused; a token issued
    // after (the account re-enabled, a new login) is not.
    receiver
        .receive(&event(event::ACCOUNT_DISABLED, iss_sub("alice")))
        .await
        .unwrap();
    assert_eq!(status(a2.clone()).await, 401);
    let later = jwt("alice", "a3", now() + 2);
    assert_eq!(status(later).await, 200);
    assert_eq!(status(b1).await, 200);

    // One of carol's sessions revoked: that session's tokens and hers that name no session (they
    // may belong to it) stay refused once verified again; her other session's token is spared.
    let in_session = |jti: &str, sid: &str| {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid});
        sign_raw(
            &key,
            &header,
            &json!({"iss": ISSUER, "sub": "carol", "aud": RESOURCE, "iat": earlier,
                    "exp": now() + 3600, "jti": jti, "sid": sid, "client_id": "app",
                    "scope": "read"}),
        )
    };
    let (c1, c2, c3) = (
        jwt("carol", "c1", earlier),
        in_session("c2", "s1"),
        in_session("c3", "s2"),
    );
    for token in [&c1, &c2, &c3] {
        assert_eq!(status(token.clone()).await, 200);
    }
    receiver
        .receive(&event(
            event::SESSION_REVOKED,
            json!({"format": "complex", "user": iss_sub("carol"),
                   "session": {"format": "opaque", "id": "s1"}}),
        ))
        .await
        .unwrap();
    cache.invalidate_all();
    assert_eq!(status(c1).await, 401, "names no session");
    assert_eq!(status(c2).await, 401, "the revoked session");
    assert_eq!(status(c3).await, 200, "another session");
    assert_eq!(cache.revocations_forgotten_early(), 0);
}

/// A flood of valid SETs (a transmitter gone wrong, or a stolen stream secret and signing key)
/// fills the replay store; then new SETs get 503 (the transmitter retries) and no remembered
/// identifier is forgotten, so none of the flood can be replayed.
#[tokio::test]
async fn a_flood_of_sets_fills_the_replay_store_without_forgetting_any() {
    let (protected, _server) = warmed(&[("t", claims_of("alice", json!({})))]).await;
    let receiver = receiver(&protected).replay_capacity(32).build().unwrap();
    let addr = push_endpoint(&receiver).await;
    let mut accepted = Vec::new();
    let mut unavailable = 0;
    for _ in 0..200 {
        let set = sign_set(&set_claims(event::CREDENTIAL_CHANGE, iss_sub("nobody")));
        let pushed = push(addr, &set).await;
        match pushed.status {
            202 => accepted.push(set),
            503 => {
                assert_eq!(pushed.retry_after.as_deref(), Some("5"));
                unavailable += 1;
            }
            other => panic!("unexpected {other}: {}", pushed.body),
        }
    }
    // Never more than its capacity (per shard: a shard that fills refuses even while others have
    // room, so slightly fewer may be taken).
    assert!(
        (16..=32).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    assert_eq!(accepted.len() + unavailable, 200);
    for set in &accepted {
        assert_eq!(push(addr, set).await.status, 400, "a flooded SET replayed");
    }
    assert_eq!(receiver.stats().unavailable, unavailable as u64);
}
