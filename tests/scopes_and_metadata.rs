//! Per-route scopes, axum extractors and RFC 9728 metadata on a real axum server.

mod common;

use axum::Router;
use axum::routing;
use common::*;
use serde_json::json;
use tower_introspect::metadata::ProtectedResourceMetadata;
use tower_introspect::{BearerAuthLayer, Principal, RequireScopeLayer};
use wiremock::MockServer;

async fn me(principal: Principal) -> String {
    principal.subject().unwrap_or_default().to_owned()
}

async fn maybe(principal: Option<Principal>) -> String {
    principal.map_or("anonymous".into(), |p| {
        p.subject().unwrap_or_default().to_owned()
    })
}

fn metadata() -> ProtectedResourceMetadata {
    ProtectedResourceMetadata::new(RESOURCE, ISSUER)
        .unwrap()
        .scopes_supported(["read", "write", "admin"])
        .unwrap()
        .resource_name("Test API")
}

async fn app(server: &MockServer, allow_anonymous: bool) -> std::net::SocketAddr {
    let layer = BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
        .protected_resource(&metadata())
        .challenge_scope("read")
        .unwrap()
        .allow_missing_token(allow_anonymous);
    let protected = Router::new()
        .route(
            "/read",
            routing::get(me).route_layer(RequireScopeLayer::all(["read"]).unwrap()),
        )
        .route(
            "/admin",
            routing::get(me).route_layer(RequireScopeLayer::all(["admin", "write"]).unwrap()),
        )
        .route(
            "/either",
            routing::get(me).route_layer(RequireScopeLayer::any(["write", "admin"]).unwrap()),
        )
        // Stacked: both layers must pass.
        .route(
            "/stacked",
            routing::get(me)
                .route_layer(RequireScopeLayer::all(["read"]).unwrap())
                .route_layer(RequireScopeLayer::all(["write"]).unwrap()),
        )
        .route("/me", routing::get(me))
        .route("/maybe", routing::get(maybe))
        .layer(layer);
    serve(protected.merge(metadata().into_router())).await
}

const MD: &str = "https://rs.example/.well-known/oauth-protected-resource/mcp";

#[tokio::test]
async fn per_route_scopes_with_exact_challenges() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "writer", active("will", "read write read-all"), 1).await;
    expect_introspection(&server, "boss", active("ada", "read write admin"), 1).await;
    expect_introspection(
        &server,
        "lookalike",
        active("lou", "read-all Read admins"),
        1,
    )
    .await;
    let addr = app(&server, false).await;

    let cases = [
        ("reader", "/read", 200, None),
        ("reader", "/admin", 403, Some(insufficient("admin write"))),
        ("reader", "/either", 403, Some(insufficient("admin write"))),
        ("reader", "/stacked", 403, Some(insufficient("write"))),
        ("writer", "/admin", 403, Some(insufficient("admin write"))),
        ("writer", "/either", 200, None),
        ("writer", "/stacked", 200, None),
        ("boss", "/admin", 200, None),
        // Exact matching: `read-all`, `Read` and `admins` satisfy neither `read` nor `admin`.
        ("lookalike", "/read", 403, Some(insufficient("read"))),
        (
            "lookalike",
            "/admin",
            403,
            Some(insufficient("admin write")),
        ),
    ];
    for (token, path, status, challenge) in cases {
        let answer = get(addr, path, &[&bearer(token)]).await;
        assert_eq!(answer.status, status, "{token} {path}");
        assert_eq!(answer.challenge, challenge, "{token} {path}");
        if status == 200 {
            assert!(!answer.body.is_empty());
        }
    }
}

#[tokio::test]
async fn missing_principal_is_a_401_never_a_pass() {
    let server = MockServer::start().await;
    let addr = app(&server, true).await;
    let challenge = format!(r#"Bearer scope="read", resource_metadata="{MD}""#);

    // Anonymous requests pass the bearer layer in optional mode, but not the scope layer…
    let answer = get(addr, "/read", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(challenge.as_str()));
    // …nor the required extractor, which answers with the same challenge instead of a 500.
    let answer = get(addr, "/me", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(challenge.as_str()));
    // The optional extractor sees nobody.
    let answer = get(addr, "/maybe", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "anonymous"));
}

#[tokio::test]
async fn scope_layer_without_bearer_layer_fails_closed() {
    let app = Router::new().route(
        "/x",
        routing::get(|| async { "secret" }).route_layer(RequireScopeLayer::all(["read"]).unwrap()),
    );
    let addr = serve(app).await;
    let answer = get(addr, "/x", &[&bearer("anything")]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some("Bearer"));
}

#[tokio::test]
async fn metadata_is_served_at_both_paths_with_the_exact_resource() {
    let server = MockServer::start().await;
    let addr = app(&server, false).await;
    let expected = json!({
        "resource": "https://rs.example/mcp",
        "authorization_servers": ["https://as.example"],
        "scopes_supported": ["read", "write", "admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Test API",
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = client()
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body, expected, "{path}");
    }
    // The challenge points at the document that is served.
    let answer = get(addr, "/read", &[]).await;
    assert!(answer.challenge.unwrap().contains(&format!(
        r#"resource_metadata="{}""#,
        metadata().metadata_url()
    )));
    let response = client()
        .post(format!(
            "http://{addr}/.well-known/oauth-protected-resource"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn step_up_challenge_can_name_the_granted_scopes_too() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read profile"), 1).await;
    let layer = BearerAuthLayer::introspect(introspector_for(&server).build().unwrap())
        .resource_metadata(MD)
        .step_up_with_granted_scopes(true);
    let app = Router::new()
        .route(
            "/admin",
            routing::get(me).route_layer(RequireScopeLayer::all(["admin"]).unwrap()),
        )
        .layer(layer);
    let addr = serve(app).await;
    let answer = get(addr, "/admin", &[&bearer("reader")]).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.challenge, Some(insufficient("admin profile read")));
}

#[tokio::test]
async fn scopes_joined_by_other_whitespace_never_grant_admin() {
    let server = MockServer::start().await;
    let odd = [
        ("tab", "tenant:x\tadmin write"),
        ("lf", "tenant:x\nadmin write"),
        ("cr", "tenant:x\radmin write"),
        ("nbsp", "tenant:x\u{a0}admin write"),
        ("ideographic", "tenant:x\u{3000}admin write"),
    ];
    for (token, scope) in odd {
        expect_introspection(&server, token, active("eve", scope), 1).await;
    }
    let addr = app(&server, false).await;
    for (token, _) in odd {
        // Twice: the second answer comes from the negative cache (one introspection call each).
        for _ in 0..2 {
            let answer = get(addr, "/admin", &[&bearer(token)]).await;
            assert_eq!(answer.status, 401, "{token}");
            assert_eq!(
                answer.challenge.as_deref(),
                Some(
                    format!(
                        r#"Bearer error="invalid_token", error_description="The access token's scope is malformed", resource_metadata="{MD}""#
                    )
                    .as_str()
                ),
                "{token}"
            );
            assert_eq!(answer.body, "", "the handler never ran");
        }
    }
}

#[test]
fn configured_scopes_outside_nqchar_are_refused() {
    use tower_introspect::PathScopeLayer;
    for bad in ["admin\t", "tenant:x\nadmin", "caf\u{e9}", "a\"b", "a\\b"] {
        let quoted = format!("{bad:?} is not a valid OAuth scope");
        let refusals = [
            RequireScopeLayer::all([bad]).map(drop),
            RequireScopeLayer::any([bad]).map(drop),
            PathScopeLayer::builder()
                .path("/x", [bad])
                .build()
                .map(drop),
            PathScopeLayer::builder()
                .prefix("/x", [bad])
                .build()
                .map(drop),
            PathScopeLayer::builder()
                .default_scopes([bad])
                .build()
                .map(drop),
            ProtectedResourceMetadata::new(RESOURCE, ISSUER)
                .unwrap()
                .scopes_supported([bad])
                .map(drop),
            tower_introspect::mcp::McpScopePolicy::builder()
                .tool("t", [bad])
                .build()
                .map(drop),
        ];
        for refusal in refusals {
            let error = refusal.expect_err("a bad scope was accepted");
            assert!(error.to_string().contains(&quoted), "{error}");
        }
    }
    // The challenge's scope is the space-separated wire form; each scope in it must be valid.
    common::install_crypto();
    for bad in ["admin\t", "read\u{a0}write", "a\"b"] {
        let introspector = tower_introspect::Introspector::builder()
            .endpoint("https://as.example/introspect")
            .build()
            .unwrap();
        let refused = BearerAuthLayer::introspect(introspector).challenge_scope(bad);
        assert!(
            matches!(
                refused,
                Err(tower_introspect::ConfigError::Invalid {
                    setting: "challenge_scope",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    // Valid ones pass.
    let _ = RequireScopeLayer::all(["mcp:tools.read", "a!#[]~"]).unwrap();
}
