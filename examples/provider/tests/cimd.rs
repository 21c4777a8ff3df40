//! Client ID Metadata Documents: a local https document server (a test CA in `fixtures/cimd`)
//! whose behaviour each test chooses, and whose fetches are counted.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{AuthRequest, Backend, Env, REDIRECT_URI, test_config};
use oauth_provider::Config;
use oauth_provider::cimd::CimdSettings;
use oauth_provider::limits::WindowLimit;
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const DOCUMENT_PATH: &str = "/oauth/client.json";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cimd")
        .join(name)
}

/// What the document server answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this body and optional `Cache-Control`.
    Document {
        body: String,
        cache_control: Option<&'static str>,
    },
    /// 200 with this body and `Content-Type`.
    Typed {
        body: String,
        content_type: &'static str,
    },
    /// 200 with the valid document of the requested path's own URL (`client_id`), `no-store`.
    PerPath,
    /// 302 to another path on the same server.
    Redirect,
    /// Reads the request and never answers.
    Silence,
}

/// An https server on `127.0.0.1` serving one answer and counting the requests it reads.
struct DocumentServer {
    port: u16,
    fetches: Arc<AtomicUsize>,
    /// While `false`, requests are counted but not answered.
    gate: tokio::sync::watch::Sender<bool>,
}

impl DocumentServer {
    /// Starts the server; `answer` gets the document's `localhost` URL (known once bound).
    async fn start(answer: impl FnOnce(String) -> Answer) -> Self {
        Self::start_gated(answer, true).await
    }

    /// Like [`start`](Self::start), answering only once [`open`](Self::open) is called when
    /// `open` is false.
    async fn start_gated(answer: impl FnOnce(String) -> Answer, open: bool) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixture("leaf.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(fixture("leaf.key")).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = answer(format!("https://localhost:{port}{DOCUMENT_PATH}"));
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let (gate, gate_rx) = tokio::sync::watch::channel(open);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let answer = answer.clone();
                let counter = counter.clone();
                let mut gate_rx = gate_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if gate_rx.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let path = String::from_utf8_lossy(&head)
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let response = match answer {
                        Answer::Document {
                            body,
                            cache_control,
                        } => {
                            let cache = cache_control
                                .map(|c| format!("Cache-Control: {c}\r\n"))
                                .unwrap_or_default();
                            // No Content-Length: the size bound must hold while reading.
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{cache}\
                                 Connection: close\r\n\r\n{body}"
                            )
                        }
                        Answer::Typed { body, content_type } => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
                             Connection: close\r\n\r\n{body}"
                        ),
                        Answer::PerPath => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Cache-Control: no-store\r\nConnection: close\r\n\r\n{}",
                            document(&format!("https://localhost:{port}{path}"))
                        ),
                        Answer::Redirect => "HTTP/1.1 302 Found\r\nLocation: /elsewhere.json\r\n\
                             Content-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned(),
                        Answer::Silence => {
                            std::future::pending::<()>().await;
                            unreachable!()
                        }
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            port,
            fetches,
            gate,
        }
    }

    /// Lets held requests (and later ones) be answered.
    fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until the server has read `n` requests.
    async fn wait_for_fetches(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while self.fetches() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the document server saw the fetches");
    }

    /// The document URL with `host` (`localhost`, `127.0.0.1`, `[::1]`…).
    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}{DOCUMENT_PATH}", self.port)
    }

    /// A `localhost` document URL with another path (served by [`Answer::PerPath`]).
    fn url_at(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// An HTTP client whose connections come from the loopback address `ip` (127.0.0.2, …), so the
/// server keys it as its own client address.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(ip))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET /authorize` for a new request of `client_id`, sent by `http`.
async fn authorize_with(env: &Env, http: &reqwest::Client, client_id: &str) -> reqwest::Response {
    let req = AuthRequest::new(client_id);
    let url = url::Url::parse_with_params(&env.url("/authorize"), req.query()).unwrap();
    http.get(url).send().await.unwrap()
}

/// A valid document for `client_id`.
fn document(client_id: &str) -> String {
    json!({
        "client_id": client_id,
        "client_name": "Metadata Client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string()
}

/// The test configuration trusting the test CA, with loopback documents allowed or not.
fn config(allow_loopback: bool) -> Config {
    Config {
        cimd: CimdSettings {
            allow_loopback,
            ca_file: Some(fixture("ca.pem")),
            ..CimdSettings::default()
        },
        ..test_config()
    }
}

/// A server answering the valid document for its own `localhost` URL, with `cache_control`.
async fn serving_valid_document(cache_control: Option<&'static str>) -> (DocumentServer, String) {
    let server = DocumentServer::start(|url| Answer::Document {
        body: document(&url),
        cache_control,
    })
    .await;
    let client_id = server.url("localhost");
    (server, client_id)
}

/// Asserts the authorization request for `client_id` is answered with a 400 page saying `why`.
async fn assert_refused(env: &Env, client_id: &str, why: &str) {
    let req = AuthRequest::new(client_id);
    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{client_id}");
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.unwrap();
    assert!(page.contains(why), "{client_id}: {page}");
}

async fn cimd_client_completes_the_code_flow(backend: Backend) {
    let (server, client_id) = serving_valid_document(Some("max-age=600")).await;
    let env = Env::start_with(backend, config(true)).await;

    let req = AuthRequest::new(&client_id);
    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("<strong>localhost (calls itself \u{201c}Metadata Client\u{201d})</strong>"),
        "the page names the document's host first: {page}"
    );

    let tokens = env.tokens(&req).await;
    let access = tokens["access_token"].as_str().unwrap();
    env.assert_active(access, true).await;
    let (status, refreshed) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");

    // Never a client acting on its own authority.
    let (status, body) = env
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    let stored = env.storage().get_client(&client_id).await.unwrap().unwrap();
    assert_eq!(stored.redirect_uris, vec![REDIRECT_URI.to_owned()]);
    assert!(!stored.is_confidential());
    assert_eq!(server.fetches(), 1, "the max-age document is fetched once");
}

backend_tests!(cimd_client_completes_the_code_flow);

/// A document's client acts for users only, like an open registration of an authorization code
/// client: it may ask for every supported scope (the privileged one included), and each token is
/// bounded by what the user holds and approves.
#[tokio::test]
async fn a_document_client_is_bounded_by_the_supported_scopes_like_an_open_registration() {
    let (_server, client_id) = serving_valid_document(None).await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    let mut req = AuthRequest::new(&client_id);
    req.scope = Some("read write admin".to_owned());
    let code = env.authorize_and_approve(&req, "admin", "admin789").await["code"].clone();
    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "admin read write");
    let stored = env.storage().get_client(&client_id).await.unwrap().unwrap();
    assert_eq!(stored.scope, "read write admin ssf");

    // A user holding fewer scopes gets no more than they hold.
    let code = env.authorize_and_approve(&req, "bob", "secret456").await["code"].clone();
    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "read");
}

#[tokio::test]
async fn metadata_advertises_client_id_metadata_documents() {
    let env = Env::start_with(Backend::Memory, config(false)).await;
    let meta: Value = env
        .http
        .get(env.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);
}

#[tokio::test]
async fn ssrf_targets_are_refused_without_any_connection() {
    let server = DocumentServer::start(|url| Answer::Document {
        body: document(&url),
        cache_control: None,
    })
    .await;
    let env = Env::start_with(Backend::Memory, config(false)).await;
    let port = server.port;
    for client_id in [
        server.url("127.0.0.1"),
        server.url("localhost"),
        server.url("[::1]"),
        // IPv4-mapped IPv6 for 127.0.0.1, in the canonical spelling.
        server.url("[::ffff:7f00:1]"),
        format!("https://169.254.169.254:{port}/latest/meta-data"),
        format!("https://10.0.0.1:{port}/client.json"),
        format!("https://192.168.1.1:{port}/client.json"),
        format!("https://[fe80::1]:{port}/client.json"),
        format!("https://0.0.0.0:{port}/client.json"),
    ] {
        assert_refused(
            &env,
            &client_id,
            "The client metadata document&#x27;s host is not allowed.",
        )
        .await;
    }
    assert_eq!(server.fetches(), 0);
}

#[tokio::test]
async fn the_loopback_flag_does_not_open_private_addresses() {
    let env = Env::start_with(Backend::Memory, config(true)).await;
    for client_id in [
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/client.json",
        "https://[::ffff:a9fe:a9fe]/client.json",
    ] {
        assert_refused(
            &env,
            client_id,
            "The client metadata document&#x27;s host is not allowed.",
        )
        .await;
    }
}

#[tokio::test]
async fn document_urls_that_are_not_https_with_a_path_are_unknown_clients() {
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(&env, "https://localhost:1", "not a valid client metadata").await;
    assert_refused(&env, "https://localhost:1/", "not a valid client metadata").await;
    // Not https at all: looked up among registered clients.
    assert_refused(&env, "http://localhost:1/client.json", "Unknown client.").await;
}

#[tokio::test]
async fn an_oversized_document_is_refused() {
    let server = DocumentServer::start(|url| Answer::Document {
        body: json!({
            "client_id": url,
            "redirect_uris": [REDIRECT_URI],
            "padding": "x".repeat(6 * 1024),
        })
        .to_string(),
        cache_control: None,
    })
    .await;
    let client_id = server.url("localhost");
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(
        &env,
        &client_id,
        "The client metadata document is too large.",
    )
    .await;
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_document_server_that_never_answers_is_abandoned_at_the_time_bound() {
    let server = DocumentServer::start(|_| Answer::Silence).await;
    let mut config = config(true);
    config.cimd.timeout = Duration::from_millis(300);
    let env = Env::start_with(Backend::Memory, config).await;
    let started = Instant::now();
    assert_refused(
        &env,
        &server.url("localhost"),
        "The client metadata document could not be fetched.",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the configured timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(server.fetches(), 1, "the request reached the server");
}

#[tokio::test]
async fn a_redirecting_document_server_is_refused() {
    let server = DocumentServer::start(|_| Answer::Redirect).await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(
        &env,
        &server.url("localhost"),
        "The client metadata document could not be fetched (unexpected status).",
    )
    .await;
    assert_eq!(server.fetches(), 1, "the redirect is not followed");
}

#[tokio::test]
async fn a_document_naming_another_client_id_is_refused() {
    let server = DocumentServer::start(|_| Answer::Document {
        body: document("https://attacker.example/client.json"),
        cache_control: None,
    })
    .await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(
        &env,
        &server.url("localhost"),
        "The client metadata document&#x27;s client_id does not match its URL.",
    )
    .await;
    assert!(
        env.storage()
            .get_client(&server.url("localhost"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_redirect_uri_outside_the_document_is_refused() {
    let (server, client_id) = serving_valid_document(None).await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    let req = AuthRequest::new(&client_id);
    let resp = env
        .authorize(&req.query_with("redirect_uri", Some("https://attacker.example/cb")))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("The redirect_uri is not registered for this client."),
        "{page}"
    );
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_document_with_a_shared_secret_method_is_refused() {
    let server = DocumentServer::start(|url| Answer::Document {
        body: json!({
            "client_id": url,
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
        })
        .to_string(),
        cache_control: None,
    })
    .await;
    let client_id = server.url("localhost");
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(&env, &client_id, "The client metadata document is invalid.").await;
}

#[tokio::test]
async fn max_age_is_honoured_one_fetch_for_two_authorizations() {
    let (server, client_id) = serving_valid_document(Some("public, max-age=600")).await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    for _ in 0..2 {
        let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn no_store_is_honoured_two_fetches_for_two_authorizations() {
    let (server, client_id) = serving_valid_document(Some("no-store")).await;
    let env = Env::start_with(Backend::Memory, config(true)).await;
    for _ in 0..2 {
        let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn document_clients_count_against_the_unused_client_cap() {
    let (server, client_id) = serving_valid_document(Some("no-store")).await;
    let mut config = config(true);
    config.limits.max_unused_clients = 0;
    let env = Env::start_with(Backend::Memory, config).await;
    let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(server.fetches(), 1);
}

/// Only a JSON media type is a document: `text/html` (and so any other type) is refused like a
/// malformed document, nothing is stored; `application/json` with a charset is accepted.
#[tokio::test]
async fn a_document_served_as_html_is_refused_as_invalid() {
    let server = DocumentServer::start(|url| Answer::Typed {
        body: document(&url),
        content_type: "text/html; charset=utf-8",
    })
    .await;
    let client_id = server.url("localhost");
    let env = Env::start_with(Backend::Memory, config(true)).await;
    assert_refused(&env, &client_id, "The client metadata document is invalid.").await;
    assert_eq!(server.fetches(), 1);
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_none()
    );

    let server = DocumentServer::start(|url| Answer::Typed {
        body: document(&url),
        content_type: "application/json; charset=utf-8",
    })
    .await;
    let resp = env
        .authorize(&AuthRequest::new(&server.url("localhost")).query())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A new document client is an anonymous registration: a flood of them from one address is
/// stopped by the per-address registration limit (`429` with `Retry-After`, nothing stored), so
/// it cannot fill the server-wide cap of unused clients, and another address can still register
/// and bring a new document client.
#[tokio::test]
async fn a_flood_of_document_clients_from_one_address_leaves_other_addresses_registering() {
    let server = DocumentServer::start(|_| Answer::PerPath).await;
    let mut config = config(true);
    let hour = Duration::from_secs(3600);
    config.limits.registrations_per_address = WindowLimit::new(3, hour, hour);
    config.limits.max_unused_clients = 5;
    let env = Env::start_with(Backend::Memory, config).await;

    let flooder = client_from([127, 0, 0, 2]);
    for i in 0..10 {
        let client_id = server.url_at(&format!("/flood/{i}.json"));
        let resp = authorize_with(&env, &flooder, &client_id).await;
        if i < 3 {
            assert_eq!(resp.status(), StatusCode::OK, "document client {i}");
            continue;
        }
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{i}");
        assert_eq!(resp.headers()["retry-after"], "3600");
        assert!(resp.headers().get("location").is_none());
        assert!(
            env.storage()
                .get_client(&client_id)
                .await
                .unwrap()
                .is_none()
        );
    }
    // The flooder's registrations are refused too: it is one budget.
    let resp = flooder
        .post(env.url("/register"))
        .json(&json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(env.storage().stats().await.unwrap().unused_clients, 3);

    let other = client_from([127, 0, 0, 3]);
    let resp = other
        .post(env.url("/register"))
        .json(&json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let client_id = server.url_at("/other.json");
    let resp = authorize_with(&env, &other, &client_id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// A document's client is stored only after the request passed every other check: a request
/// with a bad PKCE challenge, scope or resource is answered with its error and stores nothing,
/// nor spends the address's registration budget.
#[tokio::test]
async fn a_document_client_is_stored_only_after_every_check_passed() {
    let server = DocumentServer::start(|_| Answer::PerPath).await;
    let mut config = config(true);
    let hour = Duration::from_secs(3600);
    config.limits.registrations_per_address = WindowLimit::new(1, hour, hour);
    let env = Env::start_with(Backend::Memory, config).await;
    let client_id = server.url_at("/checked.json");
    let req = AuthRequest::new(&client_id);
    for (name, value, error) in [
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("scope", Some("read nonexistent"), "invalid_scope"),
        (
            "resource",
            Some("https://unknown.example/mcp"),
            "invalid_target",
        ),
    ] {
        let resp = env.authorize(&req.query_with(name, value)).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{name}");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.contains(&format!("error={error}")), "{location}");
        assert!(
            env.storage()
                .get_client(&client_id)
                .await
                .unwrap()
                .is_none()
        );
    }
    // The budget of one is still there for the valid request.
    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// `HEAD /authorize` stores nothing: no document client, no pending record, no budget spent.
#[tokio::test]
async fn head_authorize_stores_no_document_client() {
    let (server, client_id) = serving_valid_document(Some("max-age=600")).await;
    let mut config = config(true);
    let hour = Duration::from_secs(3600);
    config.limits.registrations_per_address = WindowLimit::new(1, hour, hour);
    let env = Env::start_with(Backend::Memory, config).await;
    let req = AuthRequest::new(&client_id);
    let url = url::Url::parse_with_params(&env.url("/authorize"), req.query()).unwrap();
    for _ in 0..3 {
        let resp = env.http.head(url.clone()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("set-cookie").is_none());
    }
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_none()
    );
    let stats = env.storage().stats().await.unwrap();
    assert_eq!((stats.unused_clients, stats.pending), (0, 0));
    assert_eq!(server.fetches(), 1, "the document was fetched and cached");
    // The GET that follows stores the client, within the untouched budget of one.
    assert_eq!(env.authorize(&req.query()).await.status(), StatusCode::OK);
    assert!(
        env.storage()
            .get_client(&client_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Twenty concurrent authorizations for one cacheable document make one fetch: the others wait
/// for it and share its outcome. The server holds its answer until it has read 20 requests (the
/// behaviour without single flight) or for a second, so the requests overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_authorizations_for_one_document_make_one_fetch() {
    let server = DocumentServer::start_gated(
        |url| Answer::Document {
            body: document(&url),
            cache_control: Some("max-age=600"),
        },
        false,
    )
    .await;
    let client_id = server.url("localhost");
    let mut config = config(true);
    config.cimd.timeout = Duration::from_secs(20);
    let env = Arc::new(Env::start_with(Backend::Memory, config).await);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let env = env.clone();
            let client_id = client_id.clone();
            tokio::spawn(async move {
                let http = env.other_browser();
                authorize_with(&env, &http, &client_id).await.status()
            })
        })
        .collect();
    server.wait_for_fetches(1).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), server.wait_for_fetches(20)).await;
    server.open();
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.fetches(), 1);
}

/// Beyond `max_fetches_in_flight` running fetches a new document is refused at once with `503`,
/// `Retry-After` and `temporarily_unavailable`, without a connection; once the slow fetches end,
/// documents are fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_in_flight_are_bounded() {
    let server = DocumentServer::start_gated(|_| Answer::PerPath, false).await;
    let mut config = config(true);
    config.cimd.timeout = Duration::from_secs(20);
    config.cimd.max_fetches_in_flight = 2;
    let env = Arc::new(Env::start_with(Backend::Memory, config).await);
    let slow: Vec<_> = (0..2)
        .map(|i| {
            let env = env.clone();
            let client_id = server.url_at(&format!("/slow/{i}.json"));
            tokio::spawn(async move {
                let http = env.other_browser();
                authorize_with(&env, &http, &client_id).await.status()
            })
        })
        .collect();
    server.wait_for_fetches(2).await;

    let resp = env
        .authorize(&AuthRequest::new(&server.url_at("/third.json")).query())
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "20");
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.unwrap();
    assert!(page.contains("temporarily_unavailable"), "{page}");
    assert_eq!(
        server.fetches(),
        2,
        "no connection for the refused document"
    );

    server.open();
    for request in slow {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let resp = env
        .authorize(&AuthRequest::new(&server.url_at("/third.json")).query())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}
