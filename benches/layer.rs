//! What the layers cost per request. Run: `cargo bench --bench layer`.
//!
//! - `header/*`, `cache_key/*`, `scopes/*`: the pieces of the hot path.
//! - `request/*`: one request through a service with and without `BearerAuthLayer` (warm cache);
//!   the difference is the layer's added cost.
//! - `miss/*`: a cache miss with an in-process verifier that parses and validates a real
//!   introspection response body: the cost of a miss excluding the network.
//! - `require_scope/*`: one request with and without `RequireScopeLayer`.
//! - `request_by_token_length/*`: the warm path for a JWT access token and for an introspected
//!   token of the same length (a JWT is ~600 bytes, an opaque token ~40: hashing and checking
//!   the header scale with the length, whichever verifier vouched for the token).
//! - `miss/jwt_es256_verify`: a JWT verified locally (parse, ES256 signature, claims), no cache:
//!   what a JWT cache miss costs, and what every request costs where nothing is cached.
//! - `dpop/*`: DPoP. `request/dpop_<alg>_warm_cache` is one request with `Authorization: DPoP`
//!   and a fresh proof through the layer whose verdict cache already holds the token (the proof
//!   is checked and recorded on every request): compare with `request/bearer_layer_warm_cache`.
//!   `dpop/check_and_record_<alg>` is the proof check alone.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, Response};
use support::ParsingVerifier;
use tower::{Service, ServiceExt, service_fn};
use tower_introspect::bench_support::{bearer_token, token_key};
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::{BearerAuthLayer, Principal, RequireScopeLayer, Scopes, TokenVerifier};
use tower_layer::Layer;

const TOKEN: &str =
    "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJSUzI1NiJ9.c2FtcGxlLWFjY2Vzcy10b2tlbi1wYXlsb2Fk.c2lnbmF0dXJl";

fn verifier() -> CachedVerifier<ParsingVerifier> {
    CachedVerifier::new(ParsingVerifier::default(), CacheConfig::default())
}

fn request(token: &str) -> Request<()> {
    Request::get("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

async fn ok(_request: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

fn pieces(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    c.bench_function("header/parse_bearer", |b| {
        b.iter(|| bearer_token(black_box(&headers)))
    });
    c.bench_function("cache_key/sha256_100_bytes", |b| {
        b.iter(|| token_key(black_box(TOKEN)))
    });
    let granted = Scopes::parse("read write profile email offline_access");
    c.bench_function("scopes/contains_all_2_of_5", |b| {
        b.iter(|| black_box(&granted).contains_all(black_box(["read", "write"])))
    });
    c.bench_function("response/parse_330_bytes", |b| {
        b.iter(|| {
            serde_json::from_str::<tower_introspect::introspection::IntrospectionResponse>(
                black_box(support::ACTIVE_BODY),
            )
            .unwrap()
        })
    });
    c.bench_function("scopes/parse_5", |b| {
        b.iter(|| Scopes::parse(black_box("read write profile email offline_access")))
    });
}

fn requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(verifier());
    let mut protected = layer.layer(service_fn(ok));
    let mut bare = service_fn(ok);
    // Warm the cache.
    runtime.block_on(async {
        let response = protected
            .ready()
            .await
            .unwrap()
            .call(request(TOKEN))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });

    let mut group = c.benchmark_group("request");
    group.bench_function("without_layer", |b| {
        b.to_async(&runtime).iter_batched(
            || request(TOKEN),
            |req| {
                let fut = bare.call(req);
                async move { fut.await.unwrap() }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The warm path, without a recorder and with the one the demo serves (the cost of `metrics`).
    for (name, record) in [
        ("bearer_layer_warm_cache", false),
        ("bearer_layer_warm_cache_prometheus_metrics", true),
    ] {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let recording = record.then(|| metrics::set_default_local_recorder(&recorder));
        // Criterion skips benches a filter leaves out; the check below is for a run that ran.
        let mut ran = false;
        group.bench_function(name, |b| {
            ran = true;
            b.to_async(&runtime).iter_batched(
                || request(TOKEN),
                |req| {
                    let fut = protected.call(req);
                    async move {
                        let response = fut.await.unwrap();
                        debug_assert_eq!(response.status(), 200);
                        response
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
        drop(recording);
        let rendered = recorder.handle().render();
        assert_eq!(
            rendered.contains(r#"tower_introspect_cache_lookups_total{result="hit"}"#),
            record && ran,
            "the recorder saw the requests only while installed"
        );
    }
    group.finish();

    // The same warm path for a JWT access token.
    let jwt = support::jwt(0);
    let mut jwt_protected = BearerAuthLayer::new(CachedVerifier::new(
        support::jwt_issuer(),
        CacheConfig::default(),
    ))
    .layer(service_fn(ok));
    runtime.block_on(async {
        let response = jwt_protected
            .ready()
            .await
            .unwrap()
            .call(request(&jwt))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    // An introspected (opaque) token as long as the JWT: what the warm path costs for the
    // token's length alone, whichever verifier vouched for it.
    let long_opaque = "o".repeat(jwt.len());
    runtime.block_on(async {
        let response = protected
            .ready()
            .await
            .unwrap()
            .call(request(&long_opaque))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    let mut group = c.benchmark_group("request_by_token_length");
    group.bench_function("introspected_as_long_as_the_jwt", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&long_opaque),
            |req| {
                let fut = protected.call(req);
                async move { fut.await.unwrap() }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("jwt", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&jwt),
            |req| {
                let fut = jwt_protected.call(req);
                async move {
                    let response = fut.await.unwrap();
                    debug_assert_eq!(response.status(), 200);
                    response
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
    let issuer = support::jwt_issuer();
    c.bench_function("miss/jwt_es256_verify", |b| {
        b.to_async(&runtime)
            .iter(|| async { issuer.verify(black_box(&jwt)).await.unwrap() })
    });
    // The ECDSA P-256 check alone (ring, as the verifier calls it), to tell the signature's share
    // of a miss from the parsing and claims around it.
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .unwrap();
    let point = support::jwt_public_point();
    c.bench_function("miss/es256_signature_only", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                black_box(&point),
            )
            .verify(input.as_bytes(), &signature)
            .unwrap()
        })
    });

    let cached = verifier();
    let counter = AtomicU64::new(0);
    c.bench_function("miss/parse_validate_insert", |b| {
        b.to_async(&runtime).iter(|| {
            let token = format!("token-{}", counter.fetch_add(1, Ordering::Relaxed));
            let cached = &cached;
            async move { cached.verify(&token).await.unwrap() }
        })
    });

    let mut with_principal = request(TOKEN);
    let principal = runtime.block_on(verifier().verify(TOKEN)).unwrap();
    with_principal.extensions_mut().insert(principal);
    let mut scoped = RequireScopeLayer::all(["read"])
        .unwrap()
        .layer(service_fn(ok));
    let mut group = c.benchmark_group("require_scope");
    group.bench_function("without_layer", |b| {
        b.to_async(&runtime).iter_batched(
            || with_principal.clone_for_bench(),
            |req| bare.call(req),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("with_layer", |b| {
        b.to_async(&runtime).iter_batched(
            || with_principal.clone_for_bench(),
            |req| scoped.call(req),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `http::Request` is not `Clone`; rebuild one carrying the same principal.
trait CloneForBench {
    fn clone_for_bench(&self) -> Self;
}

impl CloneForBench for Request<()> {
    fn clone_for_bench(&self) -> Self {
        let mut request = request(TOKEN);
        if let Some(principal) = self.extensions().get::<Principal>() {
            request.extensions_mut().insert(principal.clone());
        }
        request
    }
}

/// A request presenting `token` with the DPoP scheme and `proof`.
fn dpop_request(token: &str, proof: String) -> Request<()> {
    Request::get("https://mcp.example.com/mcp")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(())
        .unwrap()
}

/// DPoP: the proof check alone, and a warm request with a fresh proof, for ES256 and EdDSA.
fn dpop(c: &mut Criterion) {
    use tower_introspect::dpop::{Dpop, DpopKey, ProofChecker, ProofTarget};
    use tower_introspect::jwt::JwsAlgorithm;

    const URL: &str = "https://mcp.example.com/mcp";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, alg) in [
        ("es256", JwsAlgorithm::ES256),
        ("eddsa", JwsAlgorithm::EdDSA),
    ] {
        let key = DpopKey::generate(alg).unwrap();
        let checker = ProofChecker::builder()
            .replay_capacity(50_000_000)
            .build()
            .unwrap();
        let url = url::Url::parse(URL).unwrap();
        c.bench_function(&format!("dpop/check_and_record_{name}"), |b| {
            b.iter_batched(
                || key.proof("GET", URL, Some(TOKEN), None),
                |proof| {
                    let verified = checker
                        .check(&proof, &ProofTarget::new("GET", &url), Some(TOKEN))
                        .unwrap();
                    checker.record(&verified).unwrap();
                },
                criterion::BatchSize::SmallInput,
            )
        });

        let dpop = Dpop::builder()
            .origin("https://mcp.example.com")
            .checker(checker.clone())
            .build()
            .unwrap();
        let layer = BearerAuthLayer::new(CachedVerifier::new(
            support::BoundVerifier::new(key.thumbprint()),
            CacheConfig::default(),
        ))
        .dpop(dpop);
        let mut protected = layer.layer(service_fn(ok));
        runtime.block_on(async {
            let proof = key.proof("GET", URL, Some(TOKEN), None);
            let response = protected
                .ready()
                .await
                .unwrap()
                .call(dpop_request(TOKEN, proof))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        });
        c.bench_function(&format!("request/dpop_{name}_warm_cache"), |b| {
            b.to_async(&runtime).iter_batched(
                || dpop_request(TOKEN, key.proof("GET", URL, Some(TOKEN), None)),
                |req| {
                    let fut = protected.call(req);
                    async move {
                        let response = fut.await.unwrap();
                        assert_eq!(response.status(), 200);
                        response
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, pieces, requests, dpop);
criterion_main!(benches);
