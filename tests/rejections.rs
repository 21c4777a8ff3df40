//! Exact responses of the bearer layer for every kind of request, over real HTTP on loopback.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tower_introspect::cache::CacheConfig;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REALM_CHALLENGE: &str = r#"Bearer realm="mcp", scope="read write", resource_metadata="https://rs.example/.well-known/oauth-protected-resource/mcp""#;

async fn app(server: &MockServer) -> (std::net::SocketAddr, Seen) {
    let app = protected(
        introspector_for(server).build().unwrap(),
        CacheConfig::default(),
        |layer| {
            layer
                .realm("mcp")
                .resource_metadata(METADATA)
                .challenge_scope("read write")
                .unwrap()
        },
    );
    (serve(app.router).await, app.seen)
}

#[tokio::test]
async fn missing_token_is_401_without_error_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let (addr, seen) = app(&server).await;

    let answer = get(addr, "/mcp", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(REALM_CHALLENGE));

    // Another scheme is not a bearer token: same challenge, not a 400.
    let answer = get(addr, "/mcp", &["Basic dXNlcjpwYXNz"]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(REALM_CHALLENGE));

    // A token in the query string is never read.
    let answer = get(addr, "/mcp?access_token=good", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn malformed_headers_are_400_invalid_request() {
    let server = MockServer::start().await;
    let (addr, seen) = app(&server).await;

    let long = format!("Bearer {}", "a".repeat(4097));
    let cases: [(&[&str], &str); 5] = [
        (&["Bearer"], "The bearer token is missing"),
        (&["Bearer a b"], "The bearer token is not a valid b64token"),
        (
            &["Bearer ab\"c"],
            "The bearer token is not a valid b64token",
        ),
        (&[long.as_str()], "The bearer token is too long"),
        (
            &["Bearer one", "Bearer two"],
            "Multiple Authorization headers",
        ),
    ];
    for (headers, description) in cases {
        let answer = get(addr, "/mcp", headers).await;
        assert_eq!(answer.status, 400, "{headers:?}");
        assert_eq!(
            answer.challenge.unwrap(),
            format!(
                r#"Bearer realm="mcp", error="invalid_request", error_description="{description}", resource_metadata="{METADATA}""#
            )
        );
    }
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "no introspection for malformed requests"
    );
    // The length limit is inclusive.
    let ok_length = format!("Bearer {}", "a".repeat(4096));
    expect_introspection(&server, &"a".repeat(4096), active("u", "read"), 1).await;
    assert_eq!(get(addr, "/mcp", &[ok_length.as_str()]).await.status, 200);
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn bearer_scheme_not_followed_by_a_space_is_400_even_when_tokens_are_optional() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    for optional in [false, true] {
        let app = protected(
            introspector_for(&server).build().unwrap(),
            CacheConfig::default(),
            |layer| {
                layer
                    .resource_metadata(METADATA)
                    .allow_missing_token(optional)
            },
        );
        let seen = app.seen.clone();
        let addr = serve(app.router).await;
        for value in [
            &b"Bearer\tgood"[..],
            b"bearer\t good",
            b"Bearer\x85good",
            b"Bearer\xc2\xa0good",
            b"Bearergood",
        ] {
            let answer = get_with_raw_authorization(addr, "/mcp", &[value]).await;
            assert_eq!(answer.status, 400, "{value:?}, optional: {optional}");
            assert_eq!(
                answer.challenge.as_deref(),
                Some(
                    format!(
                        r#"Bearer error="invalid_request", error_description="The bearer scheme must be followed by a space", resource_metadata="{METADATA}""#
                    )
                    .as_str()
                ),
                "{value:?}"
            );
        }
        assert_eq!(seen.calls(), 0, "never passed on, anonymously or not");
    }
}

#[tokio::test]
async fn non_ascii_credentials_of_another_scheme_mean_no_bearer_token() {
    let server = MockServer::start().await;
    let (addr, seen) = app(&server).await;
    let digest = "Digest username=\"J\u{fc}rgen\", realm=\"x\", nonce=\"n\"".as_bytes();
    let answer = get_with_raw_authorization(addr, "/mcp", &[digest]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(REALM_CHALLENGE));

    // With anonymous access allowed, such a request is anonymous.
    let optional = protected(
        introspector_for(&server).build().unwrap(),
        CacheConfig::default(),
        |layer| layer.allow_missing_token(true),
    );
    let optional_seen = optional.seen.clone();
    let optional_addr = serve(optional.router).await;
    let answer = get_with_raw_authorization(optional_addr, "/mcp", &[digest]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(optional_seen.calls(), 1);
    assert!(optional_seen.last().is_none());
    assert_eq!(seen.calls(), 0);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_tokens_are_401_invalid_token_with_reason() {
    let server = MockServer::start().await;
    let mut expired = active("u", "read");
    expired["exp"] = json!(now() - 3600);
    let mut early = active("u", "read");
    early["nbf"] = json!(now() + 3600);
    let mut foreign = active("u", "read");
    foreign["aud"] = json!(["https://other.example"]);
    let mut no_aud = active("u", "read");
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut wrong_iss = active("u", "read");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut refresh = active("u", "read");
    refresh["token_type"] = json!("refresh_token");
    let refresh_forms = [
        (
            "token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
        ("token_type", "Refresh_Token"),
        ("token_use", "refresh_token"),
        ("typ", "Refresh"),
        ("typ", "Offline"),
    ]
    .map(|(claim, value)| {
        let mut body = active("u", "read");
        body[claim] = json!(value);
        body
    });
    let [urn, mixed_case, token_use, typ_refresh, typ_offline] = refresh_forms;
    let mut tab_scope = active("u", "read");
    tab_scope["scope"] = json!("tenant:x\tadmin");
    let mut nbsp_scope = active("u", "read");
    nbsp_scope["scope"] = json!(["read", "x\u{a0}admin"]);
    let cases = [
        (
            "inactive",
            json!({"active": false}),
            "The access token is not active",
        ),
        ("expired", expired, "The access token expired"),
        ("early", early, "The access token is not valid yet"),
        (
            "foreign",
            foreign,
            "The access token is not meant for this resource",
        ),
        (
            "noaud",
            no_aud,
            "The access token is not meant for this resource",
        ),
        (
            "wrongiss",
            wrong_iss,
            "The access token was issued by an untrusted issuer",
        ),
        (
            "refresh",
            refresh,
            "The presented token is not an access token",
        ),
        ("urn", urn, "The presented token is not an access token"),
        (
            "mixedcase",
            mixed_case,
            "The presented token is not an access token",
        ),
        (
            "tokenuse",
            token_use,
            "The presented token is not an access token",
        ),
        (
            "typrefresh",
            typ_refresh,
            "The presented token is not an access token",
        ),
        (
            "typoffline",
            typ_offline,
            "The presented token is not an access token",
        ),
        (
            "tabscope",
            tab_scope,
            "The access token's scope is malformed",
        ),
        (
            "nbspscope",
            nbsp_scope,
            "The access token's scope is malformed",
        ),
    ];
    for (token, body, _) in &cases {
        expect_introspection(&server, token, body.clone(), 1).await;
    }
    let (addr, seen) = app(&server).await;

    for (token, _, description) in &cases {
        let answer = get(addr, "/mcp", &[&bearer(token)]).await;
        assert_eq!(answer.status, 401, "{token}");
        assert_eq!(
            answer.challenge.unwrap(),
            format!(
                r#"Bearer realm="mcp", error="invalid_token", error_description="{description}", resource_metadata="{METADATA}""#
            ),
            "{token}"
        );
    }
    assert_eq!(
        seen.calls(),
        0,
        "the inner service is never called on a rejection"
    );
}

#[tokio::test]
async fn server_failures_are_503_without_challenge() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let (addr, seen) = app(&server).await;

    let answer = get(addr, "/mcp", &[&bearer("tok")]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.challenge, None);
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_eq!(answer.body, "");
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn valid_token_reaches_handler_with_principal() {
    let server = MockServer::start().await;
    expect_introspection(&server, "good", active("alice", "read write"), 1).await;
    let (addr, seen) = app(&server).await;

    let answer = get(addr, "/mcp", &["bEaReR   good"]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "ok");
    let principal = seen.last().expect("principal inserted");
    assert_eq!(principal.subject(), Some("alice"));
    assert_eq!(principal.username(), Some("alice-name"));
    assert_eq!(principal.client_id(), Some("client-1"));
    assert_eq!(principal.scopes().to_string(), "read write");
    assert_eq!(principal.audiences(), [RESOURCE]);
    assert_eq!(principal.issuer(), Some(ISSUER));
    assert_eq!(principal.claim("tenant"), Some(&json!("acme")));
    assert!(principal.expires_at().unwrap() > std::time::SystemTime::now());
}

#[tokio::test]
async fn optional_mode_passes_anonymous_requests_but_refuses_bad_tokens() {
    let server = MockServer::start().await;
    expect_introspection(&server, "bad", json!({"active": false}), 1).await;
    expect_introspection(&server, "good", active("bob", "read"), 1).await;
    let app = protected(
        introspector_for(&server).build().unwrap(),
        CacheConfig::default(),
        |layer| layer.allow_missing_token(true),
    );
    let seen = app.seen.clone();
    let addr = serve(app.router).await;

    let anonymous = get(addr, "/public", &[]).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(seen.calls(), 1);
    assert!(seen.last().is_none(), "no principal without a token");

    let bad = get(addr, "/public", &[&bearer("bad")]).await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.challenge.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="The access token is not active""#)
    );
    let malformed = get(addr, "/public", &["Bearer a b"]).await;
    assert_eq!(malformed.status, 400);

    let good = get(addr, "/public", &[&bearer("good")]).await;
    assert_eq!(good.status, 200);
    assert_eq!(seen.last().unwrap().subject(), Some("bob"));
    assert_eq!(seen.calls(), 2);
}

#[tokio::test]
async fn request_timeout_is_a_503() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("slow", "read"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let app = protected(
        introspector_for(&server)
            .request_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
        CacheConfig::default(),
        |layer| layer.retry_after(2),
    );
    let seen = app.seen.clone();
    let addr = serve(app.router).await;
    let answer = get(addr, "/mcp", &[&bearer("slow")]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.retry_after.as_deref(), Some("2"));
    assert_eq!(seen.calls(), 0);
}
