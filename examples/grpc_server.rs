//! A tonic gRPC server behind `BearerAuthLayer`, with scopes per method.
//!
//! The service is the standard gRPC health service (`tonic-health`, no protoc needed). Its two
//! methods require different scopes through `PathScopeLayer`: `Check` needs `read`, `Watch` needs
//! `admin`. Rejections reach gRPC clients as status codes: `UNAUTHENTICATED` (no or bad token),
//! `PERMISSION_DENIED` (missing scope), `UNAVAILABLE` (authorization server down).
//!
//! See it work, with a reference provider started in-process and a client making each call:
//!
//! ```sh
//! cargo run --example grpc_server -- --self-test
//! ```
//!
//! Serve against the reference provider, which issues tokens only for resources it knows
//! (`cargo run -p oauth-provider -- --demo --resource http://127.0.0.1:50051`):
//!
//! ```sh
//! cargo run --example grpc_server                    # 127.0.0.1:50051
//! ```
//!
//! Against another RFC 7662 authorization server:
//!
//! ```sh
//! cargo run --example grpc_server -- --issuer https://auth.example.com \
//!     --introspection-url https://auth.example.com/oauth2/introspect \
//!     --client-id grpc-api --client-secret '…' --resource https://grpc.example.com
//! ```
//!
//! Flags fall back to `GRPC_BIND`, `GRPC_RESOURCE`, `OAUTH_ISSUER`, `OAUTH_INTROSPECTION_URL`,
//! `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET`, `HEADER_READ_TIMEOUT_SECS`, `IDLE_TIMEOUT_SECS`,
//! `MAX_CONNECTIONS`, `MCP_DPOP` (`--dpop disabled|allowed|required`, default `allowed`: DPoP-bound
//! tokens, RFC 9449, checked against the resource's origin), `MCP_DPOP_NONCE_SECRET`
//! (`--dpop-nonce-secret`: server nonces). Tokens must carry the resource as audience.
//!
//! The server speaks HTTP/2 (gRPC) through `tower_introspect_demo::serve`: `TCP_NODELAY`, a bound
//! on concurrent connections (1,024), and connections silent for 60 s closed (an idle gRPC
//! channel reconnects by itself).

use std::net::SocketAddr;

use anyhow::{Context as _, ensure};
use clap::Parser;
use tonic::Code;
use tonic::service::Routes;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::{BearerAuthLayer, PathScopeLayer};
use tower_introspect_demo::mcp_server::AuthServerArgs;
use tower_introspect_demo::serve::{self, Protocol, ServeArgs};
use tower_layer::Layer;

#[derive(Parser, Debug)]
#[command(about = "gRPC health service protected by tower-introspect")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "GRPC_BIND", default_value = "127.0.0.1:50051")]
    bind: String,
    /// Resource identifier tokens must be issued for (`aud`); default `http://<bind>`.
    #[arg(long, env = "GRPC_RESOURCE")]
    resource: Option<String>,
    #[command(flatten)]
    auth: AuthServerArgs,
    #[command(flatten)]
    serve: ServeArgs,
    /// Start a reference provider in-process, call the server as a client, print the codes, exit.
    #[arg(long)]
    self_test: bool,
}

/// Serves the health service on `listener`, protected as described in the module docs; runs
/// until its task is dropped.
async fn serve(listener: tokio::net::TcpListener, args: &Args) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let resource = args
        .resource
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let verifier = args
        .auth
        .settings(CacheConfig::default())
        .verifier(&resource)
        .await?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let per_method = PathScopeLayer::builder()
        .path("/grpc.health.v1.Health/Check", ["read"])
        .path("/grpc.health.v1.Health/Watch", ["admin"])
        .default_scopes(["admin"])
        .build()?;
    println!(
        "gRPC health service on {addr} (resource {resource}, issuer {})",
        args.auth.issuer
    );
    // `--dpop`: proofs' `htu` are checked against the resource's origin and the request path.
    let service = BearerAuthLayer::new(CachedVerifier::new(verifier, CacheConfig::default()))
        .dpop(args.auth.dpop_options()?.settings(&resource)?)
        .layer(Routes::new(per_method.layer(health)));
    serve::serve(
        listener,
        service,
        args.serve.options().protocol(Protocol::Http2),
    )
    .await;
    Ok(())
}

async fn check(addr: SocketAddr, token: Option<&str>, watch: bool) -> anyhow::Result<Code> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let status = if watch {
        client.watch(request).await.map(|_| ())
    } else {
        client.check(request).await.map(|_| ())
    };
    Ok(status.err().map_or(Code::Ok, |s| s.code()))
}

/// A `read` token for `resource` by the client-credentials grant of the demo client.
async fn read_token(issuer: &str, resource: &str) -> anyhow::Result<String> {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(
            oauth_provider::DEMO_RESOURCE_SERVER_ID,
            Some(oauth_provider::DEMO_RESOURCE_SERVER_SECRET),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("resource", resource),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(response["access_token"]
        .as_str()
        .with_context(|| format!("no access token in {response}"))?
        .to_owned())
}

async fn self_test(mut args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let resource = format!("http://{addr}");
    // The provider issues tokens only for resources it knows: this server's URL.
    let config = oauth_provider::Config::demo().with_resource(&resource);
    let provider = oauth_provider::Server::bind(config, "127.0.0.1:0".parse()?).await?;
    args.auth.issuer = provider.issuer().to_owned();
    tokio::spawn(async move {
        if let Err(error) = serve(listener, &args).await {
            eprintln!("server failed: {error}");
        }
    });
    let token = read_token(provider.issuer(), &resource).await?;
    let cases = [
        ("Check, no token", None, false, Code::Unauthenticated),
        (
            "Check, garbage token",
            Some("not-a-token"),
            false,
            Code::Unauthenticated,
        ),
        (
            "Check, token with scope read",
            Some(token.as_str()),
            false,
            Code::Ok,
        ),
        (
            "Watch, token with scope read (needs admin)",
            Some(token.as_str()),
            true,
            Code::PermissionDenied,
        ),
    ];
    let mut failed = 0;
    for (name, token, watch, expected) in cases {
        let code = check(addr, token, watch).await?;
        failed += usize::from(code != expected);
        println!("{name:<45} -> {code:?}");
    }
    provider.shutdown().await?;
    let code = check(addr, Some("unseen-token"), false).await?;
    failed += usize::from(code != Code::Unavailable);
    println!("{:<45} -> {code:?}", "Check, authorization server down");
    ensure!(
        failed == 0,
        "{failed} call(s) did not get the expected code"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.self_test {
        return self_test(args).await;
    }
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    serve(listener, &args).await
}
