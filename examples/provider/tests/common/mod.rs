//! Shared harness: backend factory, servers on real loopback sockets, an HTTP "browser" that
//! drives the login and consent forms, and small assertion helpers.
#![allow(dead_code)]

pub mod postgres;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oauth_provider::model::{TokenKind, TokenRecord};
use std::process::Stdio;

use oauth_provider::storage::{MemoryStorage, SqliteStorage, Storage};
use oauth_provider::tokens::hash_secret;
use oauth_provider::{Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// The storage backends every behavioural test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Sqlite,
    /// A fresh database on the server of [`postgres::URL_VAR`], dropped after the test.
    Postgres,
}

/// What a test's store lives in, kept beside the store: the directory of the SQLite file and,
/// on PostgreSQL, the guard that drops the test database when it is dropped.
pub struct Scratch {
    pub dir: TempDir,
    pub database: Option<postgres::TestDatabase>,
}

/// Opens a fresh store of the given kind; SQLite uses a real file inside `dir`, PostgreSQL a
/// new database, whose guard (returned beside the store) drops it.
pub async fn open_storage(
    backend: Backend,
    dir: &TempDir,
) -> (Arc<dyn Storage>, Option<postgres::TestDatabase>) {
    match backend {
        Backend::Memory => (Arc::new(MemoryStorage::new()), None),
        Backend::Sqlite => {
            let storage = SqliteStorage::open(dir.path().join("oauth.db"))
                .await
                .expect("open sqlite");
            (Arc::new(storage), None)
        }
        Backend::Postgres => {
            let database = postgres::TestDatabase::create().await;
            (Arc::new(database.open().await), Some(database))
        }
    }
}

/// Instantiates each listed `async fn name(Backend)` once per backend, as `memory::name`,
/// `sqlite::name` and `postgres::name`, so the suite is written once. The PostgreSQL variants
/// skip (with a message) when no server is configured; see [`postgres::server_url`].
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Memory).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::common::postgres::server_url(stringify!($name)).is_some() {
                        super::$name($crate::common::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// A running demo server plus an HTTP client with a cookie jar that does not follow redirects.
pub struct Env {
    /// Where requests go (`http://127.0.0.1:port`).
    pub base: String,
    /// The server's issuer.
    pub issuer: String,
    /// The in-process server, if this environment started one.
    pub server: Option<Server>,
    storage: Option<Arc<dyn Storage>>,
    pub http: reqwest::Client,
    pub dir: Option<TempDir>,
    /// The PostgreSQL test database, dropped after the server.
    database: Option<postgres::TestDatabase>,
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

impl Env {
    /// The demo configuration, with an initial access token for `client_credentials`
    /// registrations ([`REGISTRATION_TOKEN`]).
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, test_config()).await
    }

    pub async fn start_with(backend: Backend, config: Config) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage, database) = open_storage(backend, &dir).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::start_with_storage(config, listener, storage)
            .await
            .expect("server");
        Self {
            database,
            ..Self::with_server(server, Some(dir))
        }
    }

    /// Wraps a running in-process server.
    pub fn with_server(server: Server, dir: Option<TempDir>) -> Self {
        Self {
            base: server.base_url(),
            issuer: server.issuer().to_owned(),
            storage: Some(server.state().storage().clone()),
            server: Some(server),
            http: http_client(),
            dir,
            database: None,
        }
    }

    /// A server running elsewhere (another process).
    pub fn remote(base: &str, issuer: &str) -> Self {
        Self {
            base: base.to_owned(),
            issuer: issuer.to_owned(),
            server: None,
            storage: None,
            http: http_client(),
            dir: None,
            database: None,
        }
    }

    /// The in-process server's storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.storage.as_ref().expect("in-process server")
    }

    /// Shuts the in-process server down gracefully.
    pub async fn shutdown(mut self) -> Option<TempDir> {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("shutdown");
        }
        self.dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new "browser" (own cookie jar) against the same server.
    pub fn other_browser(&self) -> reqwest::Client {
        http_client()
    }

    pub async fn authorize(&self, query: &[(&str, &str)]) -> reqwest::Response {
        let url = url::Url::parse_with_params(&self.url("/authorize"), query).unwrap();
        self.http.get(url).send().await.expect("authorize")
    }

    pub async fn post_form(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/authorize"))
            .form(form)
            .send()
            .await
            .expect("authorize form")
    }

    /// Submits the login form found in `page`.
    pub async fn login(&self, page: &str, username: &str, password: &str) -> reqwest::Response {
        let request_id = hidden(page, "request_id");
        let csrf = hidden(page, "csrf_token");
        self.post_form(&[
            ("request_id", &request_id),
            ("csrf_token", &csrf),
            ("username", username),
            ("password", password),
        ])
        .await
    }

    /// Submits the consent form found in `page`.
    pub async fn decide(&self, page: &str, decision: &str) -> reqwest::Response {
        let request_id = hidden(page, "request_id");
        let csrf = hidden(page, "csrf_token");
        self.post_form(&[
            ("request_id", &request_id),
            ("csrf_token", &csrf),
            ("decision", decision),
        ])
        .await
    }

    /// Runs authorize → login → approve and returns the redirect parameters (code, state, iss).
    pub async fn authorize_and_approve(
        &self,
        req: &AuthRequest,
        username: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let resp = self.authorize(&req.query()).await;
        assert_eq!(resp.status(), StatusCode::OK, "login page");
        let page = resp.text().await.unwrap();
        let resp = self.login(&page, username, password).await;
        assert_eq!(resp.status(), StatusCode::OK, "consent page");
        let page = resp.text().await.unwrap();
        assert!(page.contains("Authorize access"), "{page}");
        let resp = self.decide(&page, "approve").await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let params = redirect_params(&resp, &req.redirect_uri);
        assert_eq!(
            params.get("state").map(String::as_str),
            Some(req.state.as_str())
        );
        assert_eq!(
            params.get("iss").map(String::as_str),
            Some(self.issuer.as_str())
        );
        params
    }

    /// Full flow up to the authorization code.
    pub async fn code(&self, req: &AuthRequest) -> String {
        self.authorize_and_approve(req, "alice", "password123")
            .await["code"]
            .clone()
    }

    /// Full flow and code redemption; returns the token response.
    pub async fn tokens(&self, req: &AuthRequest) -> Value {
        let code = self.code(req).await;
        let (status, body) = self.token(&req.redeem_form(&code)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .expect("token");
        json_of(resp).await
    }

    pub async fn token_basic(
        &self,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/token"))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .expect("token");
        json_of(resp).await
    }

    /// Refresh-token grant for a public client, with extra form fields.
    pub async fn refresh(
        &self,
        client_id: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    /// Introspects as the demo resource server.
    pub async fn introspect(&self, token: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(DEMO_RESOURCE_SERVER_ID, Some(DEMO_RESOURCE_SERVER_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn assert_active(&self, token: &str, active: bool) {
        let body = self.introspect(token).await;
        if active {
            assert_eq!(body["active"], json!(true), "{body}");
        } else {
            assert_eq!(body, json!({ "active": false }));
        }
    }

    pub async fn register(&self, metadata: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/register"))
            .json(&metadata)
            .send()
            .await
            .expect("register");
        json_of(resp).await
    }

    /// Registers with `Authorization: Bearer <initial access token>`.
    pub async fn register_with_token(&self, token: &str, metadata: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/register"))
            .bearer_auth(token)
            .json(&metadata)
            .send()
            .await
            .expect("register");
        json_of(resp).await
    }

    /// Introspects as the given confidential client; returns status and body.
    pub async fn introspect_as(&self, id: &str, secret: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        json_of(resp).await
    }

    /// The stored record of a raw token (in-process servers only): unexpired, family not revoked.
    pub async fn stored_token(&self, raw: &str) -> Option<TokenRecord> {
        self.storage()
            .get_token(&hash_secret(raw), oauth_provider::state::now())
            .await
            .expect("storage")
    }

    /// Asserts that a refresh token is stored, unexpired, unrevoked and not yet rotated (refresh
    /// tokens never introspect as active).
    pub async fn assert_refresh_usable(&self, raw: &str, usable: bool) {
        let record = self.stored_token(raw).await;
        assert_eq!(
            record.is_some_and(|r| r.kind == TokenKind::Refresh && !r.consumed),
            usable,
            "refresh token usable"
        );
    }

    /// Registers a public client with a loopback redirect URI and the refresh grant.
    pub async fn public_client(&self) -> String {
        let (status, body) = self
            .register(json!({
                "client_name": "Test app",
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// Registers a confidential client; returns (id, secret). A `client_credentials` client is
    /// registered with the initial access token.
    pub async fn confidential_client(&self, grant_types: Value) -> (String, String) {
        let metadata = json!({
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": grant_types,
            "scope": "read write",
        });
        let self_granting = grant_types
            .as_array()
            .is_some_and(|g| g.contains(&json!("client_credentials")));
        let (status, body) = if self_granting {
            self.register_with_token(REGISTRATION_TOKEN, metadata).await
        } else {
            self.register(metadata).await
        };
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["client_id"].as_str().unwrap().to_owned(),
            body["client_secret"].as_str().unwrap().to_owned(),
        )
    }
}

/// Registered redirect URI of test clients (a loopback URI; requests may add any port).
pub const REDIRECT_URI: &str = "http://127.0.0.1/cb";
/// What test clients actually send (an ephemeral port, as native apps do).
pub const REDIRECT_URI_WITH_PORT: &str = "http://127.0.0.1:51004/cb";
/// A resource indicator the demo configuration knows.
pub const RESOURCE: &str = oauth_provider::DEMO_RESOURCE;
/// A well-formed resource indicator no test configuration knows.
pub const UNKNOWN_RESOURCE: &str = "https://elsewhere.example/mcp";
/// The initial access token of [`test_config`].
pub const REGISTRATION_TOKEN: &str = "test-initial-access-token-0123456789";

/// The demo configuration with [`REGISTRATION_TOKEN`].
pub fn test_config() -> Config {
    Config {
        registration_token: Some(REGISTRATION_TOKEN.into()),
        ..Config::demo()
    }
}

/// PKCE pair.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        oauth_provider::tokens::random_id(),
        oauth_provider::tokens::random_id()
    );
    let challenge = oauth_provider::pkce::challenge_for(&verifier);
    Pkce {
        verifier,
        challenge,
    }
}

/// An authorization request under construction.
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub state: String,
    pub pkce: Pkce,
}

impl AuthRequest {
    pub fn new(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            redirect_uri: REDIRECT_URI_WITH_PORT.to_owned(),
            scope: Some("read write".to_owned()),
            resource: Some(RESOURCE.to_owned()),
            state: oauth_provider::tokens::random_id(),
            pkce: pkce(),
        }
    }

    pub fn query(&self) -> Vec<(&str, &str)> {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("state", self.state.as_str()),
            ("code_challenge", self.pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if let Some(s) = &self.scope {
            q.push(("scope", s));
        }
        if let Some(r) = &self.resource {
            q.push(("resource", r));
        }
        q
    }

    /// The query with one parameter replaced (or removed when `value` is `None`).
    pub fn query_with<'a>(
        &'a self,
        name: &'a str,
        value: Option<&'a str>,
    ) -> Vec<(&'a str, &'a str)> {
        let mut q: Vec<_> = self
            .query()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        if let Some(v) = value {
            q.push((name, v));
        }
        q
    }

    pub fn redeem_form<'a>(&'a self, code: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", self.pkce.verifier.as_str()),
            ("client_id", self.client_id.as_str()),
        ]
    }
}

/// The value of a hidden form field.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

/// Asserts a redirect to `redirect_uri` and returns its query parameters.
pub fn redirect_params(resp: &reqwest::Response, redirect_uri: &str) -> HashMap<String, String> {
    assert!(resp.status().is_redirection(), "status {}", resp.status());
    let location = resp
        .headers()
        .get("location")
        .expect("location")
        .to_str()
        .unwrap();
    let url = url::Url::parse(location).unwrap();
    let base = url::Url::parse(redirect_uri).unwrap();
    assert_eq!(
        (url.scheme(), url.host_str(), url.port(), url.path()),
        (base.scheme(), base.host_str(), base.port(), base.path()),
        "redirected to {location}"
    );
    url.query_pairs().into_owned().collect()
}

pub async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Asserts an OAuth JSON error (whose description uses only RFC 6749 §5.2's characters).
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: StatusCode, error: &str) {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["error"], json!(error), "{}", result.1);
    let description = result.1["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("no error_description: {}", result.1));
    assert_safe_description(description);
}

/// RFC 6749 §5.2: `error_description` is %x20-21 / %x23-5B / %x5D-7E, and ours are short.
#[track_caller]
pub fn assert_safe_description(description: &str) {
    assert!(
        description.len() <= oauth_provider::error::MAX_DESCRIPTION_LEN
            && description
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "unsafe error_description {description:?}"
    );
}

/// The `oauth-provider` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_oauth-provider");

/// A running server process, killed (SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    /// `http://127.0.0.1:port`, from the line the server prints once it listens.
    pub base: String,
}

impl Process {
    pub async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn_logging(args, envs, "error", Stdio::inherit()).await
    }

    /// [`Process::spawn`] with `RUST_LOG=log_level` and the logs (stderr) sent to `stderr`.
    pub async fn spawn_logging(
        args: &[&str],
        envs: &[(&str, &str)],
        log_level: &str,
        stderr: Stdio,
    ) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn oauth-provider");
        let stdout = child.stdout.take().unwrap();
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .unwrap()
            .expect("the server prints its address");
        let base = line
            .strip_prefix("oauth-provider listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Self { child, base }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Kills the process with SIGKILL (no shutdown code runs) and reaps it.
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, the peak resident set size).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}
