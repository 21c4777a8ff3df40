//! The demo MCP resource server: rmcp's streamable HTTP service on axum, protected by
//! `BearerAuthLayer`, with per-tool scopes from `McpScopePolicy`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use rand::RngCore as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::dpop::{Dpop, DpopPolicy, NonceSource, ProofChecker};
use tower_introspect::jwt::{JwtIssuer, JwtVerifier};
use tower_introspect::mcp::{McpScopeLayer, McpScopePolicy, McpSessionBindingLayer, OwnerKey};
use tower_introspect::metadata::ProtectedResourceMetadata;
use tower_introspect::ssf::SsfReceiver;
use tower_introspect::{BearerAuthLayer, HybridVerifier, Introspector, Principal, PrincipalExt};

use crate::confirmation::{self, DELETE_NOTE, RequestStates, Step};
use crate::serve::{ServeOptions, serve};
use crate::ssf_stream::{self, SsfClient};

/// Who may call a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, even without a token.
    Public,
    /// Any valid token.
    Authenticated,
    /// A token with this scope.
    Scope(&'static str),
}

/// The demo tools: one table drives the scope policy, `tools/list` and
/// `list_available_resources`, so they cannot disagree.
pub const TOOLS: [(&str, Access, &str); 6] = [
    (
        "public_info",
        Access::Public,
        "Public information about this server; no token needed.",
    ),
    (
        "get_user_profile",
        Access::Authenticated,
        "The caller's identity as the token describes it.",
    ),
    (
        "read_data",
        Access::Scope("read"),
        "Reads the shared notes.",
    ),
    (
        "write_data",
        Access::Scope("write"),
        "Appends a note (argument `value`).",
    ),
    (
        "admin_operation",
        Access::Scope("admin"),
        "A privileged operation.",
    ),
    (
        "list_available_resources",
        Access::Authenticated,
        "Which tools the caller's scopes allow.",
    ),
];

/// Tools that keep state between calls without a protocol session: `create_note` returns a
/// handle, `read_note` takes it back. Kept apart from [`TOOLS`] because they need each other's
/// output, which the per-tool matrix of the full flow cannot give.
pub const HANDLE_TOOLS: [(&str, Access, &str); 3] = [
    (
        "create_note",
        Access::Authenticated,
        "Stores a private note (argument `text`) and returns its handle.",
    ),
    (
        "read_note",
        Access::Authenticated,
        "Reads one of the caller's own notes by handle (argument `handle`).",
    ),
    (
        DELETE_NOTE,
        Access::Authenticated,
        "Deletes one of the caller's own notes (argument `handle`) after asking the user to \
         confirm (MCP 2026-07-28 multi round-trip request, state in a sealed `requestState`).",
    ),
];

/// Bound on the private notes one principal may keep.
pub const MAX_NOTES_PER_OWNER: usize = 100;
/// Bound on the private notes of all principals together.
pub const MAX_NOTES: usize = 10_000;
/// Bound on one private note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4 * 1024;

/// Every scope the demo uses, for metadata and challenges.
pub const SCOPES: [&str; 3] = ["read", "write", "admin"];

/// The per-tool policy of [`TOOLS`]; anything unknown requires `admin` (fail closed).
pub fn policy() -> Result<McpScopePolicy, tower_introspect::ConfigError> {
    TOOLS
        .iter()
        .chain(&HANDLE_TOOLS)
        .fold(
            McpScopePolicy::builder().public_handshake(),
            |policy, (name, access, _)| match access {
                Access::Public => policy.public_tool(*name),
                Access::Authenticated => policy.tool(*name, [] as [&str; 0]),
                Access::Scope(scope) => policy.tool(*name, [*scope]),
            },
        )
        .default_scopes(["admin"])
        .build()
}

fn allowed(access: Access, principal: Option<&Principal>) -> bool {
    match (access, principal) {
        (Access::Public, _) => true,
        (_, None) => false,
        (Access::Authenticated, Some(_)) => true,
        (Access::Scope(scope), Some(p)) => p.scopes().contains(scope),
    }
}

/// Private notes, stored under [`OwnerKey::scoped`] keys (`<owner>:<handle>`): a handle
/// presented by another principal looks up another key and finds nothing, so no ownership check
/// can be forgotten.
#[derive(Default)]
struct PrivateNotes {
    notes: HashMap<String, String>,
    per_owner: HashMap<OwnerKey, usize>,
}

impl PrivateNotes {
    fn create(&mut self, owner: OwnerKey, text: &str) -> Result<String, String> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(format!("a note is at most {MAX_NOTE_BYTES} bytes"));
        }
        let count = self.per_owner.entry(owner).or_default();
        if *count >= MAX_NOTES_PER_OWNER || self.notes.len() >= MAX_NOTES {
            return Err("too many notes".into());
        }
        // 128 random bits: handles are unguessable, though the owner key is what protects them.
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let handle: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        *count += 1;
        self.notes.insert(owner.scoped(&handle), text.to_owned());
        Ok(handle)
    }

    fn read(&self, owner: OwnerKey, handle: &str) -> Option<&str> {
        self.notes.get(&owner.scoped(handle)).map(String::as_str)
    }

    fn delete(&mut self, owner: OwnerKey, handle: &str) -> bool {
        if self.notes.remove(&owner.scoped(handle)).is_none() {
            return false;
        }
        if let Some(count) = self.per_owner.get_mut(&owner) {
            *count = count.saturating_sub(1);
        }
        true
    }
}

/// The MCP handler. Notes written with `write_data` are shared by all sessions of one server;
/// notes made with `create_note` belong to their creator.
#[derive(Clone)]
pub struct DemoTools {
    notes: Arc<Mutex<Vec<String>>>,
    private_notes: Arc<Mutex<PrivateNotes>>,
    /// The resource this server is (the audience `requestState` is sealed for).
    resource: Arc<str>,
    request_states: RequestStates,
}

impl DemoTools {
    /// The tools of the server at `resource`, sealing `requestState` with `request_states`.
    pub fn new(resource: &str, request_states: RequestStates) -> Self {
        Self {
            notes: Arc::default(),
            private_notes: Arc::default(),
            resource: resource.into(),
            request_states,
        }
    }

    /// One round of `delete_note` (see [`crate::confirmation`]).
    fn delete_note(
        &self,
        request: &CallToolRequestParams,
        principal: Option<&Principal>,
        can_ask: Result<(), &'static str>,
    ) -> Result<CallToolResponse, ErrorData> {
        let error = |text: &str| Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
        let (Some(principal), Some(owner)) = (principal, principal.and_then(OwnerKey::of)) else {
            return error("no identifiable caller");
        };
        let Some(handle) = request
            .arguments
            .as_ref()
            .and_then(|args| args.get("handle"))
            .and_then(Value::as_str)
        else {
            return error("argument `handle` (a string) is required");
        };
        if request.request_state.is_none() {
            // Another principal's handle and a made-up one get the same answer as in read_note.
            if self
                .private_notes
                .lock()
                .expect("private notes lock")
                .read(owner, handle)
                .is_none()
            {
                return error("no such note");
            }
            if let Err(why) = can_ask {
                return error(why);
            }
        }
        match confirmation::step(
            &self.request_states,
            principal,
            &self.resource,
            handle,
            request.request_state.as_deref(),
            request.input_responses.as_ref(),
        )? {
            Step::Ask(input_required) => Ok(input_required.into()),
            Step::Answered {
                handle,
                confirmed: false,
            } => Ok(CallToolResult::success(vec![ContentBlock::text(
                json!({"deleted": false, "handle": handle}).to_string(),
            )])
            .into()),
            Step::Answered {
                handle,
                confirmed: true,
            } => {
                let deleted = self
                    .private_notes
                    .lock()
                    .expect("private notes lock")
                    .delete(owner, &handle);
                if !deleted {
                    return error("no such note");
                }
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    json!({"deleted": true, "handle": handle}).to_string(),
                )])
                .into())
            }
        }
    }

    fn run(
        &self,
        name: &str,
        args: &Value,
        principal: Option<&Principal>,
    ) -> Result<String, String> {
        let caller = principal
            .and_then(|p| p.username().or(p.subject()))
            .unwrap_or("anonymous");
        match name {
            "public_info" => Ok(
                "tower-introspect demo MCP server: tokens are checked by RFC 7662 introspection"
                    .into(),
            ),
            "get_user_profile" => {
                let p = principal.ok_or("no principal")?;
                Ok(json!({
                    "subject": p.subject(),
                    "username": p.username(),
                    "client_id": p.client_id(),
                    "scopes": p.scopes().to_string(),
                    "audiences": p.audiences(),
                })
                .to_string())
            }
            "read_data" => {
                Ok(json!({"notes": *self.notes.lock().expect("notes lock")}).to_string())
            }
            "write_data" => {
                let value = args
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or("argument `value` (a string) is required")?;
                let mut notes = self.notes.lock().expect("notes lock");
                notes.push(format!("{caller}: {value}"));
                Ok(format!("stored note #{}", notes.len()))
            }
            "create_note" => {
                let owner = principal
                    .and_then(OwnerKey::of)
                    .ok_or("no identifiable caller")?;
                let text = args
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or("argument `text` (a string) is required")?;
                let handle = self
                    .private_notes
                    .lock()
                    .expect("private notes lock")
                    .create(owner, text)?;
                Ok(json!({"handle": handle}).to_string())
            }
            "read_note" => {
                let owner = principal
                    .and_then(OwnerKey::of)
                    .ok_or("no identifiable caller")?;
                let handle = args
                    .get("handle")
                    .and_then(Value::as_str)
                    .ok_or("argument `handle` (a string) is required")?;
                let notes = self.private_notes.lock().expect("private notes lock");
                // Another principal's handle and a made-up one get the same answer.
                let text = notes.read(owner, handle).ok_or("no such note")?;
                Ok(json!({"text": text}).to_string())
            }
            "admin_operation" => Ok(format!("admin operation performed by {caller}")),
            "list_available_resources" => {
                let tools: Vec<&str> = TOOLS
                    .iter()
                    .filter(|(_, access, _)| allowed(*access, principal))
                    .map(|(name, _, _)| *name)
                    .collect();
                Ok(json!({"caller": caller, "tools": tools}).to_string())
            }
            other => Err(format!("unknown tool {other}")),
        }
    }
}

impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = TOOLS
            .iter()
            .chain(&HANDLE_TOOLS)
            .map(|(name, _, description)| {
                let argument = match *name {
                    "write_data" => Some("value"),
                    "create_note" => Some("text"),
                    "read_note" | DELETE_NOTE => Some("handle"),
                    _ => None,
                };
                let schema = match argument {
                    Some(argument) => json!({"type": "object",
                        "properties": {argument: {"type": "string"}}, "required": [argument]}),
                    None => json!({"type": "object", "properties": {}}),
                };
                let Value::Object(schema) = schema else {
                    unreachable!("schemas are objects")
                };
                Tool::new(*name, *description, schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == DELETE_NOTE {
            // rmcp delivers an InputRequiredResult only to 2026-07-28 clients, and an elicitation
            // request may go only to a client that declared it can answer one.
            let can_ask = if context
                .protocol_version()
                .is_none_or(|version| version.has_initialize())
            {
                Err(
                    "delete_note asks the user to confirm in a multi round-trip request, \
                     which needs MCP 2026-07-28",
                )
            } else if context
                .client_capabilities()
                .is_none_or(|capabilities| capabilities.elicitation.is_none())
            {
                Err(
                    "delete_note asks the user to confirm: the client must declare the \
                     elicitation capability",
                )
            } else {
                Ok(())
            };
            return self.delete_note(&request, context.principal(), can_ask);
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let result = match self.run(&request.name, &args, context.principal()) {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error)]),
        };
        Ok(result.into())
    }
}

/// How the server checks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenMode {
    /// JWT access tokens verified locally with the issuer's published keys (`jwks_uri`); needs
    /// no client credentials. Opaque tokens are refused.
    Jwt,
    /// Every token introspected (RFC 7662) with the client credentials.
    Introspect,
    /// JWTs verified locally where the issuer publishes `jwks_uri`, opaque tokens introspected
    /// where client credentials are given (decided from the issuer's metadata at start; when the
    /// issuer cannot be reached then, both are set up).
    Auto,
}

/// Whether the server accepts DPoP-bound tokens (RFC 9449), and whether it accepts anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DpopMode {
    /// Bearer tokens only; the `DPoP` scheme is not recognised (and bound tokens are refused).
    Disabled,
    /// DPoP-bound tokens with a proof per request, and unbound tokens as bearer tokens.
    #[default]
    Allowed,
    /// DPoP-bound tokens with a proof per request only.
    Required,
}

impl DpopMode {
    /// The library's policy for this mode.
    pub fn policy(self) -> DpopPolicy {
        match self {
            Self::Disabled => DpopPolicy::Disabled,
            Self::Allowed => DpopPolicy::Allowed,
            Self::Required => DpopPolicy::Required,
        }
    }
}

/// DPoP at the server: the policy and, when given, server nonces (RFC 9449 §9) that every
/// instance sharing the secret agrees on.
#[derive(Debug, Clone, Default)]
pub struct DpopOptions {
    /// Whether DPoP-bound tokens are accepted or required.
    pub mode: DpopMode,
    /// Server nonces each proof must carry; `None`: proofs need none.
    pub nonces: Option<NonceSource>,
}

impl From<DpopMode> for DpopOptions {
    fn from(mode: DpopMode) -> Self {
        Self { mode, nonces: None }
    }
}

impl DpopOptions {
    /// The layer's DPoP settings for the server whose public URL is `resource`: proofs' `htu`
    /// are checked against its origin, and carry a nonce of `nonces` when set.
    pub fn settings(&self, resource: &str) -> anyhow::Result<Dpop> {
        let origin = url::Url::parse(resource)
            .with_context(|| format!("the resource URL {resource}"))?
            .origin()
            .ascii_serialization();
        let mut checker = ProofChecker::builder();
        if let Some(nonces) = &self.nonces {
            checker = checker.nonces(nonces.clone());
        }
        Ok(Dpop::builder()
            .origin(origin)
            .policy(self.mode.policy())
            .checker(checker.build()?)
            .build()?)
    }
}

/// Where tokens come from and how they are checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The authorization server's issuer identifier.
    pub issuer: String,
    /// How tokens are checked.
    pub tokens: TokenMode,
    /// The issuer's JWK Set; `None` discovers `jwks_uri` from its metadata on first use.
    pub jwks_uri: Option<String>,
    /// The introspection endpoint; `None` discovers it from the issuer's RFC 8414 metadata on
    /// first use.
    pub introspection_endpoint: Option<String>,
    /// Client id for introspection.
    pub client_id: String,
    /// Client secret for introspection (empty: none given).
    pub client_secret: String,
    /// Also introspect JWTs after verifying them locally, so that a revoked JWT is refused at
    /// once (needs client credentials).
    pub introspect_jwts: bool,
    /// Cache settings.
    pub cache: CacheConfig,
    /// Subscribe to the issuer's security events (Shared Signals push) with this client, so that
    /// revocations end cached verdicts at once; `None`: no subscription.
    pub ssf: Option<SsfClient>,
}

impl AuthSettings {
    /// Introspection of every token, with these credentials, at `issuer` (its endpoint
    /// discovered on first use).
    pub fn introspection(issuer: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            tokens: TokenMode::Introspect,
            jwks_uri: None,
            introspection_endpoint: None,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            introspect_jwts: false,
            cache: CacheConfig::default(),
            ssf: None,
        }
    }

    /// The same settings, subscribed to the issuer's security events as `client`.
    pub fn with_ssf(mut self, client: SsfClient) -> Self {
        self.ssf = Some(client);
        self
    }

    /// An introspector for tokens issued by this server for `audience` (discovering the
    /// introspection endpoint when none is configured).
    pub fn introspector(&self, audience: &str) -> anyhow::Result<Introspector> {
        let builder = Introspector::builder()
            .client_secret_basic(&self.client_id, &self.client_secret)
            .audience(audience)
            .issuer(&self.issuer)
            .max_concurrent_requests(64);
        let builder = match &self.introspection_endpoint {
            Some(endpoint) => builder.endpoint(endpoint),
            // Lazily: the server starts even while the authorization server is down, and answers
            // 503 until discovery succeeds.
            None => builder.discover_lazily(&self.issuer),
        };
        Ok(builder.build()?)
    }

    /// A verifier of this issuer's JWT access tokens for `audience`, its keys found through the
    /// issuer's metadata (or `jwks_uri`) on first use.
    pub fn jwt_verifier(&self, audience: &str) -> anyhow::Result<JwtVerifier> {
        let mut issuer = JwtIssuer::builder(&self.issuer).audience(audience);
        if let Some(jwks_uri) = &self.jwks_uri {
            issuer = issuer.jwks_uri(jwks_uri);
        }
        Ok(JwtVerifier::new([issuer.build()?])?)
    }

    /// The verifier [`tokens`](Self::tokens) asks for.
    pub async fn verifier(&self, audience: &str) -> anyhow::Result<HybridVerifier> {
        let (jwt, introspect) = match self.tokens {
            TokenMode::Jwt => (true, self.introspect_jwts),
            TokenMode::Introspect => (false, true),
            TokenMode::Auto => (
                self.jwks_uri.is_some() || self.issuer_publishes_keys().await,
                !self.client_secret.is_empty(),
            ),
        };
        let mut builder = HybridVerifier::builder();
        if jwt {
            builder = builder.jwt(self.jwt_verifier(audience)?);
        }
        if introspect {
            builder = builder.introspector(self.introspector(audience)?);
        }
        let verifier = builder
            .introspect_jwts(self.introspect_jwts)
            .build()
            .context("--tokens auto found neither jwks_uri nor client credentials")?;
        tracing::info!(
            jwt = verifier.jwt().is_some(),
            introspection = verifier.introspector().is_some(),
            "token verification"
        );
        Ok(verifier)
    }

    /// Whether the issuer's RFC 8414 metadata names a `jwks_uri`; `true` when it cannot be read
    /// now (the keys are then looked up on first use, and a 503 says if there are none).
    async fn issuer_publishes_keys(&self) -> bool {
        let url = format!(
            "{}/.well-known/oauth-authorization-server",
            self.issuer.trim_end_matches('/')
        );
        let Ok(client) = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        else {
            return true;
        };
        let metadata = async {
            client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
                .await
        };
        match metadata.await {
            Ok(metadata) => metadata.get("jwks_uri").is_some_and(Value::is_string),
            Err(error) => {
                tracing::warn!(%error, "issuer metadata unreachable at start; JWTs verified once its keys can be fetched");
                true
            }
        }
    }
}

/// The authorization-server flags the examples share (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct AuthServerArgs {
    /// Issuer identifier of the authorization server.
    #[arg(long, env = "OAUTH_ISSUER", default_value = "http://127.0.0.1:9000")]
    pub issuer: String,
    /// How tokens are checked: `jwt` (locally, with the issuer's keys; no credentials needed),
    /// `introspect`, or `auto` (JWTs locally where the issuer publishes `jwks_uri`, opaque tokens
    /// introspected where credentials are given).
    #[arg(long, env = "MCP_TOKENS", value_enum, default_value = "auto")]
    pub tokens: TokenMode,
    /// The issuer's JWK Set URL; discovered from the issuer when absent.
    #[arg(long, env = "OAUTH_JWKS_URI")]
    pub jwks_uri: Option<String>,
    /// Introspection endpoint; discovered from the issuer when absent.
    #[arg(long, env = "OAUTH_INTROSPECTION_URL")]
    pub introspection_url: Option<String>,
    /// Also introspect JWTs after verifying them locally, so a revoked JWT is refused at once
    /// (one introspection per cache miss; needs the client credentials).
    #[arg(long, env = "MCP_INTROSPECT_JWTS")]
    pub introspect_jwts: bool,
    /// Client id used to authenticate introspection calls.
    #[arg(long, env = "OAUTH_CLIENT_ID", default_value = "mcp-resource-server")]
    pub client_id: String,
    /// Client secret used to authenticate introspection calls (empty: none).
    #[arg(
        long,
        env = "OAUTH_CLIENT_SECRET",
        default_value = "resource-server-secret",
        hide_default_value = true
    )]
    pub client_secret: String,
    /// DPoP (RFC 9449): `disabled` (bearer tokens only), `allowed` (DPoP-bound tokens with a
    /// proof per request, and bearer tokens) or `required` (DPoP-bound tokens only).
    #[arg(long, env = "MCP_DPOP", value_enum, default_value = "allowed")]
    pub dpop: DpopMode,
    /// DPoP server nonces (RFC 9449 §9): every proof must carry a nonce this server handed out
    /// in `DPoP-Nonce`. The secret (hex or base64url, at least 32 random bytes) is shared by
    /// every instance behind one address, so each accepts the others' nonces.
    #[arg(long, env = "MCP_DPOP_NONCE_SECRET", hide_env_values = true)]
    pub dpop_nonce_secret: Option<String>,
    /// Seconds a DPoP server nonce stays current (the previous one is accepted too).
    #[arg(long, env = "MCP_DPOP_NONCE_ROTATION", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dpop_nonce_rotation: u64,
    /// Subscribe to the issuer's security events (OpenID Shared Signals, push to
    /// `/ssf/events` on this server's bind address): revocations then end cached verdicts at once
    /// instead of after `--cache-max-ttl`.
    #[arg(long, env = "MCP_SSF")]
    pub ssf: bool,
    /// Client id that manages the SSF stream (`client_credentials` with scope `ssf`).
    #[arg(long, env = "MCP_SSF_CLIENT_ID", default_value = "ssf-receiver")]
    pub ssf_client_id: String,
    /// Its secret.
    #[arg(
        long,
        env = "MCP_SSF_CLIENT_SECRET",
        default_value = "ssf-receiver-secret",
        hide_default_value = true
    )]
    pub ssf_client_secret: String,
}

impl AuthServerArgs {
    /// The DPoP options these flags describe (the nonce secret checked).
    pub fn dpop_options(&self) -> anyhow::Result<DpopOptions> {
        let nonces = match &self.dpop_nonce_secret {
            Some(text) => {
                let secret = oauth_provider::NonceSecret::parse(text)
                    .map_err(|e| anyhow::anyhow!("--dpop-nonce-secret: {e}"))?;
                Some(NonceSource::new(
                    secret.expose(),
                    std::time::Duration::from_secs(self.dpop_nonce_rotation),
                )?)
            }
            None => None,
        };
        Ok(DpopOptions {
            mode: self.dpop,
            nonces,
        })
    }

    /// The settings these flags describe, with `cache`.
    pub fn settings(&self, cache: CacheConfig) -> AuthSettings {
        AuthSettings {
            issuer: self.issuer.clone(),
            tokens: self.tokens,
            jwks_uri: self.jwks_uri.clone(),
            introspection_endpoint: self.introspection_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            introspect_jwts: self.introspect_jwts,
            cache,
            ssf: self.ssf.then(|| SsfClient {
                client_id: self.ssf_client_id.clone(),
                client_secret: self.ssf_client_secret.clone(),
            }),
        }
    }
}

/// The axum app: metadata (public), then the MCP endpoint behind the layers. Returns the cache
/// handle too (for statistics and invalidation). `requestState` is sealed with a random key.
pub async fn app(
    resource: &str,
    auth: &AuthSettings,
) -> anyhow::Result<(Router, CachedVerifier<HybridVerifier>)> {
    app_with(resource, auth, RequestStates::random()).await
}

/// Like [`app`], sealing `requestState` with `request_states`.
pub async fn app_with(
    resource: &str,
    auth: &AuthSettings,
    request_states: RequestStates,
) -> anyhow::Result<(Router, CachedVerifier<HybridVerifier>)> {
    app_full(resource, auth, request_states, &DpopOptions::default()).await
}

/// Like [`app_with`], accepting DPoP-bound tokens as `dpop` says (the document advertises it).
pub async fn app_full(
    resource: &str,
    auth: &AuthSettings,
    request_states: RequestStates,
    dpop: &DpopOptions,
) -> anyhow::Result<(Router, CachedVerifier<HybridVerifier>)> {
    let verifier = auth.verifier(resource).await?;
    let dpop = dpop.settings(resource)?;
    let metadata = ProtectedResourceMetadata::new(resource, &auth.issuer)?
        .scopes_supported(SCOPES)?
        .resource_name("tower-introspect demo MCP server")
        .dpop(&dpop);
    let bearer = BearerAuthLayer::new(CachedVerifier::new(verifier, auth.cache.clone()))
        .dpop(dpop)
        .protected_resource(&metadata)
        .challenge_scope(SCOPES.join(" "))?
        .allow_missing_token(true);
    let cache = bearer.verifier().clone();
    let tools = DemoTools::new(resource, request_states);
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let path = url::Url::parse(resource)?.path().to_owned();
    let router = Router::new()
        .nest_service(&path, mcp)
        .layer(McpScopeLayer::new(policy()?))
        .layer(McpSessionBindingLayer::default())
        .layer(bearer)
        .merge(metadata.into_router());
    Ok((router, cache))
}

/// A running demo MCP server.
pub struct McpServer {
    /// The MCP endpoint URL (also the resource identifier).
    pub url: String,
    /// Where this instance answers: `http://<address><path>`, which differs from
    /// [`url`](Self::url) when the server runs behind a proxy or as one of several replicas.
    pub endpoint: String,
    /// The cache handle of its bearer layer.
    pub cache: CachedVerifier<HybridVerifier>,
    /// Its security event receiver, when subscribed ([`AuthSettings::ssf`]).
    pub ssf: Option<SsfReceiver>,
    /// The authorization server whose users [`user_revoked`](Self::user_revoked) names.
    issuer: String,
    task: JoinHandle<()>,
}

impl McpServer {
    /// Serves the demo on `listener` at `http://<address>/mcp`.
    pub async fn start(listener: TcpListener, auth: &AuthSettings) -> anyhow::Result<Self> {
        Self::start_at(listener, None, auth).await
    }

    /// Serves the demo on `listener`; `resource_url` is its public URL when it differs from
    /// `http://<address>/mcp` (behind a proxy), and its path is where the MCP endpoint is mounted.
    ///
    /// Connections get the limits of [`serve`] with their defaults (`TCP_NODELAY`, header-read
    /// and idle timeouts, a bound on concurrent connections).
    pub async fn start_at(
        listener: TcpListener,
        resource_url: Option<String>,
        auth: &AuthSettings,
    ) -> anyhow::Result<Self> {
        Self::start_with(listener, resource_url, auth, ServeOptions::default()).await
    }

    /// Like [`start_at`](Self::start_at), with the connection limits in `options`.
    pub async fn start_with(
        listener: TcpListener,
        resource_url: Option<String>,
        auth: &AuthSettings,
        options: ServeOptions,
    ) -> anyhow::Result<Self> {
        Self::start_full(
            listener,
            resource_url,
            auth,
            options,
            RequestStates::random(),
            DpopOptions::default(),
        )
        .await
    }

    /// Like [`start_with`](Self::start_with), accepting DPoP-bound tokens as `dpop` says (the
    /// `mcp_server` example's `--dpop` and `--dpop-nonce-secret`).
    pub async fn start_with_dpop(
        listener: TcpListener,
        resource_url: Option<String>,
        auth: &AuthSettings,
        options: ServeOptions,
        dpop: DpopOptions,
    ) -> anyhow::Result<Self> {
        Self::start_full(
            listener,
            resource_url,
            auth,
            options,
            RequestStates::random(),
            dpop,
        )
        .await
    }

    /// Like [`start`](Self::start), sealing `requestState` with `request_states` (its key, lifetime
    /// and clock).
    pub async fn start_with_request_states(
        listener: TcpListener,
        auth: &AuthSettings,
        request_states: RequestStates,
    ) -> anyhow::Result<Self> {
        Self::start_full(
            listener,
            None,
            auth,
            ServeOptions::default(),
            request_states,
            DpopOptions::default(),
        )
        .await
    }

    async fn start_full(
        listener: TcpListener,
        resource_url: Option<String>,
        auth: &AuthSettings,
        options: ServeOptions,
        request_states: RequestStates,
        dpop: DpopOptions,
    ) -> anyhow::Result<Self> {
        let addr: SocketAddr = listener.local_addr()?;
        let url = resource_url.unwrap_or_else(|| format!("http://{addr}/mcp"));
        let endpoint = format!("http://{addr}{}", url::Url::parse(&url)?.path());
        let (mut router, cache) = app_full(&url, auth, request_states, &dpop)
            .await
            .context("building the MCP server")?;
        let ssf = match &auth.ssf {
            Some(client) => {
                // Each instance has its own stream, pushed to its own address.
                let push_url = format!("http://{addr}{}", ssf_stream::PUSH_PATH);
                let stream = ssf_stream::subscribe(&auth.issuer, client, &push_url)
                    .await
                    .context("subscribing to the issuer's security events")?;
                let receiver = ssf_stream::receiver(&auth.issuer, &stream, &cache)?;
                // Outside the bearer layer: the transmitter authenticates with the stream's
                // own header.
                router = router.route_service(ssf_stream::PUSH_PATH, receiver.push_endpoint()?);
                tracing::info!(stream = %stream.stream_id, %push_url, "subscribed to security events");
                Some(receiver)
            }
            None => None,
        };
        let task = tokio::spawn(serve(listener, router, options));
        Ok(Self {
            url,
            endpoint,
            cache,
            ssf,
            issuer: auth.issuer.clone(),
            task,
        })
    }

    /// The revocation hook: call it when the authorization server reports that `subject`'s access
    /// was revoked (a user disabled, their tokens revoked), from an admin endpoint or an event
    /// consumer. Every cached verdict for that user goes at once, so their tokens are introspected
    /// again on their next request instead of working until their entries end (up to `max_ttl`).
    pub fn user_revoked(&self, subject: &str) {
        self.cache.invalidate_subject(&self.issuer, subject);
    }

    /// The hook for a compromised client: every cached verdict for tokens issued to `client_id`
    /// goes at once.
    pub fn client_revoked(&self, client_id: &str) {
        self.cache.invalidate_client(client_id);
    }

    /// Runs until the process ends (for the `mcp_server` example).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await?;
        Ok(())
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthServerArgs,
    }

    fn options(args: &[&str]) -> anyhow::Result<DpopOptions> {
        let cli = Cli::try_parse_from(std::iter::once("mcp_server").chain(args.iter().copied()))?;
        cli.auth.dpop_options()
    }

    #[test]
    fn dpop_nonce_flags_give_nonces_or_a_clear_error() {
        let none = options(&[]).unwrap();
        assert_eq!(none.mode, DpopMode::Allowed);
        assert!(none.nonces.is_none());

        let secret = "ab".repeat(32);
        let with = options(&[
            "--dpop",
            "required",
            "--dpop-nonce-secret",
            &secret,
            "--dpop-nonce-rotation",
            "60",
        ])
        .unwrap();
        assert_eq!(with.mode, DpopMode::Required);
        let nonces = with.nonces.expect("nonces");
        assert_eq!(nonces.rotation(), std::time::Duration::from_secs(60));
        // The same secret on another instance accepts this one's nonces.
        let other = options(&[
            "--dpop-nonce-secret",
            &secret,
            "--dpop-nonce-rotation",
            "60",
        ])
        .unwrap()
        .nonces
        .unwrap();
        let now = std::time::SystemTime::now();
        let nonce = nonces.current_at(now);
        assert_eq!(
            other.check_at(&nonce, now),
            tower_introspect::dpop::NonceStatus::Current
        );

        let short = options(&["--dpop-nonce-secret", &"ab".repeat(16)]).unwrap_err();
        assert!(
            short.to_string().starts_with("--dpop-nonce-secret: ")
                && short.to_string().contains("at least 32"),
            "{short}"
        );
        assert!(options(&["--dpop-nonce-rotation", "0"]).is_err());
    }
}
