#![cfg_attr(
    not(feature = "mcp"),
    doc = "MCP-specific enforcement: enable the `mcp` feature."
)]
#![cfg_attr(
    feature = "mcp",
    doc = r#"
MCP-specific enforcement (feature `mcp`): per-operation scopes and session binding, and
sessionless state tied to its principal ([`OwnerKey`] for server-side handles, [`StateSealer`]
for state the client carries, such as `requestState`).

```
use axum::Router;
use tower::ServiceBuilder;
use tower_introspect::mcp::{McpScopeLayer, McpScopePolicy, McpSessionBindingLayer};

# fn main() -> Result<(), tower_introspect::ConfigError> {
let policy = McpScopePolicy::builder()
    .tool("read_data", ["read"])
    .tool("admin_operation", ["admin"])
    .build()?;
let mcp_guards = ServiceBuilder::new()
    .layer(McpSessionBindingLayer::default())
    .layer(McpScopeLayer::new(policy));
// router.layer(mcp_guards).layer(bearer_auth_layer)
# let _: Router = Router::new().layer(mcp_guards);
# Ok(()) }
```
"#
)]

#[cfg(feature = "mcp")]
mod classify;
#[cfg(feature = "mcp")]
mod method_headers;
#[cfg(feature = "mcp")]
mod owner;
#[cfg(feature = "mcp")]
mod policy;
pub(crate) mod protocol_version;
#[cfg(feature = "mcp")]
mod refusal;
#[cfg(feature = "mcp")]
mod scope_layer;
#[cfg(feature = "mcp")]
mod sealed;
#[cfg(feature = "mcp")]
mod session;

#[cfg(feature = "mcp")]
pub use self::classify::{McpMessage, Target, UnclassifiableBody, classify_body};
#[cfg(feature = "mcp")]
pub use self::owner::OwnerKey;
#[cfg(feature = "mcp")]
pub use self::policy::{McpScopePolicy, McpScopePolicyBuilder, Requirement};
#[cfg(feature = "mcp")]
pub use self::scope_layer::{DEFAULT_MAX_BODY_BYTES, McpScope, McpScopeFuture, McpScopeLayer};
#[cfg(feature = "mcp")]
pub use self::sealed::{
    DEFAULT_MAX_SEALED_LEN, KeyError, MAX_KEY_ID_LEN, MIN_SEALING_SECRET_LEN, OpenError, SealError,
    SealingKey, StateSealer,
};
#[cfg(feature = "mcp")]
pub use self::session::{
    DEFAULT_MAX_ANONYMOUS_SESSIONS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL,
    DEFAULT_SESSION_IDLE, MCP_SESSION_ID, McpSessionBinding, McpSessionBindingLayer,
};
