//! `CacheConfig::max_bytes` weighs what an entry really holds, measured with a counting allocator.
//!
//! Its own test binary: the global allocator counts every allocation of the process, so nothing
//! else may run while it measures (the binary holds one test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use serde_json::{Value, json};

#[path = "../benches/support/mod.rs"]
#[allow(dead_code)]
mod support;
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::introspection::IntrospectionResponse;
use tower_introspect::{Principal, TokenVerifier, VerifyError};

/// Counts the bytes currently allocated (as requested, allocator overhead aside).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Answers every token with the claims parsed from one introspection response body, as the
/// introspector does (the parse allocates the claims the cache then holds).
struct Claims(Vec<u8>);

impl TokenVerifier for Claims {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let mut claims: IntrospectionResponse = serde_json::from_slice(&self.0).unwrap();
        // Distinct principals, as distinct tokens have (a UUID-long token id).
        claims.jti = Some(format!("{token:0>36}"));
        Ok(Principal::new(claims.into()))
    }
}

/// A typical response: a handful of short claims.
fn small_claims() -> Value {
    json!({
        "active": true, "sub": "user-1234", "client_id": "mcp-client", "scope": "read write",
        "aud": "https://rs.example/mcp", "iss": "https://as.example", "token_type": "Bearer",
        "exp": 4_000_000_000u64, "iat": 1_700_000_000u64, "username": "alice",
    })
}

/// A large-claims response of the kind enterprise servers send: group and role lists, nested
/// profile objects, many tiny values (which cost far more in memory than on the wire).
fn large_claims() -> Value {
    let mut claims = small_claims();
    let groups: Vec<String> = (0..400).map(|i| format!("g{i}")).collect();
    let roles: serde_json::Map<String, Value> = (0..150)
        .map(|i| (format!("role-{i}"), json!(i % 2 == 0)))
        .collect();
    let accounts: Vec<Value> = (0..60)
        .map(|i| json!({"id": i, "name": format!("account {i}"), "tags": ["a", "b"]}))
        .collect();
    claims["groups"] = json!(groups);
    claims["realm_access"] = json!({"roles": roles});
    claims["accounts"] = json!(accounts);
    claims["picture"] = json!("p".repeat(3000));
    claims
}

/// Fills a byte-bounded cache with `entries` distinct principals parsed from `body`; returns the
/// bytes the cache really holds per entry and what it believes each entry weighs.
fn measure(runtime: &tokio::runtime::Runtime, body: &Value, entries: usize) -> (f64, f64) {
    measure_with(runtime, body, entries, false)
}

/// [`measure`], with the revocation index an event receiver makes when `indexed`.
fn measure_with(
    runtime: &tokio::runtime::Runtime,
    body: &Value,
    entries: usize,
    indexed: bool,
) -> (f64, f64) {
    let body = serde_json::to_vec(body).unwrap();
    let tokens: Vec<String> = (0..entries).map(|i| format!("token-{i:06}")).collect();
    runtime.block_on(async {
        let cache = CachedVerifier::new(Claims(body), CacheConfig::default().max_bytes(1 << 34));
        let _receiver = indexed.then(|| {
            tower_introspect::ssf::SsfReceiver::builder("https://as.example", "rs")
                .jwks(r#"{"keys": []}"#)
                .invalidates(&cache)
                .build()
                .unwrap()
        });
        // Warm up once so that lazily allocated structures are not charged to the entries.
        cache.verify("warm-up").await.unwrap();
        cache.invalidate_all();
        cache.run_pending_tasks();
        let before = live_bytes();
        for token in &tokens {
            cache.verify(token).await.unwrap();
        }
        cache.run_pending_tasks();
        let held = live_bytes() - before;
        assert_eq!(cache.entry_count(), entries as u64);
        let weight = cache.weighted_size();
        drop(cache);
        (held as f64 / entries as f64, weight as f64 / entries as f64)
    })
}

#[test]
fn max_bytes_weighs_what_an_entry_really_holds() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A cached principal of the realistic ~330-byte response costs at most 512 bytes of heap,
    // key and cache bookkeeping included (its shared claims are interned).
    let realistic: Value = serde_json::from_str(support::ACTIVE_BODY).unwrap();
    let (held, _) = measure(&runtime, &realistic, 10_000);
    eprintln!("realistic response: {held:.0} bytes held per entry");
    assert!(held <= 512.0, "a cached principal holds {held:.0} bytes");

    for (shape, body, entries, indexed) in [
        ("large claims", large_claims(), 200, false),
        ("small claims", small_claims(), 2000, false),
        // With an SSF receiver acting on the cache: its index by subject and token id.
        ("small claims, indexed", small_claims(), 2000, true),
        ("realistic, indexed", realistic.clone(), 2000, true),
    ] {
        let (held, weight) = measure_with(&runtime, &body, entries, indexed);
        let ratio = weight / held;
        eprintln!("{shape}: {held:.0} bytes held per entry, weighed {weight:.0} (×{ratio:.2})");
        assert!(
            (0.75..=1.33).contains(&ratio),
            "{shape}: an entry holds {held:.0} bytes but weighs {weight:.0}"
        );
    }
}
