//! A real tonic server (the standard health service) behind the layers, called by a tonic client.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_introspect::{BearerAuthLayer, PathScopeLayer, RequireScopeLayer};
use tower_layer::Layer;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn grpc_server(server: &MockServer) -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
        .resource_metadata(METADATA);
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(auth)
            // Per service: the wrapper keeps the health service's gRPC name (feature `tonic`);
            // per method: gRPC methods are paths.
            .add_service(
                PathScopeLayer::builder()
                    .path("/grpc.health.v1.Health/Watch", ["admin"])
                    .build()
                    .unwrap()
                    .layer(RequireScopeLayer::all(["health"]).unwrap().layer(health)),
            )
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

async fn check(addr: SocketAddr, token: Option<&str>) -> Result<(), tonic::Status> {
    call(addr, token, false).await
}

async fn call(addr: SocketAddr, token: Option<&str>, watch: bool) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", bearer(token).parse().unwrap());
    }
    if watch {
        client.watch(request).await.map(|_| ())
    } else {
        client.check(request).await.map(|_| ())
    }
}

/// The `www-authenticate` header a rejected call carried.
fn challenge(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("www-authenticate")
        .expect("a challenge")
        .to_str()
        .unwrap()
        .to_owned()
}

fn insufficient_scope(scope: &str) -> String {
    format!(
        r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="{scope}", resource_metadata="{METADATA}""#
    )
}

#[tokio::test]
async fn tonic_client_sees_the_right_codes() {
    let server = MockServer::start().await;
    expect_introspection(&server, "healthy", active("ops", "health read"), 1).await;
    expect_introspection(&server, "operator", active("root", "health admin"), 1).await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "revoked", json!({"active": false}), 1).await;
    Mock::given(method("POST"))
        .and(FormParam("token", "unlucky".into()))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let addr = grpc_server(&server).await;

    assert!(check(addr, Some("healthy")).await.is_ok());

    let status = check(addr, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "A bearer token is required");

    let status = check(addr, Some("revoked")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "The access token is not active");
    assert_eq!(
        challenge(&status),
        format!(
            r#"Bearer error="invalid_token", error_description="The access token is not active", resource_metadata="{METADATA}""#
        )
    );

    let status = check(addr, Some("reader")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(challenge(&status), insufficient_scope("health"));

    // Per method: Watch needs admin on top of the service's health.
    let status = call(addr, Some("healthy"), true).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(challenge(&status), insufficient_scope("admin"));
    assert!(call(addr, Some("operator"), true).await.is_ok());

    let status = check(addr, Some("unlucky")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

/// A gRPC-Web call (HTTP/1.1, as browsers make it) to the protected axum app; what came back.
async fn grpc_web_call(
    addr: SocketAddr,
    content_type: &str,
    token: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut request = client()
        .post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0]);
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "date" | "content-length" | "transfer-encoding"
            )
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn grpc_web_requests_are_refused_in_their_own_content_type() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "revoked", json!({"active": false}), 1).await;
    let seen = Seen::default();
    let app = recording_app(&seen)
        .layer(
            PathScopeLayer::builder()
                .default_scopes(["health"])
                .build()
                .unwrap(),
        )
        .layer(
            BearerAuthLayer::introspect(introspector_for(&server).build().unwrap())
                .resource_metadata(METADATA),
        );
    let addr = serve(app).await;

    let no_token_challenge = format!(r#"Bearer resource_metadata="{METADATA}""#);
    let revoked_challenge = format!(
        r#"Bearer error="invalid_token", error_description="The access token is not active", resource_metadata="{METADATA}""#
    );
    for content_type in [
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "application/grpc-web-text+proto",
    ] {
        let expected = |code: &str, message: &str, challenge: &str| {
            let mut headers = vec![
                ("content-type".to_owned(), content_type.to_owned()),
                ("grpc-message".to_owned(), message.to_owned()),
                ("grpc-status".to_owned(), code.to_owned()),
                ("www-authenticate".to_owned(), challenge.to_owned()),
            ];
            headers.sort();
            (200, headers, Vec::new())
        };
        assert_eq!(
            grpc_web_call(addr, content_type, None).await,
            expected("16", "A bearer token is required", &no_token_challenge),
            "{content_type}"
        );
        assert_eq!(
            grpc_web_call(addr, content_type, Some("revoked")).await,
            expected("16", "The access token is not active", &revoked_challenge),
            "{content_type}"
        );
        assert_eq!(
            grpc_web_call(addr, content_type, Some("reader")).await,
            expected(
                "7",
                "The access token lacks a scope this request requires",
                &insufficient_scope("health")
            ),
            "{content_type}"
        );
    }
    // Not gRPC at all, despite the prefix: a plain HTTP challenge.
    let (status, headers, _) = grpc_web_call(addr, "application/grpcx", None).await;
    assert_eq!(status, 401);
    assert!(!headers.iter().any(|(name, _)| name == "grpc-status"));
    assert_eq!(seen.calls(), 0);
}
