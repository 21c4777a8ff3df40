//! Turn any [tower](https://docs.rs/tower) service into an OAuth 2.0 protected resource.
//!
//! [`BearerAuthLayer`] reads `Authorization: Bearer <token>`, validates the token by
//! [RFC 7662](https://www.rfc-editor.org/rfc/rfc7662) token introspection against your
//! authorization server or as an [RFC 9068](https://www.rfc-editor.org/rfc/rfc9068) JWT access
//! token with the issuer's published keys, caches the verdict safely, and hands the caller's
//! [`Principal`] to the inner service as a request extension. It works in front of axum routers, tonic servers and
//! rmcp's streamable HTTP MCP service alike: anything that is a `Service<http::Request<B>>`.
//!
//! # Where things are
//!
//! The crate root holds what most servers need: [`BearerAuthLayer`] (with
//! [`Introspector`] or a [`jwt::JwtVerifier`], or both through [`HybridVerifier`]), the
//! [`Principal`] handlers receive, the scope layers [`RequireScopeLayer`] and
//! [`PathScopeLayer`], and the errors. The rest is grouped by concern:
//!
//! | module | what is in it |
//! |---|---|
//! | [`introspection`] | RFC 7662: the introspector, client authentication, the response |
//! | [`jwt`] | RFC 9068: trusted issuers, their key sets, the algorithms |
//! | [`hybrid`] | one verifier for JWTs and opaque tokens |
//! | [`cache`] | the verdict cache: settings, statistics, invalidation |
//! | [`layer`] | the bearer layer's service and future |
//! | [`scope`] | scope layers, scope hierarchies, step-up challenges |
//! | [`challenge`] | how refusals are worded (RFC 6750, gRPC) |
//! | [`metadata`] | RFC 9728 protected resource metadata |
//! | [`dpop`] | RFC 9449: sender-constrained tokens, proofs, nonces, the client's key |
//! | [`claims`] | the verifier-neutral claims a principal is built from |
//! | [`error`] | why a token was refused or could not be checked; configuration errors |
//! | [`mcp`] | MCP: per-operation scopes, session binding, sealed state (feature `mcp`) |
//!
//! # Quick start
//!
//! ```
//! use axum::{Extension, Router, routing::get};
//! use tower_introspect::{BearerAuthLayer, Introspector, Principal};
//!
//! async fn whoami(Extension(principal): Extension<Principal>) -> String {
//!     format!("hello {}", principal.subject().unwrap_or("anonymous"))
//! }
//!
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! let introspector = Introspector::builder()
//!     .endpoint("https://auth.example.com/oauth/introspect")
//!     .client_secret_basic("my-api", "s3cret")
//!     // Refuse tokens minted for other resources of the same server (RFC 8707).
//!     .audience("https://api.example.com")
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(
//!         BearerAuthLayer::introspect(introspector)
//!             .resource_metadata("https://api.example.com/.well-known/oauth-protected-resource"),
//!     );
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! # Integrations
//!
//! ## axum
//!
//! Put [`BearerAuthLayer`] around the router, [`RequireScopeLayer`] on routes, serve the RFC 9728
//! document outside the bearer layer, and take [`Principal`] as an extractor (feature `axum`).
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! use axum::{Router, routing::{get, post}};
//! use tower_introspect::{BearerAuthLayer, Introspector, Principal, RequireScopeLayer};
//! use tower_introspect::metadata::ProtectedResourceMetadata;
//!
//! async fn list(principal: Principal) -> String {
//!     format!("items for {}", principal.subject().unwrap_or("?"))
//! }
//!
//! let metadata = ProtectedResourceMetadata::new("https://api.example.com", "https://auth.example.com")?
//!     .scopes_supported(["read", "write"])?;
//! let auth = BearerAuthLayer::introspect(
//!     Introspector::builder()
//!         .endpoint("https://auth.example.com/introspect")
//!         .client_secret_basic("api", "s3cret")
//!         .audience("https://api.example.com")
//!         .build()?,
//! )
//! .protected_resource(&metadata)
//! .challenge_scope("read")?;
//!
//! let app: Router = Router::new()
//!     .route("/items", get(list).route_layer(RequireScopeLayer::all(["read"])?))
//!     .route("/items/new", post(list).route_layer(RequireScopeLayer::all(["write"])?))
//!     .layer(auth)
//!     .merge(metadata.into_router());
//! # let _ = app;
//! # Ok(()) }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! ## tonic (gRPC)
//!
//! The same layers go on a tonic server. Rejections become trailers-only responses, so clients see
//! `Code::Unauthenticated`, `Code::PermissionDenied` or `Code::Unavailable`; handlers read the
//! principal with `request.extensions().get::<Principal>()`. With the `tonic` feature a
//! [`RequireScope`](crate::scope::RequireScope) keeps the gRPC service name, so each service can require its own scopes:
//! `.add_service(RequireScopeLayer::all(["admin"])?.layer(admin_service))`. Per method, use
//! [`PathScopeLayer`]: gRPC methods are paths (`/package.Service/Method`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_introspect::{BearerAuthLayer, Introspector, RequireScopeLayer};
//!
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! let auth = BearerAuthLayer::introspect(
//!     Introspector::builder()
//!         .endpoint("https://auth.example.com/introspect")
//!         .client_secret_basic("grpc-api", "s3cret")
//!         .build()?,
//! );
//! tonic::transport::Server::builder()
//!     .layer(auth)
//!     .layer(RequireScopeLayer::all(["health"])?)
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## rmcp (MCP servers)
//!
//! rmcp's `StreamableHttpService` is a tower service: nest it in axum behind the bearer layer.
//! [`mcp::McpScopeLayer`] (feature `mcp`) gives each tool, resource and prompt its own scopes
//! with step-up 403 challenges, [`mcp::McpSessionBindingLayer`] binds sessions to their creator,
//! and [`PrincipalExt`] (feature `rmcp`) hands tools the caller. Without protocol sessions,
//! key server-side state by [`mcp::OwnerKey`] and seal client-carried state with [`mcp::StateSealer`].
//!
//! Both MCP layers fail closed: a body the scope layer cannot classify gets 400 and a compressed
//! one 415 (never passed through); a session id the binding layer does not know gets 404 (the
//! client re-initializes), another principal's 403, and new sessions beyond the per-principal,
//! anonymous or total bound 429 or 503 (live sessions are never evicted to make room).
//!
//! MCP versions 2025-03-26 to 2026-07-28 are served side by side, by each request's
//! `MCP-Protocol-Version`: a [`ScopeHierarchy`] on the bearer layer lets a broader scope satisfy a
//! narrower one in every check (2026-07-28 requires it; challenges still name the narrow scope);
//! [`StepUpScopes`](crate::scope::StepUpScopes) picks the scopes of a 403 challenge (by default required and granted for
//! 2025-11-25, required only otherwise; `offline_access` never, and refused in configuration);
//! `McpScopeLayer::trust_method_headers` judges 2026-07-28 requests by their `Mcp-Method` /
//! `Mcp-Name` headers without reading the body, and a header that disagrees with a body read is
//! refused with 400.
//!
//! ```
//! # #[cfg(all(feature = "rmcp", feature = "mcp"))]
//! # mod example {
//! use std::sync::Arc;
//!
//! use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ServerConfig};
//! use rmcp::service::RequestContext;
//! use rmcp::transport::streamable_http_server::{
//!     StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
//! };
//! use rmcp::{ErrorData, RoleServer, ServerHandler};
//! use tower_introspect::mcp::{McpScopeLayer, McpScopePolicy, McpSessionBindingLayer};
//! use tower_introspect::{BearerAuthLayer, Introspector, PrincipalExt};
//!
//! #[derive(Clone)]
//! struct Tools;
//!
//! impl ServerHandler for Tools {
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::default()
//!     }
//!
//!     async fn call_tool(
//!         &self,
//!         request: CallToolRequestParams,
//!         ctx: RequestContext<RoleServer>,
//!     ) -> Result<CallToolResponse, ErrorData> {
//!         let caller = ctx.principal().and_then(|p| p.subject()).unwrap_or("anonymous");
//!         let text = format!("{} called by {caller}", request.name);
//!         Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
//!     }
//! }
//!
//! pub fn app(introspector: Introspector) -> Result<axum::Router, tower_introspect::ConfigError> {
//!     let mcp = StreamableHttpService::new(
//!         || Ok(Tools),
//!         Arc::new(LocalSessionManager::default()),
//!         StreamableHttpServerConfig::default(),
//!     );
//!     let policy = McpScopePolicy::builder()
//!         .tool("read_data", ["read"])
//!         .tool("admin_operation", ["admin"])
//!         .build()?;
//!     Ok(axum::Router::new()
//!         .nest_service("/mcp", mcp)
//!         .layer(McpScopeLayer::new(policy))
//!         .layer(McpSessionBindingLayer::default())
//!         .layer(
//!             BearerAuthLayer::introspect(introspector)
//!                 .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
//!                 .challenge_scope("read")?,
//!         ))
//! }
//! # }
//! ```
//!
//! # The request path
//!
//! 1. The `Authorization` header is parsed (RFC 6750 §2.1: case-insensitive scheme followed by a
//!    space, `b64token` grammar, length limit, exactly one header). A header starting with
//!    `Bearer` that breaks the grammar is malformed, never "no token"; another scheme's header is
//!    "no token". Query-string tokens are never read.
//! 2. The token's SHA-256 is looked up in the [`CachedVerifier`](crate::cache::CachedVerifier). On a miss, one introspection
//!    call is made, however many requests wait for the same token.
//! 3. An `active: true` answer is validated: `exp` and `nbf` (with leeway), audience, issuer, that
//!    it is not a refresh token (in any of the spellings servers use), and that its `scope` is
//!    well formed (RFC 6749 §3.3: scope tokens of NQCHAR separated by SP only; see [`Scopes`]).
//!    The verdict is cached until `exp − leeway` (at most `max_ttl`); a negative verdict for
//!    `negative_ttl`; a server failure not at all. An invalidation wins over a call in flight.
//! 4. The [`Principal`] is inserted into the request extensions and the inner service is called.
//!
//! # Rejections
//!
//! | situation | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no token | 401 | `Bearer realm=…, scope=…, resource_metadata=…` (no `error`) |
//! | malformed header, two headers, bad token syntax | 400 | `Bearer error="invalid_request", …` |
//! | inactive, expired, not yet valid, wrong audience or issuer, refresh token, malformed scope | 401 | `Bearer error="invalid_token", error_description=…, resource_metadata=…` |
//! | missing scope ([`RequireScopeLayer`], [`PathScopeLayer`], `mcp::McpScopeLayer`) | 403 | `Bearer error="insufficient_scope", scope=…, resource_metadata=…` |
//! | authorization server unreachable, 5xx, timeout, garbage | 503 + `Retry-After` | none |
//! | authorization server answered `429` (no call to it until its `Retry-After`) | 503 + the remaining wait as `Retry-After` | none |
//!
//! gRPC requests (`content-type: application/grpc…`) get the same decisions as trailers-only
//! responses with `grpc-status` 16, 7 or 14; gRPC-Web requests (`application/grpc-web…`) get them
//! in their own content type. The inner service is never called on a rejection.
//!
//! # Operating it
//!
//! - Revocation: [`CachedVerifier::invalidate`](crate::cache::CachedVerifier::invalidate), [`invalidate_subject`](crate::cache::CachedVerifier::invalidate_subject),
//!   [`invalidate_client`](crate::cache::CachedVerifier::invalidate_client) and
//!   [`invalidate_all`](crate::cache::CachedVerifier::invalidate_all) on the handle from
//!   [`BearerAuthLayer::verifier`].
//! - Outages: [`CacheConfig::stale_if_error`](crate::cache::CacheConfig::stale_if_error) (opt-in, with its revocation trade-off),
//!   [`IntrospectorBuilder::max_retry_after`] for `429`s, and
//!   [`IntrospectorBuilder::discover_lazily`] to start while the authorization server is down.
//! - Observability: one `verify_token` tracing span per verification (fields `outcome`, `cache`,
//!   `latency_us`), [`CachedVerifier::stats`](crate::cache::CachedVerifier::stats), and with the `metrics` feature counters, a gauge and
//!   a latency histogram through the `metrics` facade, named in [docs/operations.md](https://github.com/tower-introspect/tower-introspect/blob/main/docs/operations.md).
//!
//! # Security properties
//!
//! - Fails closed: anything but a validated positive answer refuses the request.
//! - Raw tokens are never stored or logged; cache keys and log fingerprints are SHA-256 based.
//! - Every call to the authorization server is bounded by one timeout (waiting for a slot included)
//!   and a response size limit, and goes over `https` unless the server is on loopback or you opt
//!   out ([`IntrospectorBuilder::allow_insecure_http`]).
//! - The inbound token is not given to the inner service in any form other than the original
//!   request headers; never forward it upstream (use token exchange instead).

// Without their features the items named above do not exist here: link them to their docs.rs
// pages so that the crate documentation builds (and reads) the same for every feature set.
#![cfg_attr(
    not(feature = "mcp"),
    doc = "",
    doc = "[`mcp::McpScopeLayer`]: https://docs.rs/tower-introspect/latest/tower_introspect/mcp/struct.McpScopeLayer.html",
    doc = "[`mcp::McpSessionBindingLayer`]: https://docs.rs/tower-introspect/latest/tower_introspect/mcp/struct.McpSessionBindingLayer.html",
    doc = "[`mcp::OwnerKey`]: https://docs.rs/tower-introspect/latest/tower_introspect/mcp/struct.OwnerKey.html",
    doc = "[`mcp::StateSealer`]: https://docs.rs/tower-introspect/latest/tower_introspect/mcp/struct.StateSealer.html"
)]
#![cfg_attr(
    not(feature = "rmcp"),
    doc = "",
    doc = "[`PrincipalExt`]: https://docs.rs/tower-introspect/latest/tower_introspect/trait.PrincipalExt.html"
)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub mod cache;
pub mod challenge;
pub mod claims;
mod discovery;
pub mod dpop;
pub mod error;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "tonic")]
mod grpc;
mod header;
pub mod hybrid;
pub mod introspection;
pub mod jwt;
pub mod layer;
pub mod mcp;
pub mod metadata;
mod metrics;
mod principal;
mod remote;
mod replay;
#[cfg(feature = "rmcp")]
mod rmcp_ext;
pub mod scope;
mod scopes;
mod shared_claims;
#[cfg(feature = "ssf")]
pub mod ssf;
mod telemetry;
mod verifier;

pub use crate::challenge::Rejection;
pub use crate::error::{ConfigError, VerifyError};
pub use crate::hybrid::HybridVerifier;
pub use crate::introspection::{Introspector, IntrospectorBuilder};
pub use crate::layer::BearerAuthLayer;
pub use crate::principal::Principal;
#[cfg(feature = "rmcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub use crate::rmcp_ext::PrincipalExt;
pub use crate::scope::{PathScopeLayer, RequireScopeLayer};
pub use crate::scopes::Scopes;
pub use crate::verifier::TokenVerifier;

// Short paths for the crate's own modules (some used only with some features); the public paths
// are the modules above.
#[allow(unused_imports)]
pub(crate) use crate::challenge::Challenger;
pub(crate) use crate::claims::{TokenClaims, VerifierKind};
pub(crate) use crate::error::{InvalidToken, Unavailable, UnavailableCause};
#[allow(unused_imports)]
pub(crate) use crate::introspection::IntrospectionResponse;
pub(crate) use crate::metadata::ProtectedResourceMetadata;
pub(crate) use crate::scope::ScopeHierarchy;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzz_support;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod bench_support;
