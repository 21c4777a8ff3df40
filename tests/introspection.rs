//! The introspection client as the authorization server sees it, and how it reads answers.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::json;
use tower_introspect::error::{InvalidToken, UnavailableCause};
use tower_introspect::{ConfigError, Introspector, TokenVerifier, VerifyError};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn client_secret_basic_form_encodes_credentials() {
    let server = MockServer::start().await;
    // RFC 6749 §2.3.1: "my client:1" / "p@ss w%rd" are form-encoded before base64.
    let expected = format!("Basic {}", STANDARD.encode("my+client%3A1:p%40ss+w%25rd"));
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(header("authorization", expected.as_str()))
        .and(header("accept", "application/json"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("token=tok-1&token_type_hint=access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .expect(1)
        .mount(&server)
        .await;
    install_crypto();
    let introspector = Introspector::builder()
        .endpoint(format!("{}/introspect", server.uri()))
        .client_secret_basic("my client:1", "p@ss w%rd")
        .build()
        .unwrap();
    let answer = introspector.introspect("tok-1").await.unwrap();
    assert!(!answer.active);
}

#[tokio::test]
async fn client_secret_post_sends_credentials_in_the_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .expect(1)
        .mount(&server)
        .await;
    install_crypto();
    let introspector = Introspector::builder()
        .endpoint(format!("{}/introspect", server.uri()))
        .client_secret_post("rs", "s&cret=1")
        .build()
        .unwrap();
    introspector.introspect("tok-2").await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].headers.contains_key("authorization"));
    assert_eq!(
        form_of(&requests[0]),
        [
            ("token".to_owned(), "tok-2".to_owned()),
            ("token_type_hint".to_owned(), "access_token".to_owned()),
            ("client_id".to_owned(), "rs".to_owned()),
            ("client_secret".to_owned(), "s&cret=1".to_owned()),
        ]
    );
}

#[tokio::test]
async fn bearer_credential_is_sent_as_authorization() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer admin-credential"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .expect(1)
        .mount(&server)
        .await;
    install_crypto();
    Introspector::builder()
        .endpoint(format!("{}/introspect", server.uri()))
        .bearer_credential("admin-credential")
        .build()
        .unwrap()
        .introspect("tok-3")
        .await
        .unwrap();
}

#[tokio::test]
async fn audience_as_string_or_array() {
    let server = MockServer::start().await;
    let mut as_array = active("u", "read");
    as_array["aud"] = json!(["https://first.example", RESOURCE]);
    expect_introspection(&server, "string-aud", active("u", "read"), 1).await;
    expect_introspection(&server, "array-aud", as_array, 1).await;
    let introspector = introspector_for(&server).build().unwrap();

    let p = introspector.verify("string-aud").await.unwrap();
    assert_eq!(p.audiences(), [RESOURCE]);
    let p = introspector.verify("array-aud").await.unwrap();
    assert_eq!(p.audiences(), ["https://first.example", RESOURCE]);
}

#[tokio::test]
async fn tolerant_parsing_of_real_server_answers() {
    let server = MockServer::start().await;
    // No scope at all, float timestamps, unknown members.
    expect_introspection(
        &server,
        "odd",
        json!({"active": true, "aud": RESOURCE, "iss": ISSUER, "exp": (now() + 60) as f64 + 0.5,
               "scope": "", "ext": {"k": 1}}),
        1,
    )
    .await;
    let p = introspector_for(&server)
        .build()
        .unwrap()
        .verify("odd")
        .await
        .unwrap();
    assert!(p.scopes().is_empty());
    assert_eq!(p.claim("ext"), Some(&json!({"k": 1})));
    assert_eq!(p.subject(), None);
}

#[tokio::test]
async fn garbage_and_oversized_answers_are_unavailable() {
    let server = MockServer::start().await;
    let cases = [
        (
            "html",
            ResponseTemplate::new(200).set_body_string("<html>login</html>"),
        ),
        (
            "no-active",
            ResponseTemplate::new(200).set_body_json(json!({"scope": "read"})),
        ),
        (
            "server-error",
            ResponseTemplate::new(500).set_body_json(json!({"active": true})),
        ),
        ("unauthorized", ResponseTemplate::new(401)),
        (
            "redirect",
            ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/"),
        ),
        (
            "huge",
            ResponseTemplate::new(200).set_body_string(format!(
                r#"{{"active":true,"pad":"{}"}}"#,
                "x".repeat(70_000)
            )),
        ),
    ];
    for (token, template) in cases {
        Mock::given(method("POST"))
            .and(FormParam("token", token.to_owned()))
            .respond_with(template)
            .expect(1)
            .mount(&server)
            .await;
    }
    let introspector = introspector_for(&server).build().unwrap();
    // Each failure is unavailable (never a verdict on the token), with a reason naming its cause.
    for (token, detail, cause) in [
        (
            "html",
            "not an introspection response",
            UnavailableCause::InvalidResponse,
        ),
        (
            "no-active",
            "missing field `active`",
            UnavailableCause::InvalidResponse,
        ),
        ("server-error", "answered 500", UnavailableCause::Status),
        ("unauthorized", "answered 401", UnavailableCause::Status),
        ("redirect", "answered 302", UnavailableCause::Status),
        (
            "huge",
            "larger than 65536 bytes",
            UnavailableCause::InvalidResponse,
        ),
    ] {
        match introspector.verify(token).await {
            Err(VerifyError::Unavailable(reason)) => {
                assert!(reason.detail().contains(detail), "{token}: {reason}");
                assert_eq!(reason.cause(), cause, "{token}");
            }
            other => panic!("{token}: expected unavailable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn response_size_limit_is_configurable() {
    let server = MockServer::start().await;
    expect_introspection(&server, "t", active("u", "read"), 2).await;
    let small = introspector_for(&server)
        .max_response_bytes(64)
        .build()
        .unwrap();
    assert!(matches!(
        small.verify("t").await,
        Err(VerifyError::Unavailable(_))
    ));
    let large = introspector_for(&server)
        .max_response_bytes(4096)
        .build()
        .unwrap();
    assert!(large.verify("t").await.is_ok());
}

#[tokio::test]
async fn validation_reasons() {
    let server = MockServer::start().await;
    let mut refresh = active("u", "read");
    refresh.as_object_mut().unwrap().remove("token_type");
    refresh["typ"] = json!("Refresh");
    expect_introspection(&server, "kc-refresh", refresh, 1).await;
    let introspector = introspector_for(&server).build().unwrap();
    assert!(matches!(
        introspector.verify("kc-refresh").await,
        Err(VerifyError::Invalid(InvalidToken::NotAnAccessToken))
    ));
}

#[tokio::test]
async fn discovery_finds_the_endpoint_and_pins_the_issuer() {
    let server = MockServer::start().await;
    let issuer = format!("{}/realms/demo", server.uri());
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server/realms/demo"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "introspection_endpoint": format!("{}/realms/demo/introspect", server.uri()),
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/realms/demo/introspect"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .expect(1)
        .mount(&server)
        .await;
    install_crypto();
    let introspector = Introspector::builder()
        .client_secret_basic("rs", "secret")
        .discover(&issuer)
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        introspector.endpoint().unwrap().as_str(),
        format!("{}/realms/demo/introspect", server.uri())
    );
    assert!(!introspector.introspect("t").await.unwrap().active);
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration_and_rejects_issuer_mismatch() {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://impostor.example",
            "introspection_endpoint": "https://impostor.example/introspect",
        })))
        .mount(&server)
        .await;
    install_crypto();
    let err = Introspector::builder().discover(&issuer).await.unwrap_err();
    match err {
        ConfigError::Discovery(reason) => assert!(reason.contains("impostor"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    let err = Introspector::builder().build().unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Missing {
            setting: "endpoint",
            ..
        }
    ));
    let err = Introspector::builder()
        .endpoint("ftp://as/introspect")
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidUrl { .. }));
}

#[tokio::test]
async fn concurrent_calls_can_be_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(active("u", "read"))
                .set_delay(std::time::Duration::from_millis(150)),
        )
        .expect(3)
        .mount(&server)
        .await;
    // One call at a time, with time enough for all three in a row.
    let introspector = introspector_for(&server)
        .max_concurrent_requests(1)
        .request_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (a, b, c) = tokio::join!(
        introspector.verify("one"),
        introspector.verify("two"),
        introspector.verify("three"),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    // Serialized: the three calls cannot have overlapped.
    assert!(started.elapsed() >= std::time::Duration::from_millis(450));
}

/// A loopback "authorization server" that accepts connections and never answers.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

// Virtual time: every call runs into its deadline, and the deadlines are exact.
#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_counts_against_the_request_timeout() {
    use std::time::Duration;
    let addr = silent_server().await;
    install_crypto();
    let introspector = Introspector::builder()
        .endpoint(format!("http://{addr}/introspect"))
        .max_concurrent_requests(1)
        .request_timeout(Duration::from_secs(10))
        // Longer than the request timeout, so only the request timeout can end a call.
        .connect_timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // The first call holds the only slot for its whole 10 s; the second arrives 5 s later.
    let first = introspector.introspect("one");
    let second = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let arrived = tokio::time::Instant::now();
        let outcome = introspector.introspect("two").await;
        (outcome, arrived.elapsed())
    };
    let (first, (second, held)) = tokio::join!(first, second);
    assert!(
        matches!(&first, Err(VerifyError::Unavailable(e)) if e.cause() == UnavailableCause::Timeout),
        "{first:?}"
    );
    assert!(
        matches!(&second, Err(VerifyError::Unavailable(e)) if e.cause() == UnavailableCause::Timeout),
        "{second:?}"
    );
    // One deadline for wait and call: 10 s, not 5 s of waiting plus a fresh 10 s.
    assert!(
        held >= Duration::from_secs(10) && held < Duration::from_secs(11),
        "held {held:?}"
    );
}

#[tokio::test]
async fn plain_http_endpoint_is_refused_unless_loopback_or_opted_in() {
    install_crypto();
    for refused in [
        "http://as.example/introspect",
        "http://10.1.2.3:8080/introspect",
        "http://localhost.as.example/introspect",
    ] {
        let err = Introspector::builder()
            .endpoint(refused)
            .build()
            .unwrap_err();
        match err {
            ConfigError::InvalidUrl { url, reason } => {
                assert_eq!(url, refused);
                assert!(reason.contains("https"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        Introspector::builder()
            .endpoint(refused)
            .allow_insecure_http(true)
            .build()
            .unwrap();
    }
    for allowed in [
        "https://as.example/introspect",
        "http://127.0.0.1:9/introspect",
        "http://[::1]:9/introspect",
        "http://localhost:9/introspect",
    ] {
        Introspector::builder().endpoint(allowed).build().unwrap();
    }
    // Discovery over plain http is refused before any request is made.
    let err = Introspector::builder()
        .discover("http://as.example")
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn discovered_plain_http_endpoint_is_refused_unless_opted_in() {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "introspection_endpoint": "http://as.example/introspect",
        })))
        .expect(2)
        .mount(&server)
        .await;
    install_crypto();
    let err = Introspector::builder().discover(&issuer).await.unwrap_err();
    match err {
        ConfigError::InvalidUrl { url, reason } => {
            assert_eq!(url, "http://as.example/introspect");
            assert!(reason.contains("https"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let introspector = Introspector::builder()
        .allow_insecure_http(true)
        .discover(&issuer)
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        introspector.endpoint().unwrap().as_str(),
        "http://as.example/introspect"
    );
}

/// A loopback listener whose accept queue is full, so that a new connection attempt hangs.
async fn unconnectable() -> (std::net::SocketAddr, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    // Keep the listener open (never accepting) for the test's life.
    std::mem::forget(listener);
    (addr, queued)
}

#[tokio::test]
async fn connect_timeout_given_after_discovery_applies() {
    use std::time::{Duration, Instant};
    let (blackhole, _queued) = unconnectable().await;
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "introspection_endpoint": format!("http://{blackhole}/introspect"),
        })))
        .mount(&server)
        .await;
    install_crypto();
    let introspector = Introspector::builder()
        .discover(&issuer)
        .await
        .unwrap()
        // After discovery: must still govern the client introspection uses.
        .connect_timeout(Duration::from_millis(100))
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = introspector.introspect("t").await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(VerifyError::Unavailable(_))),
        "{outcome:?}"
    );
    // The default connect timeout is 2 s; the one given after discovery is 100 ms (and the
    // attempt did hang until it: a refused connection would fail at once).
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[test]
fn a_missing_endpoint_is_its_own_configuration_error() {
    install_crypto();
    let error = Introspector::builder()
        .client_secret_basic("rs", "secret")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Missing {
                setting: "endpoint",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_keeps_the_underlying_error_as_the_source() {
    install_crypto();
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let introspector = Introspector::builder()
        .endpoint(format!("http://127.0.0.1:{port}/introspect"))
        .client_secret_basic("rs", "secret")
        .build()
        .unwrap();
    let verdict = introspector.verify("tok").await;
    let Err(VerifyError::Unavailable(unavailable)) = &verdict else {
        panic!("an unreachable server must be unavailable");
    };
    // The chain runs from the verdict through the unavailability to the client's error.
    let error = verdict.as_ref().unwrap_err();
    let chained = std::error::Error::source(error).and_then(std::error::Error::source);
    assert!(chained.is_some_and(|e| e.is::<reqwest::Error>()));
    assert_eq!(unavailable.cause(), UnavailableCause::Unreachable);
    let source = std::error::Error::source(&unavailable).expect("the client's error is kept");
    assert!(source.is::<reqwest::Error>(), "{source:?}");
    assert!(
        !format!("{unavailable:?}").contains("tok\""),
        "no token in the error"
    );
}
