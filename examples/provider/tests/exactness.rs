//! Exactness (RFC 6749, RFC 9700): redirect URIs compared as strings, `state` VSCHAR-only and
//! echoed byte for byte, `error_description` never echoing input, `client_name` without format
//! characters, a consent page that says where the user returns and what each scope allows, and
//! JSON errors with `no-store` for every API failure, the router's 404/405/413 included. One test
//! per attack, on both backends.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(
    redirect_uri_variants_a_parser_would_normalise_are_refused,
    https_redirect_uri_without_authority_is_refused,
    state_is_echoed_byte_for_byte,
    state_outside_vschar_is_refused_without_redirecting,
    error_descriptions_never_echo_input,
    client_name_with_format_characters_is_refused,
    consent_page_shows_redirect_host_and_scope_descriptions,
    api_errors_are_json_with_no_store,
);

async fn redirect_uri_variants_a_parser_would_normalise_are_refused(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register(json!({
            "redirect_uris": ["http://127.0.0.1/callback", "http://localhost/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let client_id = body["client_id"].as_str().unwrap();
    let mut req = AuthRequest::new(client_id);
    for variant in [
        "http://127.1/callback",
        "http://127.0.0.1/x/../callback",
        "http://127.0.0.1/./callback",
        "http://127.0.0.1:8080/Callback",
        " http://127.0.0.1/callback",
        "http://127.0.0.1/callback ",
        "http://127.0.0.1/callback\t",
        "http://LOCALHOST/cb",
        "http://localhost./cb",
        "http://0x7f.0.0.1/callback",
        "http://127.0.0.1:/callback",
        "http://127.0.0.1/%63allback",
        "http://127.0.0.1/callback?",
    ] {
        req.redirect_uri = variant.to_owned();
        let resp = env.authorize(&req.query()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{variant:?}");
        assert!(resp.headers().get("location").is_none(), "{variant:?}");
    }
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);
    // Only the port may differ.
    for exact in [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:49152/callback",
        "http://localhost:3000/cb",
    ] {
        req.redirect_uri = exact.to_owned();
        assert_eq!(
            env.authorize(&req.query()).await.status(),
            StatusCode::OK,
            "{exact}"
        );
    }
}

async fn https_redirect_uri_without_authority_is_refused(backend: Backend) {
    let env = Env::start(backend).await;
    let before = env.storage().stats().await.unwrap();
    for uri in ["https:///cb", "https:/cb", "https:cb", "https://"] {
        assert_error(
            &env.register(json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
}

/// Every VSCHAR, including those that need percent-encoding or mean something in a URL.
fn every_vschar() -> String {
    (0x20u8..=0x7E).map(char::from).collect()
}

async fn state_is_echoed_byte_for_byte(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    for state in [
        every_vschar(),
        " leading and trailing ".to_owned(),
        "a+b%20c&d=e#f".to_owned(),
        "x".repeat(2048),
    ] {
        // After approval (`authorize_and_approve` asserts `state` is echoed exactly)…
        let mut req = AuthRequest::new(&client_id);
        req.state = state.clone();
        env.authorize_and_approve(&req, "alice", "password123")
            .await;
        // …and on an error redirect.
        let resp = env
            .authorize(&req.query_with("code_challenge_method", Some("plain")))
            .await;
        let params = redirect_params(&resp, &req.redirect_uri);
        assert_eq!(params["error"], "invalid_request");
        assert_eq!(params["state"], state);
    }
}

async fn state_outside_vschar_is_refused_without_redirecting(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let mut req = AuthRequest::new(&client_id);
    for state in [
        "caf\u{e9}".to_owned(),
        "line\nbreak".to_owned(),
        "tab\there".to_owned(),
        "del\u{7f}".to_owned(),
        "nul\u{0}".to_owned(),
        "\u{202e}reversed".to_owned(),
        "x".repeat(2049),
    ] {
        req.state = state.clone();
        let resp = env.authorize(&req.query()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{state:?}");
        assert!(resp.headers().get("location").is_none(), "{state:?}");
        assert!(resp.text().await.unwrap().contains("state"));
    }
    // Repeated state: same.
    req.state = "one".to_owned();
    let mut query = req.query();
    query.push(("state", "two"));
    let resp = env.authorize(&query).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);
}

async fn error_descriptions_never_echo_input(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let marker = "INJECTED<script>\"\\\u{e9}";
    // Token endpoint: a repeated parameter named by the attacker.
    let result = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            (marker, "1"),
            (marker, "2"),
        ])
        .await;
    assert_error(&result, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(!result.1.to_string().contains("INJECTED"), "{}", result.1);
    // Registration: a grant type, and JSON whose parse error would quote the input.
    for metadata in [
        json!({"redirect_uris": [REDIRECT_URI], "grant_types": [marker]}),
        json!({"redirect_uris": [REDIRECT_URI], "client_name": 5, "INJECTED": marker}),
        json!({"redirect_uris": marker}),
    ] {
        let result = env.register(metadata).await;
        assert_error(&result, StatusCode::BAD_REQUEST, "invalid_client_metadata");
        assert!(!result.1.to_string().contains("INJECTED"), "{}", result.1);
    }
    let resp = env
        .http
        .post(env.url("/register"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"redirect_uris\": [\"{REDIRECT_URI}\"], INJECTED"
        ))
        .send()
        .await
        .unwrap();
    let result = json_of(resp).await;
    assert_error(&result, StatusCode::BAD_REQUEST, "invalid_client_metadata");
    assert!(!result.1.to_string().contains("INJECTED"), "{}", result.1);
    // Authorization endpoint: a repeated parameter named by the attacker, redirected.
    let req = AuthRequest::new(&client_id);
    let mut query = req.query();
    query.extend([(marker, "1"), (marker, "2")]);
    let resp = env.authorize(&query).await;
    let params = redirect_params(&resp, &req.redirect_uri);
    assert_eq!(params["error"], "invalid_request");
    assert!(!params["error_description"].contains("INJECTED"));
    assert_safe_description(&params["error_description"]);
}

async fn client_name_with_format_characters_is_refused(backend: Backend) {
    let env = Env::start(backend).await;
    let before = env.storage().stats().await.unwrap();
    for name in [
        "Good App\u{202e}ppa liveE",
        "Good\u{200b}App",
        "Good\u{2066}App\u{2069}",
        "\u{feff}Good App",
        "Good\u{ad}App",
        "Good\u{e0041}App",
        "Good\u{85}App",
    ] {
        assert_error(
            &env.register(json!({
                "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "client_name": name
            }))
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
    // Ordinary non-ASCII names are fine.
    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
            "client_name": "Café Ünïcødé 日本"
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn consent_page_shows_redirect_host_and_scope_descriptions(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register(json!({
            "client_name": "Your Bank",
            "redirect_uris": ["https://attacker.example/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut req = AuthRequest::new(body["client_id"].as_str().unwrap());
    req.redirect_uri = "https://attacker.example/cb".to_owned();
    req.scope = Some("read write admin".to_owned());
    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let login = resp.text().await.unwrap();
    let beside_name =
        "<strong>Your Bank</strong> (returns to <code class=\"host\">attacker.example</code>)";
    assert!(login.contains(beside_name), "{login}");
    let resp = env.login(&login, "admin", "admin789").await;
    let consent = resp.text().await.unwrap();
    assert!(consent.contains(beside_name), "{consent}");
    for line in [
        "<li><code>read</code>: Read data and documents</li>",
        "<li><code>write</code>: Create and modify data</li>",
        "<li><code>admin</code>: System administration, user management</li>",
    ] {
        assert!(consent.contains(line), "{line} missing from {consent}");
    }
    // Descriptions come from the configuration.
    let mut config = test_config();
    config
        .scope_descriptions
        .insert("read".to_owned(), "See your <notes>".to_owned());
    let env = Env::start_with(backend, config).await;
    let client_id = env.public_client().await;
    let mut req = AuthRequest::new(&client_id);
    req.scope = Some("read".to_owned());
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    assert!(
        page.contains("<li><code>read</code>: See your &lt;notes&gt;</li>")
            && page.contains("<code class=\"host\">127.0.0.1</code>"),
        "{page}"
    );
}

async fn api_errors_are_json_with_no_store(backend: Backend) {
    let env = Env::start(backend).await;
    let check = |resp: reqwest::Response, status: StatusCode| async move {
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let allow = resp.headers().get("allow").cloned();
        assert_error(&json_of(resp).await, status, "invalid_request");
        allow
    };
    for path in ["/token", "/introspect", "/revoke", "/register"] {
        let resp = env.http.get(env.url(path)).send().await.unwrap();
        let allow = check(resp, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(allow.unwrap(), "POST", "{path}");
        let resp = env
            .http
            .post(env.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 64 * 1024])
            .send()
            .await
            .unwrap();
        check(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    }
    let resp = env
        .http
        .delete(env.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    check(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    for path in ["/nope", "/token/", "/.well-known/openid-configuration"] {
        let resp = env.http.post(env.url(path)).send().await.unwrap();
        check(resp, StatusCode::NOT_FOUND).await;
    }
    // The browser-facing endpoint keeps answering in HTML.
    let resp = env.http.get(env.url("/authorize")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

/// One HTTP/1.1 exchange on an open connection: the status line and body of the answer.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    head: &str,
    body_parts: &[&[u8]],
) -> std::io::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await?;
    for part in body_parts {
        stream.write_all(part).await?;
        stream.flush().await?;
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                let status = text.lines().next().unwrap_or_default().to_owned();
                return Ok((status, text[end + 4..end + 4 + length].to_owned()));
            }
        }
    }
}

/// A client that sends a body over the limit must be able to read the `413`: the server reads the
/// body off the connection first (an answer sent mid-upload, followed by a close with unread
/// data, reaches the client as a reset). Deterministic: the second half of the body is sent only
/// after the first, and the connection still serves another request afterwards, which it could
/// not if the body had been left unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_read_before_the_413_and_the_connection_stays_usable() {
    let env = Env::start(Backend::Memory).await;
    let addr = env.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let half = vec![b'a'; 32 * 1024];
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        2 * half.len()
    );
    let (status, body) = exchange(&mut stream, &head, &[&half, &half]).await.unwrap();
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "invalid_request");
    // The same connection, again: the metadata document.
    let (status, _) = exchange(
        &mut stream,
        &format!("GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// The drain is bounded: a body declared larger than the drain bound is answered at once, and a
/// body that keeps coming is cut off after the bound (the server never reads an unbounded upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_body_is_refused_without_reading_it() {
    let env = Env::start(Backend::Memory).await;
    let addr = env.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        oauth_provider::body_limit::DRAIN_BYTES + 1
    );
    // Nothing of the body is sent: the answer comes anyway.
    let (status, body) = exchange(&mut stream, &head, &[]).await.unwrap();
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "invalid_request");
}

/// The drain is bounded in time too: a client that stops sending in the middle of an oversized
/// body cannot hold the request open; it gets the `413` once the drain gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_oversized_body_gets_the_413_when_the_drain_gives_up() {
    let env = Env::start(Backend::Memory).await;
    let addr = env.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        64 * 1024
    );
    // Past the 16 KiB limit, then silence: the rest of the declared body never comes.
    let sent = vec![b'a'; 20 * 1024];
    let bound = oauth_provider::body_limit::DRAIN_TIME * 5;
    let (status, body) = tokio::time::timeout(bound, exchange(&mut stream, &head, &[&sent]))
        .await
        .expect("the 413 came within the drain's time bound")
        .unwrap();
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "invalid_request");
}
