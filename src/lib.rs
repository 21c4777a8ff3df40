//! Turn any [tower](https://docs.rs/tower) service into an OAuth 2.0 protected resource.
//!
//! [`BearerAuthLayer`] reads `Authorization: Bearer <token>`, validates the token by
//! [RFC 7662](https://www.rfc-editor.org/rfc/rfc7662) token introspection against your
//! authorization server, caches the verdict safely, and hands the caller's [`Principal`] to the
//! inner service as a request extension. It works in front of axum routers, tonic servers and
//! rmcp's streamable HTTP MCP service alike: anything that is a `Service<http::Request<B>>`.
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
//! # The request path
//!
//! 1. The `Authorization` header is parsed (RFC 6750 §2.1: case-insensitive scheme, `b64token`
//!    grammar, length limit, exactly one header). Query-string tokens are never read.
//! 2. The token's SHA-256 is looked up in the [`CachedVerifier`]. On a miss, one introspection
//!    call is made, however many requests wait for the same token.
//! 3. An `active: true` answer is validated: `exp` and `nbf` (with leeway), audience, issuer, and
//!    that it is not a refresh token. The verdict is cached until `exp − leeway` (at most
//!    `max_ttl`); a negative verdict for `negative_ttl`; a server failure not at all.
//! 4. The [`Principal`] is inserted into the request extensions and the inner service is called.
//!
//! # Rejections
//!
//! | situation | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no token | 401 | `Bearer realm=…, scope=…, resource_metadata=…` (no `error`) |
//! | malformed header, two headers, bad token syntax | 400 | `Bearer error="invalid_request", …` |
//! | inactive, expired, not yet valid, wrong audience or issuer, refresh token | 401 | `Bearer error="invalid_token", error_description=…, resource_metadata=…` |
//! | missing scope | 403 | `Bearer error="insufficient_scope", scope=…, resource_metadata=…` |
//! | authorization server unreachable, 5xx, timeout, garbage | 503 + `Retry-After` | none |
//!
//! gRPC requests (`content-type: application/grpc…`) get the same decisions as trailers-only
//! responses with `grpc-status` 16, 7 or 14. The inner service is never called on a rejection.
//!
//! # Security properties
//!
//! - Fails closed: anything but a validated positive answer refuses the request.
//! - Raw tokens are never stored or logged; cache keys and log fingerprints are SHA-256 based.
//! - Every call to the authorization server is bounded by a timeout and a response size limit.
//! - The inbound token is not given to the inner service in any form other than the original
//!   request headers; never forward it upstream (use token exchange instead).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cache;
mod challenge;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod header;
pub mod introspection;
mod layer;
#[cfg(feature = "mcp")]
pub mod mcp;
mod metadata;
mod principal;
#[cfg(feature = "rmcp")]
mod rmcp_ext;
mod scope;
mod verifier;

pub use crate::cache::{
    CacheConfig, CacheStats, CachedVerifier, DEFAULT_MAX_CAPACITY, DEFAULT_MAX_TTL,
    DEFAULT_NEGATIVE_TTL,
};
pub use crate::challenge::{Challenger, DEFAULT_RETRY_AFTER_SECS, Rejection};
pub use crate::error::{ConfigError, InvalidToken, VerifyError};
pub use crate::future::{ResponseFuture, ScopeFuture};
pub use crate::header::DEFAULT_MAX_TOKEN_LENGTH;
pub use crate::introspection::{
    ClientAuth, IntrospectionResponse, Introspector, IntrospectorBuilder,
};
pub use crate::layer::{BearerAuth, BearerAuthLayer};
pub use crate::metadata::{MetadataService, ProtectedResourceMetadata, WELL_KNOWN_PREFIX};
pub use crate::principal::{Principal, Scopes};
#[cfg(feature = "rmcp")]
pub use crate::rmcp_ext::PrincipalExt;
pub use crate::scope::{RequireScope, RequireScopeLayer};
pub use crate::verifier::TokenVerifier;
