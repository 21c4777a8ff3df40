//! The processes of the saturating load test (`scripts/load-test.sh`): a server and a mock
//! authorization server, each meant to be pinned to its own core with `taskset`.
//!
//! ```sh
//! load_server mock-as --port 18100 --tokens 1000
//! load_server serve --as http://127.0.0.1:18100/introspect --port 18000
//! ```
//!
//! `serve` runs ONE tokio worker (a current-thread runtime) and four axum hello-world servers, one
//! per configuration, on consecutive ports from `--port`:
//!
//! | port | configuration |
//! |---|---|
//! | `port` | no auth (the ceiling) |
//! | `port + 1` | tower-http's static `ValidateRequestHeaderLayer::bearer` (the floor of any bearer check) |
//! | `port + 2` | `BearerAuthLayer` with its cache (warm once every token was seen) |
//! | `port + 3` | `BearerAuthLayer` over the bare introspector: one introspection per request |
//! | `port + 4` | `BearerAuthLayer` with a cached `JwtIssuer`: JWT access tokens (ES256), warm once every token was seen |
//! | `port + 5` | `BearerAuthLayer` over the bare `JwtIssuer`: the signature verified on every request (what uncached JWT middleware does) |
//! | `port + 6` | `GET /stats` and `GET /jwt-stats`: the caches' counters, to check that the warm loads made no call; `GET /jwts`: the load's JWTs, one per line; with `--metrics`, `GET /metrics` too |
//! | `port + 7` | `BearerAuthLayer` with its cache and DPoP (`Required`): one DPoP-bound token, warm, and a fresh ES256 proof on every request, checked and recorded by the layer |
//!
//! `serve --dpop-proofs FILE --dpop-count N` writes, before it listens, N distinct proofs for
//! `GET http://127.0.0.1:<port + 7>/` and the bound token, one request per line (`token proof`),
//! for the generator to send each once: a proof cannot be reused, and a generator that signed
//! them under load would measure itself.
//!
//! `serve --metrics` installs a Prometheus recorder (`metrics-exporter-prometheus`, the one the demo
//! serves) before anything records, so that every configuration pays what feature `metrics` costs
//! in production; `scripts/load-test.sh --metrics` runs the rounds that way.
//!
//! The JWTs are [`support::jwt`]`(0..tokens)`, signed at start with the test key of
//! `tests/fixtures/jwt/`, so the generator sends real ES256 tokens.
//!
//! Only one configuration is loaded at a time, so the process's CPU time over a round is that
//! configuration's. `mock-as` answers every token of [`token`]`(0..tokens)` as active with a
//! realistic ~330-byte response, any other as inactive; `GET /calls` returns its call count.
//! Both run until killed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::{BearerAuthLayer, Introspector};

#[path = "../benches/support/mod.rs"]
#[allow(dead_code)]
mod support;

/// The `i`th valid token of the load: 43 characters, like a 256-bit base64url token.
fn token(i: u64) -> String {
    format!("load-token-{i:032}")
}

/// The number `i` of a token that [`token`] minted; `None` for any other token.
fn token_number(token: &str) -> Option<u64> {
    let digits = token.strip_prefix("load-token-")?;
    (digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn usage() -> ! {
    eprintln!(
        "usage: load_server mock-as --port P [--tokens N] [--delay-ms D]\n       \
         load_server serve --as URL --port P [--tokens N] [--metrics] [--dpop-proofs FILE --dpop-count N]"
    );
    std::process::exit(2)
}

/// `--name value` pairs after the subcommand.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()))
}

fn number(args: &[String], name: &str, default: u64) -> u64 {
    flag(args, name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("mock-as") => runtime.block_on(mock_as(
            number(&args, "--port", 18100) as u16,
            number(&args, "--tokens", 1000),
            number(&args, "--delay-ms", 0),
        )),
        Some("serve") => runtime.block_on(serve(
            flag(&args, "--as").unwrap_or_else(|| usage()),
            number(&args, "--port", 18000) as u16,
            number(&args, "--tokens", 1000),
            args.iter().any(|a| a == "--metrics"),
            flag(&args, "--dpop-proofs").map(|file| (file, number(&args, "--dpop-count", 100_000))),
        )),
        _ => usage(),
    }
}

#[derive(Clone)]
struct MockAs {
    calls: Arc<AtomicU64>,
    tokens: u64,
    delay: Duration,
}

async fn mock_as(port: u16, tokens: u64, delay_ms: u64) {
    let state = MockAs {
        calls: Arc::default(),
        tokens,
        delay: Duration::from_millis(delay_ms),
    };
    let app = Router::new()
        .route("/introspect", post(introspect))
        .route("/calls", get(calls))
        .with_state(state);
    listen(port, app).await;
    std::future::pending::<()>().await;
}

async fn calls(State(state): State<MockAs>) -> String {
    state.calls.load(Ordering::Relaxed).to_string()
}

async fn introspect(
    State(state): State<MockAs>,
    body: String,
) -> ([(http::HeaderName, &'static str); 1], String) {
    state.calls.fetch_add(1, Ordering::Relaxed);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let json = match token_number(&token) {
        Some(i) if i < state.tokens => active_response(i),
        _ => r#"{"active":false}"#.to_owned(),
    };
    ([(http::header::CONTENT_TYPE, "application/json")], json)
}

/// A realistic active introspection response (~330 bytes): UUID-like subject and jti, two scopes,
/// one audience, as Keycloak-like servers send.
fn active_response(i: u64) -> String {
    format!(
        r#"{{"active":true,"scope":"read write","client_id":"mcp-client","username":"user{i}","token_type":"Bearer","exp":4102444800,"iat":1764000000,"sub":"3c9d5f9e-8a4b-4f3e-9d2a-{i:012}","aud":"http://load.test/","iss":"http://as.test","jti":"9f1c2d3e-4b5a-6978-8a9b-{i:012}"}}"#
    )
}

async fn hello() -> &'static str {
    "hello"
}

async fn listen(port: u16, app: Router) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// The DPoP configuration: a cached verifier answering for one token bound to a fresh key, with
/// `count` proofs of that key written to `file` first.
async fn serve_dpop(port: u16, file: &str, count: u64) {
    use std::io::Write;
    use tower_introspect::dpop::{Dpop, DpopKey, DpopPolicy, ProofChecker};
    use tower_introspect::jwt::JwsAlgorithm;

    const TOKEN: &str = "dpop-bound-token";
    let key = DpopKey::generate(JwsAlgorithm::ES256).unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let url = format!("{origin}/");
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    for _ in 0..count {
        writeln!(out, "{TOKEN} {}", key.proof("GET", &url, Some(TOKEN), None)).unwrap();
    }
    out.flush().unwrap();
    // Room for every proof of a run (the default store sustains ~1,600 new proofs/s).
    let checker = ProofChecker::builder()
        .replay_capacity(usize::try_from(count).unwrap().max(1))
        .build()
        .unwrap();
    let dpop = Dpop::builder()
        .origin(origin)
        .policy(DpopPolicy::Required)
        .checker(checker)
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(CachedVerifier::new(
        support::BoundVerifier::new(key.thumbprint()),
        CacheConfig::default(),
    ))
    .dpop(dpop);
    listen(port, Router::new().route("/", get(hello)).layer(layer)).await;
}

async fn serve(
    endpoint: String,
    port: u16,
    tokens: u64,
    with_metrics: bool,
    dpop: Option<(String, u64)>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some((file, count)) = dpop {
        serve_dpop(port + 7, &file, count).await;
    }
    let recorder = with_metrics.then(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder is installed")
    });
    let introspector = Introspector::builder()
        .endpoint(endpoint)
        .client_secret_basic("rs", "secret")
        .audience("http://load.test/")
        .build()
        .unwrap();
    let cached =
        BearerAuthLayer::introspect_with_cache(introspector.clone(), CacheConfig::default());
    let cache = cached.verifier().clone();
    let hello = || Router::new().route("/", get(hello));
    listen(port, hello()).await;
    // Deprecated upstream as "too basic" for real use; exactly why it is the floor here.
    #[allow(deprecated)]
    let fixed = ValidateRequestHeaderLayer::bearer(&token(0));
    listen(port + 1, hello().layer(fixed)).await;
    listen(port + 2, hello().layer(cached)).await;
    listen(port + 3, hello().layer(BearerAuthLayer::new(introspector))).await;
    let jwt_cached = BearerAuthLayer::new(CachedVerifier::new(
        support::jwt_issuer(),
        CacheConfig::default(),
    ));
    let jwt_cache = jwt_cached.verifier().clone();
    listen(port + 4, hello().layer(jwt_cached)).await;
    listen(
        port + 5,
        hello().layer(BearerAuthLayer::new(support::jwt_issuer())),
    )
    .await;
    let jwts: String = (0..tokens).map(|i| support::jwt(i) + "\n").collect();
    let stats = Router::new()
        .route("/jwts", get(move || async move { jwts }))
        .route(
            "/jwt-stats",
            get(move || {
                let stats = jwt_cache.stats();
                async move {
                    format!(
                        "hits={} negative_hits={} misses={} verifications={}",
                        stats.hits, stats.negative_hits, stats.misses, stats.introspection_calls
                    )
                }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let stats = cache.stats();
                async move {
                    format!(
                        "hits={} negative_hits={} misses={} introspection_calls={} server_errors={}",
                        stats.hits,
                        stats.negative_hits,
                        stats.misses,
                        stats.introspection_calls,
                        stats.server_errors
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let scrape = recorder.as_ref().map_or_else(
                    || "metrics off (serve without --metrics)\n".to_owned(),
                    |handle| handle.render(),
                );
                async move { scrape }
            }),
        );
    listen(port + 6, stats).await;
    println!("serving on 127.0.0.1:{port}..{}", port + 7);
    std::future::pending::<()>().await;
}
