//! One module per fuzz target: `check` panics when an input breaks the target's invariant.

pub mod authorization_header;
pub mod challenge_renderer;
pub mod dpop_proof;
pub mod introspection_response;
pub mod jwt_access_token;
pub mod mcp_body_classifier;
pub mod security_event_token;
pub mod session_binding;
