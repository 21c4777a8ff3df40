//! The whole story in one command: `cargo run --example full_flow`.
//!
//! Starts the reference authorization server (SQLite in a temporary directory) and the demo MCP
//! server on free loopback ports, then acts as an MCP client for alice, bob and admin: discovers
//! the authorization server from the server's 401 challenge (RFC 9728, RFC 8414), registers a client
//! (RFC 7591), logs in through the real login and consent forms with PKCE, redeems the code, and
//! calls every tool, printing a user × tool table. The same users then log in once more with no
//! registration at all: the client serves a Client ID Metadata Document over https (a throwaway
//! certificate made in-process, trusted by the provider, which fetches loopback documents in this
//! development setup) and presents its URL as `client_id`. Then it shows the verdict cache at
//! work, refresh token rotation with reuse detection, revocation pushed by the provider as signed
//! security events (OpenID Shared Signals) to two MCP server instances that each refuse the token
//! within a second with no hook called, and a restart of the provider on the same database file; then JWT access tokens checked
//! locally, and DPoP-bound tokens (RFC 9449) for an MCP server started with `--dpop required`: a
//! fresh proof per request, the same token refused as `Bearer`, a replayed proof refused. It exits
//! non-zero if anything does not behave as expected.
//!
//! Nothing to configure. To run the same MCP server against another authorization server, see the
//! `mcp_server` example.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    tower_introspect_demo::flow::run_and_verify().await?;
    Ok(())
}
