//! Which scopes a step-up (`insufficient_scope`) challenge names.

use http::HeaderMap;

use crate::mcp::protocol_version::McpGeneration;

/// The scope that asks for a refresh token: a client requests it at authorization time, never in
/// response to a challenge, and it says nothing about what a resource allows. It is therefore
/// never named in a challenge nor advertised in `scopes_supported`, and refused in configuration.
pub(crate) const OFFLINE_ACCESS: &str = "offline_access";

/// Which scopes an `insufficient_scope` challenge names.
///
/// MCP changed its guidance: 2025-11-25 recommends adding the scopes the token already has (clients
/// that *replace* their scope with the challenge's would otherwise lose their current rights);
/// 2026-07-28 wants exactly the scopes the operation needs and leaves accumulation to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StepUpScopes {
    /// Only the scopes the operation requires, whatever the protocol version.
    RequiredOnly,
    /// The required scopes plus those already granted, whatever the protocol version.
    RequiredAndGranted,
    /// By the request's `MCP-Protocol-Version` (the default): 2025-11-25 up to 2026-07-28 gets
    /// the required and granted scopes; 2026-07-28, later versions and drafts get the required
    /// ones only; older versions and requests without the header (MCP reads that as 2025-03-26)
    /// get the required ones only, as before step-up guidance existed.
    #[default]
    ByProtocolVersion,
}

impl StepUpScopes {
    /// Whether a challenge for a request with `headers` names the granted scopes too.
    pub fn includes_granted(self, headers: &HeaderMap) -> bool {
        match self {
            Self::RequiredOnly => false,
            Self::RequiredAndGranted => true,
            Self::ByProtocolVersion => McpGeneration::of(headers) == McpGeneration::V2025_11_25,
        }
    }
}
