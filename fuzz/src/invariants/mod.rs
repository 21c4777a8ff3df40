//! One module per fuzz target: `check` panics when an input breaks the target's invariant.
//!
//! Invariants that issue 10 adds, and that the library does not implement yet, are each behind a
//! `CHECK_ISSUE_10_…` constant in their module: flip it when the behaviour lands.

pub mod authorization_header;
pub mod challenge_renderer;
pub mod introspection_response;
pub mod mcp_body_classifier;
pub mod session_binding;
