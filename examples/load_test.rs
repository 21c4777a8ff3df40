//! Memory and thundering-herd measurements of `BearerAuthLayer`. Bounded in time and count; stops
//! by itself. Throughput is measured by `scripts/load-test.sh` with a saturating generator (wrk)
//! against `examples/load_server.rs`; this example measures what wrk cannot:
//!
//! ```sh
//! cargo run --release --example load_test [-- --no-memory]
//! ```
//!
//! 1. Memory per cached principal: live heap bytes (counted by a wrapping global allocator) and
//!    resident memory before and after caching 100,000 principals built from a realistic
//!    330-byte introspection response.
//! 2. A herd on one new token: 1,000 concurrent HTTP requests while the mock authorization server
//!    answers after 100 ms must cause exactly one introspection call.
//! 3. The cold path: 10,000 distinct new tokens at once against a mock authorization server that
//!    answers after 2 ms must each cause exactly one introspection call; the time to answer all of
//!    them is printed.
//!
//! The mock authorization server and the HTTP server run on one OS thread (one tokio worker), the
//! requests and the in-process service on another, so each owns a core of a 2-core machine.

#[path = "../benches/support/mod.rs"]
#[allow(dead_code)]
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
use tower::ServiceExt;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::{BearerAuthLayer, TokenVerifier};

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
    axum::Json(serde_json::json!({
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
    /// `BearerAuthLayer` over HTTP, on the server thread.
    introspect: SocketAddr,
    /// The same router, for in-process requests.
    router: Router,
    mock: MockAs,
}

async fn start_servers() -> (SocketAddr, MockAs) {
    let mock = MockAs::default();
    let as_addr = serve(
        Router::new()
            .route("/introspect", post(introspect))
            .with_state(mock.clone()),
    )
    .await;
    (as_addr, mock)
}

/// The layer under test: the default cache over an introspector speaking HTTP/2 to the mock
/// authorization server, so thousands of concurrent introspections share one connection.
fn router(as_addr: SocketAddr) -> Router {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let introspector = tower_introspect::Introspector::builder()
        .endpoint(format!("http://{as_addr}/introspect"))
        .client_secret_basic("rs", "secret")
        .http_client(client)
        .audience("http://load.test/")
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let layer = BearerAuthLayer::introspect_with_cache(introspector, CacheConfig::default());
    Router::new().route("/", get(hello)).layer(layer)
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

    servers.mock.delay_ms.store(2, Ordering::Relaxed);
    let before = servers.mock.calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let requests = (0..10_000).map(|i| {
        let request = Request::get("/")
            .header("authorization", format!("Bearer cold-{i}"))
            .body(Body::empty())
            .unwrap();
        servers.router.clone().oneshot(request)
    });
    let (ok, calls) = settle(requests, servers, before).await;
    println!(
        "cold path, 10,000 new tokens at once, authorization server answering after 2 ms (in-process service, HTTP/2 to the AS): {ok}/10000 answered 200, {calls} introspection calls, {:.3} s (target <= 0.5 s)",
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
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), ENTRIES);
    let live = LIVE_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(live_before);
    let resident = resident_bytes().saturating_sub(resident_before);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "memory: {ENTRIES} cached principals hold {:.1} MiB of heap ({} bytes per entry; target <= 512); resident set grew {:.1} MiB (target <= 64 MiB)",
        mib(live),
        live / ENTRIES,
        mib(resident)
    );
    drop(cache);
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (as_addr, mock) = start_servers().await;
            let introspect = serve(router(as_addr)).await;
            tx.send((as_addr, introspect, mock)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (as_addr, introspect, mock) = rx.recv().unwrap();
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client_runtime.block_on(async {
        // First, while the heap holds little else, so the resident-set figure means something.
        if !std::env::args().any(|a| a == "--no-memory") {
            memory().await;
        }
        let servers = Servers {
            introspect,
            router: router(as_addr),
            mock,
        };
        herds(&servers).await;
    });
}
