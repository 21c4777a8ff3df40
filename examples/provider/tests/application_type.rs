//! DCR `application_type` (OpenID Connect Dynamic Registration §2, RFC 8252): each type's
//! redirect URI rules, and what a registration without it becomes.

mod common;

use common::{Backend, Env};
use reqwest::StatusCode;
use serde_json::json;

/// Registers a public client with `application_type` (omitted when `None`) and `uri`.
async fn register(
    env: &Env,
    application_type: Option<&str>,
    uri: &str,
) -> (StatusCode, serde_json::Value) {
    let mut metadata = json!({
        "redirect_uris": [uri],
        "token_endpoint_auth_method": "none",
    });
    if let Some(kind) = application_type {
        metadata["application_type"] = json!(kind);
    }
    env.register(metadata).await
}

async fn web_clients_get_https_on_a_public_host_only(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = register(&env, Some("web"), "https://app.example/cb").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["application_type"], "web");
    for (uri, why) in [
        (
            "http://127.0.0.1/cb",
            "a web client's redirect URIs must be https",
        ),
        (
            "com.example.app:/cb",
            "a web client's redirect URIs must be https",
        ),
        (
            "https://localhost/cb",
            "a web client's redirect URIs must not use a loopback host",
        ),
        (
            "https://127.0.0.1/cb",
            "a web client's redirect URIs must not use a loopback host",
        ),
        (
            "https://[::1]/cb",
            "a web client's redirect URIs must not use a loopback host",
        ),
    ] {
        let (status, body) = register(&env, Some("web"), uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{uri}");
        assert_eq!(body["error_description"], why, "{uri}");
    }
}

async fn native_clients_get_loopback_private_use_and_https(backend: Backend) {
    let env = Env::start(backend).await;
    for uri in [
        "http://127.0.0.1/cb",
        "http://[::1]/cb",
        "com.example.app:/cb",
        "https://app.example/cb",
    ] {
        let (status, body) = register(&env, Some("native"), uri).await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {body}");
        assert_eq!(body["application_type"], "native");
    }
    for uri in ["http://app.example/cb", "javascript:alert(1)"] {
        let (status, body) = register(&env, Some("native"), uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{uri}");
    }
}

async fn an_unknown_application_type_is_invalid_metadata(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = register(&env, Some("desktop"), "https://app.example/cb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client_metadata");
    assert_eq!(
        body["error_description"],
        "application_type must be web or native"
    );
}

async fn without_application_type_the_uris_decide(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = register(&env, None, "https://app.example/cb").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["application_type"], "web");
    let (status, body) = register(&env, None, "http://127.0.0.1/cb").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["application_type"], "native");
}

backend_tests!(
    web_clients_get_https_on_a_public_host_only,
    native_clients_get_loopback_private_use_and_https,
    an_unknown_application_type_is_invalid_metadata,
    without_application_type_the_uris_decide,
);
