//! Load test of `BearerAuthLayer` on loopback. Bounded in time and count; stops by itself.
//!
//! ```sh
//! scripts/load-test.sh                       # release build, defaults below
//! cargo run --release --example load_test -- --rounds 5 --seconds 2 --connections 32 --tokens 10000
//! ```
//!
//! One process, two OS threads with one tokio worker each: one serves, one drives the load, so
//! server and client each own a core of a 2-core machine. It measures:
//!
//! 1. Throughput and latency of an axum hello-world served three ways: without auth (the ceiling),
//!    behind tower-http's static `ValidateRequestHeaderLayer::bearer` (the floor of any bearer
//!    check), and behind `BearerAuthLayer` introspecting against a mock authorization server on
//!    loopback with a warm cache of `--tokens` distinct valid tokens, requests rotating over them.
//! 2. Thundering herds: 1,000 concurrent requests with one new token (the mock server answers after
//!    100 ms) must cause exactly one introspection call; 10,000 distinct new tokens at once must
//!    cause 10,000 calls, every request answered 200.
//! 3. Memory per cached principal: live heap bytes (counted by a wrapping global allocator) and
//!    resident memory before and after caching 100,000 principals.

#[path = "../benches/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use http::Request;
use serde_json::json;
use tower::ServiceExt;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_introspect::{BearerAuthLayer, CacheConfig, CachedVerifier, Introspector, TokenVerifier};

struct Options {
    seconds: u64,
    rounds: u64,
    connections: usize,
    tokens: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 2,
        rounds: 5,
        connections: 32,
        tokens: 10_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value: Option<u64> = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) => options.seconds = v.clamp(1, 120),
            ("--rounds", Some(v)) => options.rounds = v.clamp(1, 50),
            ("--connections", Some(v)) => options.connections = v.clamp(1, 1000) as usize,
            ("--tokens", Some(v)) => options.tokens = v.clamp(1, 1_000_000) as usize,
            _ => {
                eprintln!(
                    "usage: load_test [--seconds N] [--rounds N] [--connections N] [--tokens N]"
                );
                std::process::exit(2);
            }
        }
    }
    options
}

/// The mock authorization server: every token is active; `delay_ms` slows answers down.
#[derive(Clone, Default)]
struct MockAs {
    calls: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

async fn introspect(State(state): State<MockAs>, body: String) -> axum::Json<serde_json::Value> {
    state.calls.fetch_add(1, Ordering::Relaxed);
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    axum::Json(json!({
        "active": true, "sub": token, "scope": "read write", "client_id": "load",
        "aud": "http://load.test/", "iss": "http://as.test", "exp": 4_102_444_800u64,
    }))
}

async fn hello() -> &'static str {
    "hello"
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Servers {
    none: SocketAddr,
    fixed: SocketAddr,
    introspect: SocketAddr,
    router: Router,
    cache: CachedVerifier<Introspector>,
    mock: MockAs,
}

async fn start_servers() -> Servers {
    let mock = MockAs::default();
    let as_addr = serve(
        Router::new()
            .route("/introspect", post(introspect))
            .with_state(mock.clone()),
    )
    .await;
    // HTTP/2 to the authorization server: thousands of concurrent introspections share one
    // connection instead of opening one socket each.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let introspector = Introspector::builder()
        .endpoint(format!("http://{as_addr}/introspect"))
        .client_secret_basic("rs", "secret")
        .http_client(client)
        .audience("http://load.test/")
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let layer = BearerAuthLayer::introspect_with_cache(introspector, CacheConfig::default());
    let cache = layer.verifier().clone();
    let router = Router::new().route("/", get(hello)).layer(layer);
    Servers {
        none: serve(Router::new().route("/", get(hello))).await,
        // Deprecated upstream as "too basic" for real use; exactly why it is the floor here.
        #[allow(deprecated)]
        fixed: serve(
            Router::new()
                .route("/", get(hello))
                .layer(ValidateRequestHeaderLayer::bearer("valid-0")),
        )
        .await,
        introspect: serve(router.clone()).await,
        router,
        cache,
        mock,
    }
}

/// What the load generator saw for one configuration, accumulated over rounds.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    seconds: f64,
    /// Requests per second of each round, for per-round ratios.
    round_rps: Vec<f64>,
}

impl Tally {
    fn add(&mut self, (latencies, errors, seconds): (Vec<u64>, u64, f64)) {
        self.round_rps.push(latencies.len() as f64 / seconds);
        self.latencies_us.extend(latencies);
        self.errors += errors;
        self.seconds += seconds;
    }

    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds
    }

    fn percentile(&mut self, p: f64) -> u64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        self.latencies_us[((n as f64 * p) as usize).min(n - 1)]
    }
}

/// The median over rounds of `a`'s throughput divided by `b`'s in the same round.
fn median_ratio(a: &Tally, b: &Tally) -> f64 {
    let mut ratios: Vec<f64> = a
        .round_rps
        .iter()
        .zip(&b.round_rps)
        .map(|(x, y)| x / y)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Drives `connections` keep-alive connections against `addr` for `seconds`; returns the
/// latencies, the failed requests and the elapsed seconds.
async fn drive(addr: SocketAddr, options: &Options, rotate_tokens: bool) -> (Vec<u64>, u64, f64) {
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..options.connections)
        .map(|worker| {
            let tokens = options.tokens;
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let url = format!("http://{addr}/");
                let mut latencies = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                let mut n = worker;
                while Instant::now() < deadline {
                    let token = if rotate_tokens { n % tokens } else { 0 };
                    n += 7919; // a prime stride spreads workers over the tokens
                    let sent = Instant::now();
                    let ok = match client
                        .get(&url)
                        .header("authorization", format!("Bearer valid-{token}"))
                        .send()
                        .await
                    {
                        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(sent.elapsed().as_micros() as u64);
                    errors += u64::from(!ok);
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (latencies, e) = worker.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    (all, errors, started.elapsed().as_secs_f64())
}

async fn warm(servers: &Servers, options: &Options) {
    let client = reqwest::Client::new();
    let url = format!("http://{}/", servers.introspect);
    let mut pending = Vec::new();
    for token in 0..options.tokens {
        let request = client
            .get(&url)
            .header("authorization", format!("Bearer valid-{token}"))
            .send();
        pending.push(request);
        if pending.len() == 64 || token + 1 == options.tokens {
            for response in futures_util::future::join_all(pending.drain(..)).await {
                assert_eq!(response.unwrap().status(), 200);
            }
        }
    }
}

/// Awaits every request at once; how many answered 200, and how many introspection calls the
/// mock server saw since `calls_before`.
async fn settle<F, R, E>(
    requests: impl Iterator<Item = F>,
    servers: &Servers,
    calls_before: u64,
) -> (usize, u64)
where
    F: std::future::Future<Output = Result<R, E>>,
    R: HasStatus,
{
    let ok = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status_code() == 200))
        .count();
    (
        ok,
        servers.mock.calls.load(Ordering::Relaxed) - calls_before,
    )
}

/// The status of an HTTP response, from reqwest or from an in-process service.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for reqwest::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl<B> HasStatus for http::Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

async fn herds(servers: &Servers) {
    servers.mock.delay_ms.store(100, Ordering::Relaxed);

    let before = servers.mock.calls.load(Ordering::Relaxed);
    let client = reqwest::Client::new();
    let url = format!("http://{}/", servers.introspect);
    let requests = (0..1000).map(|_| {
        client
            .get(&url)
            .header("authorization", "Bearer herd-token")
            .send()
    });
    let (ok, calls) = settle(requests, servers, before).await;
    println!(
        "herd, 1 new token x 1,000 concurrent requests (HTTP): {ok}/1000 answered 200, {calls} introspection call(s)"
    );
    assert_eq!((ok, calls), (1000, 1));

    let before = servers.mock.calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let requests = (0..10_000).map(|i| {
        let request = Request::get("/")
            .header("authorization", format!("Bearer herd-{i}"))
            .body(Body::empty())
            .unwrap();
        servers.router.clone().oneshot(request)
    });
    let (ok, calls) = settle(requests, servers, before).await;
    println!(
        "herd, 10,000 new tokens at once (in-process service, HTTP/2 to the AS): {ok}/10000 answered 200, {calls} introspection calls, {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((ok, calls), (10_000, 10_000));
    servers.mock.delay_ms.store(0, Ordering::Relaxed);
}

/// Counts live heap bytes, so the memory figure is what the cache holds, not allocator slack.
struct CountingAllocator;

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn memory() {
    const ENTRIES: u64 = 100_000;
    let resident_before = resident_bytes();
    let live_before = LIVE_BYTES.load(Ordering::Relaxed);
    let cache = CachedVerifier::new(support::ParsingVerifier::default(), CacheConfig::default());
    for i in 0..ENTRIES {
        cache.verify(&format!("memory-token-{i:08}")).await.unwrap();
    }
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), ENTRIES);
    let live = LIVE_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(live_before);
    let resident = resident_bytes().saturating_sub(resident_before);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "memory: {ENTRIES} cached principals hold {:.1} MiB of heap ({} bytes per entry; target <= 1024); resident set grew {:.1} MiB (target <= 100 MiB)",
        mib(live),
        live / ENTRIES,
        mib(resident)
    );
    drop(cache);
}

fn main() {
    let options = options();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            tx.send(start_servers().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let servers = rx.recv().unwrap();
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    client_runtime.block_on(async {
        // First, while the heap holds little else, so the resident-set figure means something.
        memory().await;
        println!(
            "load test: {} rounds of {} s per configuration, {} connections, {} distinct tokens",
            options.rounds, options.seconds, options.connections, options.tokens
        );
        warm(&servers, &options).await;
        let warm_calls = servers.mock.calls.load(Ordering::Relaxed);
        println!("cache warmed: {warm_calls} introspection calls for {} tokens", options.tokens);

        // Rounds with the order rotated, so that drift of a shared machine hits every
        // configuration alike.
        let targets = [
            ("no auth (ceiling)", servers.none, false),
            ("tower-http static bearer (floor)", servers.fixed, false),
            ("BearerAuthLayer, warm cache", servers.introspect, true),
        ];
        let mut tallies: [Tally; 3] = Default::default();
        for round in 0..options.rounds as usize {
            for k in 0..targets.len() {
                let i = (round + k) % targets.len();
                let (_, addr, rotate) = targets[i];
                tallies[i].add(drive(addr, &options, rotate).await);
            }
        }
        let calls_during_load = servers.mock.calls.load(Ordering::Relaxed) - warm_calls;

        println!();
        println!("| configuration | requests | errors | req/s | p50 µs | p99 µs | median per-round ratio to no auth |");
        println!("|---|---|---|---|---|---|---|");
        for i in 0..targets.len() {
            let ratio = median_ratio(&tallies[i], &tallies[0]);
            let t = &mut tallies[i];
            let (p50, p99) = (t.percentile(0.50), t.percentile(0.99));
            println!(
                "| {} | {} | {} | {:.0} | {p50} | {p99} | {ratio:.3} |",
                targets[i].0,
                t.latencies_us.len(),
                t.errors,
                t.rps(),
            );
        }
        let [none, fixed, introspect] = &tallies;
        println!();
        println!(
            "throughput ratio BearerAuthLayer / no auth: {:.3} (median of {} rounds; target >= 0.9); / static bearer: {:.3}",
            median_ratio(introspect, none),
            options.rounds,
            median_ratio(introspect, fixed)
        );
        println!("introspection calls during the measured load: {calls_during_load}");
        let stats = servers.cache.stats();
        println!(
            "cache: {} hits, {} misses, {} introspection calls",
            stats.hits, stats.misses, stats.introspection_calls
        );
        assert_eq!(
            tallies.iter().map(|t| t.errors).sum::<u64>(),
            0,
            "requests failed"
        );
        println!();
        herds(&servers).await;
    });
}
