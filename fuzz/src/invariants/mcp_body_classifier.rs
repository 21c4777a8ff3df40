//! The MCP body classifier, through `McpScopeLayer` and compared with what rmcp would run: for
//! any body and any caller, if the layer lets the request through, the body reaches the MCP
//! service byte for byte, and the operation rmcp parses from it is one the caller may perform
//! under the policy. A difference between how the layer and rmcp read a body (duplicate keys,
//! escapes, numbers, nesting, batches) would show as a violation here.

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use rmcp::model::ClientJsonRpcMessage;
use tower_introspect::mcp::{McpScopeLayer, classify_body};
use tower_layer::Layer;
use tower_service::Service;

use crate::fixtures::{caller, meets, policy};
use crate::recorder::Recorder;

/// Checks the layer on `data`: byte 0 chooses the caller ([`caller`]), the rest is the POST body.
pub fn check(data: &[u8]) {
    let [who, body @ ..] = data else {
        return;
    };
    let principal = caller(*who);
    let recorder = Recorder::new(|_| Response::new(()));
    let mut service = McpScopeLayer::new(policy()).layer(recorder.clone());
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("valid request");
    tower_introspect::fuzz_support::as_if_authenticated(&mut request, principal.clone(), "token");
    let response = service
        .call(request)
        .now_or_never()
        .expect("the layer and the recorder never wait")
        .expect("infallible");

    let received = recorder.received.lock().expect("recorder lock");
    let Some(passed) = received.first() else {
        assert!(
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::BAD_REQUEST,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ]
            .contains(&response.status()),
            "refused with {}",
            response.status()
        );
        return;
    };
    assert_eq!(passed.body.as_ref(), body, "the body was altered");
    match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        Ok(message) => {
            // The operation as rmcp understood it, in canonical form, judged by the same policy.
            let mut canonical = serde_json::to_value(&message).expect("rmcp messages serialize");
            // rmcp writes a request without parameters as `"params": null`, which JSON-RPC does
            // not allow on the wire (the classifier refuses it); it means "no parameters".
            if let Some(fields) = canonical.as_object_mut()
                && fields.get("params").is_some_and(serde_json::Value::is_null)
            {
                fields.remove("params");
            }
            let canonical = serde_json::to_vec(&canonical).expect("values serialize");
            let messages = classify_body(&canonical).expect("rmcp's own serialization classifies");
            let requirement = policy().required_for_all(&messages);
            let canonical = String::from_utf8_lossy(&canonical);
            assert!(
                meets(&requirement, principal.as_ref()),
                "let through {canonical} requiring {requirement:?} for {:?}",
                principal.as_ref().map(|p| p.scopes().to_string())
            );
        }
        Err(_) => {
            assert!(
                classify_body(body).is_ok(),
                "a body the classifier refuses was passed through"
            );
        }
    }
}
