//! A deployment like the demo MCP server's: its per-tool policy and its callers.

use http::HeaderValue;
use tower_introspect::introspection::IntrospectionResponse;
use tower_introspect::mcp::{McpScopePolicy, Requirement};
use tower_introspect::{Principal, Scopes};

/// The scopes a fuzzed caller may hold (a bit each in [`caller`]'s mask).
pub const SCOPES: [&str; 3] = ["read", "write", "admin"];

/// The demo server's policy: a public handshake and tool, one tool per scope, anything unknown
/// requires `admin`.
pub fn policy() -> McpScopePolicy {
    McpScopePolicy::builder()
        .public_handshake()
        .public_tool("public_info")
        .tool("get_user_profile", [] as [&str; 0])
        .tool("read_data", ["read"])
        .tool("write_data", ["write"])
        .tool("admin_operation", ["admin"])
        .resource("file:///secret", ["admin"])
        .prompt("admin_prompt", ["admin"])
        .default_scopes(["admin"])
        .build()
        .unwrap()
}

/// A principal with `sub` and `client_id` (either may be absent) and the scopes of `mask`'s bits.
pub fn principal(sub: Option<&str>, client_id: Option<&str>, mask: u8) -> Principal {
    let mut claims = IntrospectionResponse::default();
    claims.active = true;
    claims.sub = sub.map(str::to_owned);
    claims.client_id = client_id.map(str::to_owned);
    claims.iss = Some("https://as.example".to_owned());
    claims.scope = SCOPES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, scope)| *scope)
        .collect::<Scopes>();
    Principal::new(claims.into())
}

/// A caller chosen by one input byte: bit 7 set means anonymous, bits 0–2 select scopes.
pub fn caller(byte: u8) -> Option<Principal> {
    (byte & 0x80 == 0).then(|| principal(Some("alice"), Some("demo-client"), byte & 0b111))
}

/// Whether `principal` meets `requirement` (what the scope layer promises to enforce).
pub fn meets(requirement: &Requirement, principal: Option<&Principal>) -> bool {
    match requirement {
        Requirement::Public => true,
        Requirement::Scopes(required) => {
            principal.is_some_and(|p| p.scopes().contains_all(required.iter()))
        }
    }
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("fixture tokens are visible ASCII")
}
