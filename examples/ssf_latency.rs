//! How long a revocation takes to reach resource servers through Shared Signals: from the
//! `/revoke` call at the reference provider to the moment two MCP servers (each with its own
//! verdict cache and its own push stream) both refuse the token.
//!
//! ```text
//! cargo run --release --example ssf_latency -- --revocations 100
//! ```
//!
//! Each round logs alice in (authorization code with PKCE through the login form), sends one
//! request with her new token to each server (so both cache the verdict), revokes it, and probes
//! both servers every `--probe-interval-ms` until each answers `401 invalid_token`. Everything
//! runs on loopback in this process: the provider on SQLite in a temporary directory, its push
//! deliverer, both servers and the probes. Prints the median, p99 and maximum of the time until
//! both refused, and of each server's own delay.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use clap::Parser;
use oauth_provider::{
    Config, DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET, Server, StorageConfig,
};
use tokio::net::TcpListener;
use tower_introspect_demo::mcp_server::{AuthSettings, McpServer};
use tower_introspect_demo::oauth_client;
use tower_introspect_demo::ssf_stream::{self, SsfClient};

#[derive(Parser, Debug)]
#[command(about = "Revocation latency through Shared Signals, to two MCP servers")]
struct Args {
    /// Revocations to measure.
    #[arg(long, default_value_t = 100)]
    revocations: usize,
    /// Wait between two probes of a server, milliseconds (the figures' resolution).
    #[arg(long, default_value_t = 1)]
    probe_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let mcp_listener = TcpListener::bind("127.0.0.1:0").await?;
    let resource = format!("http://{}/mcp", mcp_listener.local_addr()?);
    let mut config = Config::demo()
        .with_storage(StorageConfig::Sqlite {
            path: dir.path().join("oauth.db"),
        })
        .with_resource(&resource);
    config.ssf.allow_http_loopback = true;
    let provider = Server::start(config, TcpListener::bind("127.0.0.1:0").await?).await?;
    let auth = AuthSettings::introspection(
        provider.issuer(),
        oauth_provider::DEMO_RESOURCE_SERVER_ID,
        oauth_provider::DEMO_RESOURCE_SERVER_SECRET,
    )
    .with_ssf(SsfClient {
        client_id: DEMO_SSF_RECEIVER_ID.to_owned(),
        client_secret: DEMO_SSF_RECEIVER_SECRET.to_owned(),
    });
    let servers = [
        McpServer::start(mcp_listener, &auth).await?,
        McpServer::start_at(
            TcpListener::bind("127.0.0.1:0").await?,
            Some(resource.clone()),
            &auth,
        )
        .await?,
    ];
    let discovery = oauth_client::discover(&resource).await?;
    let client_id = oauth_client::register(&discovery, "ssf latency").await?;
    let http = ssf_stream::http_client()?;
    let interval = Duration::from_millis(args.probe_interval_ms);

    let mut both = Vec::with_capacity(args.revocations);
    let mut each = Vec::with_capacity(args.revocations * 2);
    for round in 0..args.revocations {
        let tokens =
            oauth_client::authorize(&discovery, &client_id, "alice", "password123", "read").await?;
        let token = tokens.access_token;
        for server in &servers {
            ensure!(
                !ssf_stream::refuses(&http, &server.endpoint, &token).await?,
                "round {round}: a fresh token is refused"
            );
        }
        let started = tokio::time::Instant::now();
        oauth_client::revoke(&discovery, &client_id, &token).await?;
        let (a, b) = tokio::join!(
            ssf_stream::refused_after(
                &http,
                &servers[0].endpoint,
                &token,
                started,
                interval,
                Duration::from_secs(30)
            ),
            ssf_stream::refused_after(
                &http,
                &servers[1].endpoint,
                &token,
                started,
                interval,
                Duration::from_secs(30)
            ),
        );
        let a = a?.with_context(|| format!("round {round}: server A still accepts the token"))?;
        let b = b?.with_context(|| format!("round {round}: server B still accepts the token"))?;
        each.extend([a, b]);
        both.push(a.max(b));
    }
    let accepted: Vec<u64> = servers
        .iter()
        .map(|s| s.ssf.as_ref().map_or(0, |r| r.stats().accepted))
        .collect();
    println!(
        "{} revocations, probes every {} ms; security events accepted per server: {accepted:?}",
        args.revocations, args.probe_interval_ms
    );
    println!("revoke call → both servers refuse: {}", summary(&mut both));
    println!("revoke call → one server refuses:  {}", summary(&mut each));
    provider.shutdown().await?;
    Ok(())
}

/// Median, p99 and maximum, in milliseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    format!(
        "median {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    )
}
