//! The demo behind `tower-introspect`'s examples: an MCP resource server protected by the
//! library, and the OAuth client that drives the full flow against the reference provider.
//!
//! The root package's examples (`mcp_server`, `full_flow`) are thin `main`s over this crate, and
//! the full-flow test calls the very same code.

pub mod confirmation;
pub mod flow;
pub mod mcp_client;
pub mod mcp_server;
pub mod metadata_document;
pub mod metrics_endpoint;
pub mod oauth_client;
pub mod serve;
pub mod ssf_stream;
