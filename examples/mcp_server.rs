//! An MCP resource server (rmcp streamable HTTP on axum) protected by `tower-introspect`.
//!
//! Tools: `public_info` (no token), `get_user_profile` and `list_available_resources` (any valid
//! token), `read_data` (`read`), `write_data` (`write`), `admin_operation` (`admin`). An
//! under-scoped call gets a 403 `insufficient_scope` step-up challenge; a call without a token gets
//! the 401 challenge whose `resource_metadata` lets MCP clients discover the authorization server
//! (RFC 9728 → RFC 8414 → dynamic registration → authorize with PKCE → token).
//!
//! Against the reference provider, in one terminal each:
//!
//! ```sh
//! cargo run -p oauth-provider -- --demo --storage memory      # http://127.0.0.1:9000
//! cargo run --example mcp_server                              # http://127.0.0.1:8080/mcp
//! ```
//!
//! Or with a provider started in-process: `cargo run --example mcp_server -- --with-provider`.
//!
//! Against another RFC 7662 authorization server (Keycloak, Hydra, ZITADEL, …):
//!
//! ```sh
//! cargo run --example mcp_server -- \
//!     --issuer https://auth.example.com/realms/demo \
//!     --introspection-url https://auth.example.com/realms/demo/protocol/openid-connect/token/introspect \
//!     --client-id mcp-resource-server --client-secret '…' \
//!     --resource-url https://mcp.example.com/mcp --bind 0.0.0.0:8080
//! ```
//!
//! Against an issuer of JWT access tokens (RFC 9068: Entra ID, Auth0, node-oidc-provider, or
//! the reference provider with `--access-token-format jwt`), no client credentials are needed:
//! the keys are found through the issuer's metadata (`jwks_uri`).
//!
//! ```sh
//! cargo run --example mcp_server -- --issuer https://auth.example.com --tokens jwt
//! ```
//!
//! `--tokens auto` (the default) verifies JWTs locally where the issuer publishes `jwks_uri` and
//! introspects opaque tokens where client credentials are given; `--tokens introspect`
//! introspects every token; `--introspect-jwts` also introspects JWTs after verifying them, so a
//! revoked JWT is refused at once.
//!
//! `--dpop allowed` (the default) accepts DPoP-bound tokens (RFC 9449: `Authorization: DPoP`
//! with a fresh `DPoP` proof per request) beside bearer tokens; `--dpop required` accepts only
//! them; `--dpop disabled` only bearer tokens. The protected resource metadata advertises it.
//!
//! `--ssf` subscribes the server to the issuer's security events (OpenID Shared Signals 1.0): at
//! start it creates a push stream to `http://<bind address>/ssf/events` as the client
//! `--ssf-client-id` (scope `ssf`; the demo provider's `ssf-receiver`), replacing its stream of an
//! earlier run, and a revoked token, session or account is then refused within milliseconds
//! instead of after `--cache-max-ttl`. A separately started provider must allow http push URLs on
//! loopback (`--ssf-allow-http-loopback`).
//!
//! Every flag has an environment fallback (`MCP_BIND`, `MCP_RESOURCE_URL`, `OAUTH_ISSUER`,
//! `OAUTH_INTROSPECTION_URL`, `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET`, `MCP_TOKENS`,
//! `OAUTH_JWKS_URI`, `MCP_INTROSPECT_JWTS`, `MCP_DPOP`, `MCP_SSF`, `MCP_SSF_CLIENT_ID`,
//! `MCP_SSF_CLIENT_SECRET`, `HEADER_READ_TIMEOUT_SECS`,
//! `IDLE_TIMEOUT_SECS`, `MAX_CONNECTIONS`, `MCP_METRICS_BIND`). Without
//! `--introspection-url` the endpoint is discovered from the issuer's RFC 8414 metadata. The
//! server checks that tokens were issued by `--issuer` for `--resource-url` (the audience).
//!
//! Connections are served with `TCP_NODELAY`, a header-read timeout (10 s, also the keep-alive
//! limit), an idle timeout (60 s) and at most 1,024 at once (`--header-read-timeout-secs`,
//! `--idle-timeout-secs`, `--max-connections`); see `tower_introspect_demo::serve`.
//!
//! With `--metrics-bind 127.0.0.1:9464`, Prometheus metrics (verification outcomes, cache
//! results, introspection calls and latency) are served at `http://127.0.0.1:9464/metrics`.

use std::time::Duration;

use clap::Parser;
use tower_introspect::cache::CacheConfig;
use tower_introspect_demo::mcp_server::{AuthServerArgs, McpServer};
use tower_introspect_demo::metrics_endpoint::MetricsEndpoint;
use tower_introspect_demo::serve::ServeArgs;

#[derive(Parser, Debug)]
#[command(about = "Demo MCP server protected by tower-introspect")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MCP_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Public URL of the MCP endpoint (the resource identifier); default `http://<bind>/mcp`.
    #[arg(long, env = "MCP_RESOURCE_URL")]
    resource_url: Option<String>,
    #[command(flatten)]
    auth: AuthServerArgs,
    #[command(flatten)]
    serve: ServeArgs,
    /// Start the reference provider (demo accounts, in memory) in this process and use it.
    #[arg(long)]
    with_provider: bool,
    /// Longest reuse of a positive cache entry, in seconds.
    #[arg(long, default_value_t = 300)]
    cache_max_ttl: u64,
    /// Serve Prometheus metrics at `http://<address>/metrics` on this address (a listener of its
    /// own: bind it to loopback or a private network). Off when absent.
    #[arg(long, env = "MCP_METRICS_BIND")]
    metrics_bind: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_introspect=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    // Before anything records: what is recorded earlier is lost.
    let _metrics = match &args.metrics_bind {
        Some(bind) => {
            let endpoint =
                MetricsEndpoint::start(tokio::net::TcpListener::bind(bind).await?).await?;
            println!("metrics at {}", endpoint.url);
            Some(endpoint)
        }
        None => None,
    };
    let resource = args
        .resource_url
        .clone()
        .unwrap_or(format!("http://{}/mcp", listener.local_addr()?));
    let provider = if args.with_provider {
        // The provider issues tokens only for resources it knows: this server's URL. It pushes
        // security events (`--ssf`) to this server on loopback, over http.
        let mut config = oauth_provider::Config::demo().with_resource(&resource);
        config.ssf.allow_http_loopback = true;
        let server = oauth_provider::Server::bind(config, "127.0.0.1:0".parse()?).await?;
        args.auth.issuer = server.issuer().to_owned();
        println!("reference provider (demo accounts) at {}", server.issuer());
        Some(server)
    } else {
        None
    };

    let auth = args
        .auth
        .settings(CacheConfig::default().max_ttl(Duration::from_secs(args.cache_max_ttl)));
    let dpop = args.auth.dpop_options()?;
    let nonces = if dpop.nonces.is_some() {
        ", server nonces"
    } else {
        ""
    };
    let server =
        McpServer::start_with_dpop(listener, Some(resource), &auth, args.serve.options(), dpop)
            .await?;
    println!(
        "MCP server at {} (authorization server {}, DPoP {:?}{nonces})",
        server.url, auth.issuer, args.auth.dpop
    );
    tokio::select! {
        result = server.wait() => result?,
        _ = tokio::signal::ctrl_c() => println!("shutting down"),
    }
    if let Some(provider) = provider {
        provider.shutdown().await?;
    }
    Ok(())
}
