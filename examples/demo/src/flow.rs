//! The full flow: the reference provider (SQLite in a temporary directory) and the demo MCP server
//! on free loopback ports, driven as an MCP client would for alice, bob and admin, once with a
//! dynamically registered client (RFC 7591) and once with a Client ID Metadata Document (no
//! registration: the document's https URL is the `client_id`); then the cache, refresh rotation,
//! revocation pushed as security events (SSF) to two MCP server instances, and a provider restart
//! on the same database file; and last a provider issuing JWT
//! access tokens, checked locally by a second MCP server with no introspection; and a provider
//! issuing DPoP-bound tokens (RFC 9449) to a client holding a key, for an MCP server that
//! requires them.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use oauth_provider::cimd::CimdSettings;
use oauth_provider::{
    AccessTokenFormat, Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET,
    DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET, NonceSecret, Server, StorageConfig,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower_introspect::cache::CacheConfig;
use tower_introspect::dpop::{DEFAULT_NONCE_ROTATION, DpopKey, NonceSource};
use tower_introspect::error::InvalidToken;
use tower_introspect::jwt::JwsAlgorithm;
use tower_introspect::{Scopes, TokenVerifier, VerifyError};

use crate::mcp_client::{self, McpSession, Outcome};
use crate::mcp_server::{Access, AuthSettings, DpopMode, DpopOptions, McpServer, TOOLS, TokenMode};
use crate::metadata_document::MetadataDocumentServer;
use crate::oauth_client::{self, Discovery, REDIRECT_URI, Tokens, challenge_param};
use crate::serve::ServeOptions;
use crate::ssf_stream::{self, SsfClient};

/// The demo accounts: username, password, scopes the provider grants them.
pub const USERS: [(&str, &str, &str); 3] = [
    ("alice", "password123", "read write"),
    ("bob", "secret456", "read"),
    ("admin", "admin789", "read write admin"),
];

/// How the client of a run came to be known to the authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Dynamic client registration (RFC 7591): `POST /register` returns a `client_id`.
    Dynamic,
    /// A Client ID Metadata Document: the `client_id` is the document's https URL, which the
    /// authorization server fetches; nothing is registered.
    MetadataDocument,
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dynamic => "dynamic client registration (RFC 7591)",
            Self::MetadataDocument => "client metadata document (no registration)",
        })
    }
}

/// What one registration style's run saw.
#[derive(Debug, Clone)]
pub struct Run {
    /// The registration style.
    pub registration: Registration,
    /// The `client_id` the users authorized.
    pub client_id: String,
    /// How many clients the provider stored during the run (registered, or admitted from a
    /// document).
    pub new_clients: u64,
    /// Whether the provider stores a client under the document URL after the run.
    pub document_client_stored: bool,
}

/// One cell of the user × tool table.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The registration style of the run.
    pub registration: Registration,
    /// The user.
    pub user: &'static str,
    /// The tool.
    pub tool: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// One checked expectation.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// Everything the flow observed.
#[derive(Debug, Default)]
pub struct Report {
    /// The user × tool tables of both runs.
    pub table: Vec<Cell>,
    /// The runs, one per registration style.
    pub runs: Vec<Run>,
    /// Every expectation, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The outcome of `tool` for `user` in the run with `registration`.
    pub fn outcome(&self, registration: Registration, user: &str, tool: &str) -> Option<&Outcome> {
        self.table
            .iter()
            .find(|c| c.registration == registration && c.user == user && c.tool == tool)
            .map(|c| &c.outcome)
    }

    /// The run with `registration`.
    pub fn run(&self, registration: Registration) -> Option<&Run> {
        self.runs.iter().find(|r| r.registration == registration)
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    fn check(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        let check = Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        };
        say(&format!(
            "  [{}] {} — {}",
            if check.passed { "ok" } else { "FAILED" },
            check.name,
            check.detail
        ));
        self.checks.push(check);
    }
}

fn say(line: &str) {
    println!("{line}");
}

/// What the demo server's policy should answer `user` (with `scopes`) for `access`.
fn expected(access: Access, scopes: &str) -> Outcome {
    match access {
        Access::Scope(scope) if !scopes.split(' ').any(|s| s == scope) => {
            Outcome::InsufficientScope(scope.to_owned())
        }
        _ => Outcome::Allowed(String::new()),
    }
}

fn same_kind(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Outcome::Allowed(_), Outcome::Allowed(_)) => true,
        _ => a == b,
    }
}

/// The demo MCP server's URL (its resource identifier) on `listener`.
fn mcp_url(listener: &TcpListener) -> anyhow::Result<String> {
    Ok(format!("http://{}/mcp", listener.local_addr()?))
}

async fn start_provider(
    listener: TcpListener,
    database: &Path,
    resource: &str,
    document_ca: &Path,
) -> anyhow::Result<Server> {
    // The provider issues tokens only for resources it knows: the MCP server's URL. It fetches
    // client metadata documents from loopback (a development setting) and trusts the document
    // server's throwaway certificate.
    let mut config = Config::demo()
        .with_storage(StorageConfig::Sqlite {
            path: database.to_owned(),
        })
        .with_resource(resource);
    config.cimd = CimdSettings {
        allow_loopback: true,
        ca_file: Some(document_ca.to_owned()),
        ..CimdSettings::default()
    };
    // The MCP servers' security event endpoints are on loopback, over http.
    config.ssf.allow_http_loopback = true;
    Server::start(config, listener)
        .await
        .context("starting the reference provider")
}

/// Runs the whole flow, printing as it goes. Fails only when the flow cannot go on; every
/// expectation is recorded in the report (see [`Report::failures`]).
pub async fn run() -> anyhow::Result<Report> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report::default();
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("oauth.db");

    let mcp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let resource = mcp_url(&mcp_listener)?;
    let document = MetadataDocumentServer::start(
        dir.path(),
        "tower-introspect full-flow demo (metadata document)",
        REDIRECT_URI,
    )
    .await?;
    let provider_listener = TcpListener::bind("127.0.0.1:0").await?;
    let provider_addr: SocketAddr = provider_listener.local_addr()?;
    let provider =
        start_provider(provider_listener, &database, &resource, document.ca_file()).await?;
    let auth = AuthSettings {
        issuer: provider.issuer().to_owned(),
        tokens: crate::mcp_server::TokenMode::Introspect,
        jwks_uri: None,
        introspection_endpoint: None,
        client_id: DEMO_RESOURCE_SERVER_ID.to_owned(),
        client_secret: DEMO_RESOURCE_SERVER_SECRET.to_owned(),
        introspect_jwts: false,
        cache: CacheConfig::default(),
        ssf: Some(demo_ssf_client()),
    };
    let mcp = McpServer::start(mcp_listener, &auth).await?;
    say(&format!(
        "authorization server  {} (SQLite {})",
        provider.issuer(),
        database.display()
    ));
    say(&format!("MCP server            {}", mcp.url));
    say(&format!(
        "client metadata doc.  {} (https, throwaway certificate)",
        document.url()
    ));

    say("\n1. Anonymous client");
    let mut anonymous = McpSession::connect(&mcp.url, None).await?;
    let public = anonymous.call_tool("public_info", json!({})).await?;
    report.check(
        "public_info without a token",
        public.is_allowed(),
        public.to_string(),
    );
    let profile = anonymous.call_tool("get_user_profile", json!({})).await?;
    report.check(
        "get_user_profile without a token is challenged",
        profile == Outcome::Unauthorized(None),
        profile.to_string(),
    );

    say("\n2. Discovery and registration");
    let discovery = oauth_client::discover(&mcp.url).await?;
    report.check(
        "401 → RFC 9728 metadata → RFC 8414 metadata",
        discovery.issuer == provider.issuer() && discovery.resource == mcp.url,
        format!(
            "resource {} → issuer {}",
            discovery.resource, discovery.issuer
        ),
    );
    report.check(
        "the authorization server accepts client metadata documents",
        discovery.client_id_metadata_document_supported,
        "client_id_metadata_document_supported: true",
    );
    let clients_before = stored_clients(&provider).await?;
    let client_id = oauth_client::register(&discovery, "tower-introspect full-flow demo").await?;
    report.check(
        "dynamic client registration",
        !client_id.is_empty(),
        format!("client_id {client_id}"),
    );

    say(&format!(
        "\n3. Each user logs in (PKCE, login form, consent) and calls every tool [{}]",
        Registration::Dynamic
    ));
    let tokens = every_user_calls_every_tool(
        &mut report,
        Registration::Dynamic,
        &discovery,
        &client_id,
        &mcp,
    )
    .await?;
    report.runs.push(Run {
        registration: Registration::Dynamic,
        client_id: client_id.clone(),
        new_clients: stored_clients(&provider).await? - clients_before,
        document_client_stored: provider
            .state()
            .storage()
            .get_client(document.url())
            .await?
            .is_some(),
    });
    print_table(&report, Registration::Dynamic);
    let stored = match report.outcome(Registration::Dynamic, "admin", "read_data") {
        Some(Outcome::Allowed(text)) => text.contains("hello from alice"),
        _ => false,
    };
    report.check(
        "read_data returns what write_data stored",
        stored,
        "admin reads alice's note",
    );

    say("\n4. The cache");
    let stats = mcp.cache.stats();
    let authenticated_requests = stats.hits + stats.misses;
    report.check(
        "one introspection call per token",
        stats.introspection_calls == USERS.len() as u64,
        format!(
            "{authenticated_requests} authenticated requests, {} introspection calls, {} cache hits",
            stats.introspection_calls, stats.hits
        ),
    );

    say(&format!(
        "\n5. The same users again, the client known by its metadata document [{}]",
        Registration::MetadataDocument
    ));
    let clients_before = stored_clients(&provider).await?;
    every_user_calls_every_tool(
        &mut report,
        Registration::MetadataDocument,
        &discovery,
        document.url(),
        &mcp,
    )
    .await?;
    print_table(&report, Registration::MetadataDocument);
    let new_clients = stored_clients(&provider).await? - clients_before;
    let admitted = provider
        .state()
        .storage()
        .get_client(document.url())
        .await?
        .is_some();
    report.check(
        "no registration: the only new client is the document's, its client_id the document URL",
        new_clients == 1 && admitted,
        format!(
            "{new_clients} new client(s), client_id {} stored: {admitted}",
            document.url()
        ),
    );
    report.check(
        "the provider fetched the document (and cached it)",
        document.fetches() == 1,
        format!(
            "{} fetch(es) for {} logins",
            document.fetches(),
            USERS.len()
        ),
    );
    report.runs.push(Run {
        registration: Registration::MetadataDocument,
        client_id: document.url().to_owned(),
        new_clients,
        document_client_stored: admitted,
    });

    let token_of = |name: &str| -> Tokens {
        tokens
            .iter()
            .find(|(u, _)| *u == name)
            .map(|(_, t)| t.clone())
            .expect("a token per user")
    };
    say("\n6. Refresh with rotation (bob)");
    refresh_rotation(&mut report, &discovery, &client_id, &mcp, token_of("bob")).await?;

    say("\n7. Revocation pushed to two MCP servers (alice)");
    // A second instance of the same resource (a replica behind a balancer), with its own verdict
    // cache and its own event stream.
    let replica = McpServer::start_at(
        TcpListener::bind("127.0.0.1:0").await?,
        Some(mcp.url.clone()),
        &auth,
    )
    .await?;
    say(&format!("replica               {}", replica.endpoint));
    revocation(
        &mut report,
        &discovery,
        &client_id,
        [&mcp, &replica],
        token_of("alice"),
    )
    .await?;
    drop(replica);

    say("\n8. Provider restart on the same SQLite file (admin)");
    provider.shutdown().await?;
    let provider = start_provider(
        TcpListener::bind(provider_addr).await?,
        &database,
        &resource,
        document.ca_file(),
    )
    .await?;
    mcp.cache.invalidate_all();
    let admin = token_of("admin");
    let outcome = call(&mcp, &admin.access_token, "admin_operation").await?;
    report.check(
        "access token issued before the restart still introspects active",
        outcome.is_allowed(),
        outcome.to_string(),
    );
    let refreshed = oauth_client::refresh(
        &discovery,
        &client_id,
        admin
            .refresh_token
            .as_deref()
            .context("admin has a refresh token")?,
    )
    .await?;
    let ok = match &refreshed {
        Ok(new) => call(&mcp, &new.access_token, "admin_operation")
            .await?
            .is_allowed(),
        Err(_) => false,
    };
    report.check(
        "refresh token issued before the restart still works",
        ok,
        match &refreshed {
            Ok(new) => format!("new access token with scope \"{}\" accepted", new.scope),
            Err(e) => e.error.clone(),
        },
    );
    provider.shutdown().await?;

    say("\n9. JWT access tokens (RFC 9068) checked locally (alice)");
    jwt_run(&mut report).await?;

    say("\n10. DPoP-bound access tokens (RFC 9449), MCP server with --dpop required (alice)");
    dpop_run(&mut report).await?;

    let failures = report.failures().len();
    say(&format!(
        "\n{} checks, {} failed",
        report.checks.len(),
        failures
    ));
    Ok(report)
}

/// Each user authorizes `client_id` and calls every tool; the cells go to the report's table.
async fn every_user_calls_every_tool(
    report: &mut Report,
    registration: Registration,
    discovery: &Discovery,
    client_id: &str,
    mcp: &McpServer,
) -> anyhow::Result<Vec<(&'static str, Tokens)>> {
    // The checks of the first run keep their plain names.
    let suffix = match registration {
        Registration::Dynamic => String::new(),
        Registration::MetadataDocument => " [metadata document]".to_owned(),
    };
    let mut tokens = Vec::new();
    for (user, password, scopes) in USERS {
        let granted =
            oauth_client::authorize(discovery, client_id, user, password, "read write admin")
                .await
                .with_context(|| format!("authorizing {user} ({registration})"))?;
        report.check(
            format!("{user} gets a token{suffix}"),
            Scopes::parse(&granted.scope) == Scopes::parse(scopes),
            format!(
                "scope \"{}\", expires in {} s",
                granted.scope,
                granted.expires_in.unwrap_or(0)
            ),
        );
        let mut session = McpSession::connect(&mcp.url, Some(&granted.access_token)).await?;
        for (tool, access, _) in TOOLS {
            let outcome = session
                .call_tool(tool, json!({"value": format!("hello from {user}")}))
                .await?;
            let want = expected(access, scopes);
            if !same_kind(&outcome, &want) {
                report.check(
                    format!("{user} × {tool}{suffix}"),
                    false,
                    format!("{outcome}, expected {want}"),
                );
            }
            if tool == "get_user_profile"
                && let Outcome::Allowed(text) = &outcome
            {
                let profile: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                report.check(
                    format!("{user}'s profile names them and the client{suffix}"),
                    profile["username"] == user && profile["client_id"] == client_id,
                    text.clone(),
                );
            }
            report.table.push(Cell {
                registration,
                user,
                tool,
                outcome,
            });
        }
        tokens.push((user, granted));
    }
    Ok(tokens)
}

/// How many clients the provider has stored.
async fn stored_clients(provider: &Server) -> anyhow::Result<u64> {
    Ok(provider.state().storage().stats().await?.clients)
}

/// Opens a session with `token` and calls `tool`; a refused session is the outcome.
/// The demo's SSF client, seeded by the provider's `--demo`.
fn demo_ssf_client() -> SsfClient {
    SsfClient {
        client_id: DEMO_SSF_RECEIVER_ID.to_owned(),
        client_secret: DEMO_SSF_RECEIVER_SECRET.to_owned(),
    }
}

/// How long a pushed revocation may take to reach a server's cache in the demo.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);

async fn call(mcp: &McpServer, token: &str, tool: &str) -> anyhow::Result<Outcome> {
    match McpSession::try_connect(&mcp.endpoint, Some(token)).await? {
        Ok(mut session) => session.call_tool(tool, json!({})).await,
        Err(refused) => Ok(refused),
    }
}

async fn refresh_rotation(
    report: &mut Report,
    discovery: &Discovery,
    client_id: &str,
    mcp: &McpServer,
    bob: Tokens,
) -> anyhow::Result<()> {
    let first = bob.refresh_token.context("bob has a refresh token")?;
    let rotated = oauth_client::refresh(discovery, client_id, &first)
        .await?
        .map_err(|e| anyhow::anyhow!("refresh failed: {}", e.error))?;
    let second = rotated.refresh_token.clone().unwrap_or_default();
    report.check(
        "refresh issues a new refresh token",
        !second.is_empty() && second != first,
        "rotated",
    );
    let outcome = call(mcp, &rotated.access_token, "read_data").await?;
    report.check(
        "the new access token works",
        outcome.is_allowed(),
        outcome.to_string(),
    );
    // The successor is used: from now on the first token is stale (before that, a retry
    // within a few seconds counts as a lost response and is allowed).
    let newest = oauth_client::refresh(discovery, client_id, &second)
        .await?
        .map_err(|e| anyhow::anyhow!("second refresh failed: {}", e.error))?
        .refresh_token
        .unwrap_or_default();
    let reused_at = tokio::time::Instant::now();
    let reuse = oauth_client::refresh(discovery, client_id, &first).await?;
    report.check(
        "reusing the rotated refresh token is refused",
        matches!(&reuse, Err(e) if e.error == "invalid_grant"),
        match &reuse {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.error.clone(),
        },
    );
    let family = oauth_client::refresh(discovery, client_id, &newest).await?;
    report.check(
        "…and revokes the whole family, the newest refresh token included",
        family.is_err(),
        match &family {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.error.clone(),
        },
    );
    // The provider pushes session-revoked for the family (its `sid`): the access token the
    // rotation issued, cached by the MCP server, is refused too.
    let refused = ssf_stream::refused_after(
        &ssf_stream::http_client()?,
        &mcp.endpoint,
        &rotated.access_token,
        reused_at,
        Duration::from_millis(5),
        Duration::from_secs(5),
    )
    .await?;
    report.check(
        "…and the family's cached access token is refused within 1 s (session-revoked pushed)",
        refused.is_some_and(|d| d <= REVOCATION_BOUND),
        match refused {
            Some(d) => format!("refused {} ms after the reuse", d.as_millis()),
            None => "still accepted after 5 s".to_owned(),
        },
    );
    Ok(())
}

async fn revocation(
    report: &mut Report,
    discovery: &Discovery,
    client_id: &str,
    servers: [&McpServer; 2],
    alice: Tokens,
) -> anyhow::Result<()> {
    for server in servers {
        let cached = call(server, &alice.access_token, "read_data").await?;
        ensure!(
            cached.is_allowed(),
            "alice's token works at {}: {cached}",
            server.endpoint
        );
    }
    let accepted_before: Vec<u64> = servers.iter().map(|s| events_accepted(s)).collect();
    let http = ssf_stream::http_client()?;
    let started = tokio::time::Instant::now();
    oauth_client::revoke(discovery, client_id, &alice.access_token).await?;
    // Nothing is called on the servers: the provider pushes a signed token-revoked event to each
    // server's stream, and each receiver forgets the verdict.
    let mut delays = Vec::new();
    for server in servers {
        delays.push(
            ssf_stream::refused_after(
                &http,
                &server.endpoint,
                &alice.access_token,
                started,
                Duration::from_millis(5),
                Duration::from_secs(5),
            )
            .await?,
        );
    }
    let within = delays
        .iter()
        .all(|d| d.is_some_and(|d| d <= REVOCATION_BOUND));
    report.check(
        "revoking alice's token at the provider makes both MCP servers refuse it within 1 s, with no hook called",
        within,
        delays
            .iter()
            .zip(servers)
            .map(|(delay, server)| match delay {
                Some(d) => format!("{} after {} ms", server.endpoint, d.as_millis()),
                None => format!("{} still accepts it after 5 s", server.endpoint),
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    let received: Vec<u64> = servers
        .iter()
        .zip(&accepted_before)
        .map(|(s, before)| events_accepted(s) - before)
        .collect();
    report.check(
        "each server's receiver took the signed event from its own stream",
        received.iter().all(|n| *n >= 1),
        format!("security events accepted: {received:?}"),
    );
    // A refused token cannot even open a session: the 401 comes at `initialize`.
    let refused = call(servers[1], &alice.access_token, "read_data").await?;
    report.check(
        "the revoked token gets 401 invalid_token",
        refused == Outcome::Unauthorized(Some("invalid_token".to_owned())),
        refused.to_string(),
    );
    let refresh = oauth_client::refresh(
        discovery,
        client_id,
        alice
            .refresh_token
            .as_deref()
            .context("alice has a refresh token")?,
    )
    .await?;
    report.check(
        "revoking the access token revoked its refresh token too",
        matches!(&refresh, Err(e) if e.error == "invalid_grant"),
        match &refresh {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.error.clone(),
        },
    );
    Ok(())
}

/// Security events `server`'s receiver has accepted so far.
fn events_accepted(server: &McpServer) -> u64 {
    server.ssf.as_ref().map_or(0, |ssf| ssf.stats().accepted)
}

fn print_table(report: &Report, registration: Registration) {
    say(&format!("\n  client: {registration}"));
    let mut header = format!("  {:<26}", "tool");
    for (user, _, _) in USERS {
        header.push_str(&format!("{user:<22}"));
    }
    say(&header);
    for (tool, _, _) in TOOLS {
        let mut line = format!("  {tool:<26}");
        for (user, _, _) in USERS {
            let cell = report
                .outcome(registration, user, tool)
                .map(ToString::to_string)
                .unwrap_or_default();
            line.push_str(&format!("{cell:<22}"));
        }
        say(&line);
    }
}

/// A second provider issuing JWT access tokens and a second MCP server checking them locally
/// with the provider's published keys: no introspection at all. Then what revocation means for a
/// JWT: nothing, locally, until it expires; refused at once in the introspect-JWTs mode.
async fn jwt_run(report: &mut Report) -> anyhow::Result<()> {
    let mcp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let resource = mcp_url(&mcp_listener)?;
    let config = Config::demo()
        .with_resource(&resource)
        .with_access_token_format(AccessTokenFormat::Jwt);
    let provider = Server::bind(config, "127.0.0.1:0".parse()?).await?;
    // No client credentials: the keys come from the issuer's metadata (`jwks_uri`).
    let auth = AuthSettings {
        issuer: provider.issuer().to_owned(),
        tokens: TokenMode::Jwt,
        jwks_uri: None,
        introspection_endpoint: None,
        client_id: String::new(),
        client_secret: String::new(),
        introspect_jwts: false,
        cache: CacheConfig::default(),
        ssf: None,
    };
    let mcp = McpServer::start(mcp_listener, &auth).await?;
    say(&format!(
        "authorization server  {} (JWT access tokens, ES256, keys at /jwks)",
        provider.issuer()
    ));
    say(&format!("MCP server            {} (--tokens jwt)", mcp.url));
    let discovery = oauth_client::discover(&mcp.url).await?;
    let client_id = oauth_client::register(&discovery, "tower-introspect JWT demo").await?;
    let alice =
        oauth_client::authorize(&discovery, &client_id, "alice", "password123", "read write")
            .await
            .context("authorizing alice (JWT run)")?;
    let header = alice
        .access_token
        .split('.')
        .next()
        .and_then(|h| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .unwrap_or_default();
    report.check(
        "the access token is a JWT with typ at+jwt",
        header["typ"] == "at+jwt" && alice.access_token.split('.').count() == 3,
        format!("header {header}"),
    );
    let mut session = McpSession::connect(&mcp.url, Some(&alice.access_token)).await?;
    let mut outcomes = Vec::new();
    for tool in [
        "get_user_profile",
        "write_data",
        "read_data",
        "admin_operation",
    ] {
        outcomes.push(session.call_tool(tool, json!({"value": "signed"})).await?);
    }
    report.check(
        "alice's JWT works for her tools and not for admin's",
        outcomes[..3].iter().all(Outcome::is_allowed)
            && matches!(outcomes[3], Outcome::InsufficientScope(_)),
        outcomes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    let introspections = provider.state().introspection_requests();
    report.check(
        "zero introspection calls: the JWT was verified with the provider's published keys",
        introspections == 0,
        format!(
            "{introspections} introspection request(s) at the provider; {} verification(s) at the MCP server",
            mcp.cache.stats().misses
        ),
    );

    oauth_client::revoke(&discovery, &client_id, &alice.access_token).await?;
    mcp.cache.invalidate_all();
    let still = call(&mcp, &alice.access_token, "read_data").await?;
    report.check(
        "a revoked JWT checked locally still works until its exp (local checks cannot see revocation)",
        still.is_allowed(),
        format!(
            "{still}, even with the cache emptied; expires in {} s",
            alice.expires_in.unwrap_or(0)
        ),
    );
    // The mode for deployments that need revocation at once: verify locally, then introspect.
    let strict = AuthSettings {
        introspect_jwts: true,
        client_id: DEMO_RESOURCE_SERVER_ID.to_owned(),
        client_secret: DEMO_RESOURCE_SERVER_SECRET.to_owned(),
        ..auth
    }
    .verifier(&resource)
    .await?;
    let verdict = strict.verify(&alice.access_token).await;
    report.check(
        "with --introspect-jwts the revoked JWT is refused at once",
        matches!(verdict, Err(VerifyError::Invalid(InvalidToken::Inactive))),
        match &verdict {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("{e} (one introspection call per cache miss)"),
        },
    );
    provider.shutdown().await?;
    Ok(())
}

/// A provider binding tokens to the client's key (and asking for a server nonce at its token
/// endpoint), an MCP server with `--dpop required` and server nonces: alice's token works only
/// with a fresh proof of her client's key, carrying the server's nonce, on every request; the
/// same token as a bearer token, with a proof without the nonce, with another key's proof, or
/// with a replayed proof is refused.
async fn dpop_run(report: &mut Report) -> anyhow::Result<()> {
    let mcp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let resource = mcp_url(&mcp_listener)?;
    let mut config = Config::demo().with_resource(&resource);
    // Server nonces at the token endpoint: the first proof is answered `use_dpop_nonce`.
    config.dpop_nonce_secret = Some(
        NonceSecret::parse(&random_hex(32)).map_err(|e| anyhow::anyhow!("nonce secret: {e}"))?,
    );
    let provider = Server::bind(config, "127.0.0.1:0".parse()?).await?;
    let auth = AuthSettings {
        issuer: provider.issuer().to_owned(),
        tokens: TokenMode::Introspect,
        jwks_uri: None,
        introspection_endpoint: None,
        client_id: DEMO_RESOURCE_SERVER_ID.to_owned(),
        client_secret: DEMO_RESOURCE_SERVER_SECRET.to_owned(),
        introspect_jwts: false,
        cache: CacheConfig::default(),
        ssf: None,
    };
    // Server nonces at the MCP server too, from its own secret.
    let nonces = NonceSource::new(
        NonceSecret::parse(&random_hex(32))
            .map_err(|e| anyhow::anyhow!("nonce secret: {e}"))?
            .expose(),
        DEFAULT_NONCE_ROTATION,
    )?;
    let mcp = McpServer::start_with_dpop(
        mcp_listener,
        None,
        &auth,
        ServeOptions::default(),
        DpopOptions {
            mode: DpopMode::Required,
            nonces: Some(nonces),
        },
    )
    .await?;
    say(&format!(
        "authorization server  {} (DPoP-bound tokens, server nonces at /token)",
        provider.issuer()
    ));
    say(&format!(
        "MCP server            {} (--dpop required, server nonces)",
        mcp.url
    ));

    let discovery = oauth_client::discover(&mcp.url).await?;
    let metadata: serde_json::Value = reqwest::get(&discovery.resource_metadata_url)
        .await?
        .json()
        .await?;
    report.check(
        "the protected resource metadata says DPoP-bound tokens are required",
        metadata["dpop_bound_access_tokens_required"] == true
            && metadata["dpop_signing_alg_values_supported"]
                .as_array()
                .is_some_and(|algs| algs.iter().any(|a| a == "ES256")),
        format!(
            "dpop_bound_access_tokens_required: {}, dpop_signing_alg_values_supported: {}",
            metadata["dpop_bound_access_tokens_required"],
            metadata["dpop_signing_alg_values_supported"]
        ),
    );
    let client_id = oauth_client::register(&discovery, "tower-introspect DPoP demo").await?;
    let key = Arc::new(DpopKey::generate(JwsAlgorithm::ES256)?);
    say(&format!(
        "  client key            ES256, thumbprint {}",
        key.thumbprint()
    ));
    let alice = oauth_client::authorize_with(
        &discovery,
        &client_id,
        "alice",
        "password123",
        "read write",
        Some(&key),
    )
    .await
    .context("authorizing alice (DPoP run)")?;
    report.check(
        "the token response says token_type DPoP",
        alice.token_type == "DPoP",
        format!(
            "token_type: {}{}",
            alice.token_type,
            if alice.dpop_nonce.is_some() {
                " (the first proof was answered use_dpop_nonce; retried with the provider's DPoP-Nonce)"
            } else {
                ""
            }
        ),
    );
    // What the MCP server learns by introspection: the key the token is bound to.
    let principal = auth
        .introspector(&resource)?
        .verify(&alice.access_token)
        .await
        .map_err(|e| anyhow::anyhow!("introspecting alice's DPoP token: {e}"))?;
    let jkt = principal.confirmation_thumbprint().unwrap_or("(none)");
    report.check(
        "introspection: the token's cnf.jkt is the client key's thumbprint",
        jkt == key.thumbprint(),
        format!("cnf.jkt {jkt}"),
    );

    let mut session =
        match McpSession::try_connect_with(&mcp.url, Some(&alice.access_token), Some(key.clone()))
            .await?
        {
            Ok(session) => session,
            Err(refused) => anyhow::bail!("initialize with a DPoP proof refused: {refused}"),
        };
    let nonce = session.dpop_nonce().map(str::to_owned);
    report.check(
        "the MCP server asked for its nonce (use_dpop_nonce), and the client retried with it",
        nonce.is_some(),
        format!("DPoP-Nonce: {}", nonce.as_deref().unwrap_or("(none)")),
    );
    let nonce = nonce.as_deref();
    let mut outcomes = Vec::new();
    for tool in [
        "get_user_profile",
        "write_data",
        "read_data",
        "admin_operation",
    ] {
        outcomes.push(session.call_tool(tool, json!({"value": "bound"})).await?);
    }
    report.check(
        "Authorization: DPoP with a fresh proof per request: alice's tools work, admin's do not",
        outcomes[..3].iter().all(Outcome::is_allowed)
            && matches!(outcomes[3], Outcome::InsufficientScope(_)),
        format!(
            "{} (a fresh proof, with the nonce, per request)",
            outcomes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    let bearer = mcp_client::raw_call(
        &mcp.url,
        &format!("Bearer {}", alice.access_token),
        None,
        "get_user_profile",
    )
    .await?;
    report.check(
        "the same token sent as Bearer is refused",
        bearer.status == 401 && bearer.challenge.starts_with("DPoP "),
        format!("{}, WWW-Authenticate: {}", bearer.status, bearer.challenge),
    );

    let without_nonce = mcp_client::raw_call(
        &mcp.url,
        &format!("DPoP {}", alice.access_token),
        Some(&key.proof("POST", &mcp.url, Some(&alice.access_token), None)),
        "get_user_profile",
    )
    .await?;
    report.check(
        "a proof without the server's nonce is refused with use_dpop_nonce",
        without_nonce.status == 401
            && challenge_param(&without_nonce.challenge, "error").as_deref()
                == Some("use_dpop_nonce"),
        format!(
            "{}, WWW-Authenticate: {}",
            without_nonce.status, without_nonce.challenge
        ),
    );

    let thief = DpopKey::generate(JwsAlgorithm::ES256)?;
    let stolen = mcp_client::raw_call(
        &mcp.url,
        &format!("DPoP {}", alice.access_token),
        Some(&thief.proof("POST", &mcp.url, Some(&alice.access_token), nonce)),
        "get_user_profile",
    )
    .await?;
    report.check(
        "the token with a proof of another key is refused",
        stolen.status == 401,
        format!(
            "{} {}",
            stolen.status,
            challenge_param(&stolen.challenge, "error_description").unwrap_or_default()
        ),
    );

    let proof = key.proof("POST", &mcp.url, Some(&alice.access_token), nonce);
    let authorization = format!("DPoP {}", alice.access_token);
    let first =
        mcp_client::raw_call(&mcp.url, &authorization, Some(&proof), "get_user_profile").await?;
    let replay =
        mcp_client::raw_call(&mcp.url, &authorization, Some(&proof), "get_user_profile").await?;
    report.check(
        "a replayed proof is refused",
        first.outcome.is_allowed()
            && replay.status == 401
            && challenge_param(&replay.challenge, "error").as_deref() == Some("invalid_dpop_proof"),
        format!(
            "first use {}, replay {} {}",
            first.outcome,
            replay.status,
            challenge_param(&replay.challenge, "error_description").unwrap_or_default()
        ),
    );

    let refresh_token = alice
        .refresh_token
        .as_deref()
        .context("alice has a refresh token (DPoP run)")?;
    let unproven = oauth_client::refresh(&discovery, &client_id, refresh_token).await?;
    report.check(
        "the bound refresh token is refused without a proof of the key",
        matches!(&unproven, Err(e) if e.error == "invalid_dpop_proof"),
        match &unproven {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.error.clone(),
        },
    );
    let refreshed =
        oauth_client::refresh_with(&discovery, &client_id, refresh_token, Some(&key)).await?;
    let works = match &refreshed {
        Ok(new) => {
            let mut session =
                McpSession::sessionless(&mcp.url, Some(&new.access_token))?.with_dpop(key.clone());
            session
                .call_tool("read_data", json!({}))
                .await?
                .is_allowed()
        }
        Err(_) => false,
    };
    report.check(
        "with a proof it refreshes, the new access token bound to the same key",
        works,
        match &refreshed {
            Ok(new) => format!("token_type: {}, read_data allowed: {works}", new.token_type),
            Err(e) => e.error.clone(),
        },
    );
    provider.shutdown().await?;
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the flow and fails if any expectation failed (for `main`s).
pub async fn run_and_verify() -> anyhow::Result<Report> {
    let report = run().await?;
    let failures = report.failures();
    ensure!(
        failures.is_empty(),
        "{} check(s) failed: {}",
        failures.len(),
        failures
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(report)
}
