//! The MCP layers' own refusals: a status and a JSON-RPC 2.0 error body naming the reason.
//!
//! | status | `error.code` | reason |
//! |---|---|---|
//! | 400 | -32700 | the body is not JSON (or repeats a key in an object), or could not be read |
//! | 400 | -32600 | not a JSON-RPC 2.0 message or batch; malformed `Mcp-Method` / `Mcp-Name` or `Mcp-Session-Id` headers |
//! | 400 | -32602 | a method that addresses a tool, prompt or resource does not say which |
//! | 400 | -32020 | the `Mcp-Method` / `Mcp-Name` headers disagree with the body (MCP's header mismatch) |
//! | 404 | -32001 | session not found (unknown, idle past the limit, ended, or created without a token) |
//! | 403 | -32002 | the session belongs to another principal, or the principal cannot own one |
//! | 429 | -32003 | the caller holds as many sessions as it may |
//! | 503 | -32004 | the server holds as many sessions as it may |
//! | 413 | -32005 | the body is larger than the layer reads |
//! | 415 | -32006 | a `Content-Encoding` other than `identity` |

use std::any::Any;
use std::convert::Infallible;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use serde_json::Value;

use super::UnclassifiableBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an MCP layer refused a request before the inner service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Several `Mcp-Session-Id` headers, or one that is not visible ASCII.
    SessionHeader,
    /// A session id the layer does not know.
    UnknownSession,
    /// A session created without a token, presented with one.
    AnonymousSession,
    /// Another principal's session (or a principal's session presented without a token).
    ForeignSession,
    /// A principal with no subject, client or token: it cannot own a session.
    Unattributable,
    /// The caller's session bound is reached.
    OwnerFull,
    /// The server's session bound is reached.
    ServerFull,
    /// A `Content-Encoding` other than `identity`.
    ContentEncoding,
    /// The body is larger than the layer reads.
    TooLarge(usize),
    /// The body could not be read.
    UnreadableBody,
    /// The body cannot be classified.
    Unclassifiable(UnclassifiableBody),
    /// `Mcp-Method` / `Mcp-Name` repeated, not visible ASCII, or a name without a method.
    MethodHeaders,
    /// `Mcp-Method` / `Mcp-Name` disagree with the body.
    HeaderMismatch,
}

impl Refusal {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::SessionHeader
            | Self::UnreadableBody
            | Self::Unclassifiable(_)
            | Self::MethodHeaders
            | Self::HeaderMismatch => StatusCode::BAD_REQUEST,
            Self::UnknownSession | Self::AnonymousSession => StatusCode::NOT_FOUND,
            Self::ForeignSession | Self::Unattributable => StatusCode::FORBIDDEN,
            Self::OwnerFull => StatusCode::TOO_MANY_REQUESTS,
            Self::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::ContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The JSON-RPC `error.code`.
    pub(super) fn code(&self) -> i32 {
        match self {
            Self::UnreadableBody | Self::Unclassifiable(UnclassifiableBody::NotJson) => -32700,
            Self::Unclassifiable(UnclassifiableBody::BadParams { .. }) => -32602,
            Self::SessionHeader
            | Self::MethodHeaders
            | Self::Unclassifiable(UnclassifiableBody::NotJsonRpc(_)) => -32600,
            Self::HeaderMismatch => -32020,
            Self::UnknownSession | Self::AnonymousSession => -32001,
            Self::ForeignSession | Self::Unattributable => -32002,
            Self::OwnerFull => -32003,
            Self::ServerFull => -32004,
            Self::TooLarge(_) => -32005,
            Self::ContentEncoding => -32006,
        }
    }

    /// The JSON-RPC `error.message`: the reason, in words. Nothing the client sent is echoed.
    pub(super) fn message(&self) -> String {
        match self {
            Self::SessionHeader => {
                "Invalid request: the Mcp-Session-Id header is repeated or not visible ASCII".into()
            }
            Self::UnknownSession => "Session not found: start a new session".into(),
            Self::AnonymousSession => {
                "Session not found: the session was created without a token; start a new session"
                    .into()
            }
            Self::ForeignSession => "Forbidden: the session belongs to another principal".into(),
            Self::Unattributable => {
                "Forbidden: the token names no subject or client that could own a session".into()
            }
            Self::OwnerFull => "Too many sessions: end one or wait for one to expire".into(),
            Self::ServerFull => "Server busy: too many sessions, try again later".into(),
            Self::ContentEncoding => {
                "Unsupported Content-Encoding: send the body uncompressed".into()
            }
            Self::TooLarge(limit) => {
                format!("Request body too large: the limit is {limit} bytes")
            }
            Self::UnreadableBody => "Parse error: the request body could not be read".into(),
            Self::Unclassifiable(UnclassifiableBody::NotJson) => {
                "Parse error: the body is not JSON without duplicate keys".into()
            }
            Self::Unclassifiable(UnclassifiableBody::NotJsonRpc(reason)) => {
                format!("Invalid request: not a JSON-RPC 2.0 message: {reason}")
            }
            Self::Unclassifiable(UnclassifiableBody::BadParams { reason, .. }) => {
                format!("Invalid params: the method does not name what it addresses: {reason}")
            }
            Self::MethodHeaders => {
                "Invalid request: the Mcp-Method / Mcp-Name headers are repeated, not visible \
                 ASCII, or Mcp-Name comes without Mcp-Method"
                    .into()
            }
            Self::HeaderMismatch => {
                "Header mismatch: the Mcp-Method / Mcp-Name headers disagree with the body".into()
            }
        }
    }

    /// The JSON-RPC error object of this refusal for the request `id` (`null` when none was
    /// read).
    pub(super) fn body(&self, id: Value) -> Bytes {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.code(), "message": self.message()},
        });
        Bytes::from(body.to_string())
    }

    /// The response: the status and, for the body types the layers know, the JSON-RPC error
    /// with `Content-Type: application/json`; any other body type is left empty (its default).
    pub(super) fn response<B: Default + 'static>(&self, id: Value) -> Response<B> {
        let body = json_body::<B>(self.body(id));
        let written = body.is_some();
        let mut response = Response::new(body.unwrap_or_default());
        *response.status_mut() = self.status();
        if written {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
    }
}

/// `json` as a body of type `B`, for the body types MCP services answer with: axum's (feature
/// `axum`), rmcp's (`BoxBody<Bytes, Infallible>`), http-body-util's `Full`, `BoxBody` and
/// `UnsyncBoxBody`, and `Bytes`, `String`, `Vec<u8>`. The layers' bounds ask only
/// `B: Default`, so other body types keep working, with an empty refusal body.
fn json_body<B: 'static>(json: Bytes) -> Option<B> {
    let mut slot: Option<B> = None;
    let any: &mut dyn Any = &mut slot;
    fn put<T: 'static>(any: &mut dyn Any, make: impl FnOnce() -> T) -> bool {
        match any.downcast_mut::<Option<T>>() {
            Some(slot) => {
                *slot = Some(make());
                true
            }
            None => false,
        }
    }
    let full = || Full::new(json.clone());
    let _ = put(any, || json.clone())
        || put(any, || String::from_utf8_lossy(&json).into_owned())
        || put(any, || json.to_vec())
        || put(any, full)
        || put(any, || BoxBody::new(full()))
        || put(any, || UnsyncBoxBody::new(full()))
        || put(any, || {
            BoxBody::new(http_body_util::BodyExt::map_err(
                full(),
                |e: Infallible| -> BoxError { match e {} },
            ))
        })
        || put(any, || {
            UnsyncBoxBody::new(http_body_util::BodyExt::map_err(
                full(),
                |e: Infallible| -> BoxError { match e {} },
            ))
        })
        || axum_body(any, &json);
    slot
}

#[cfg(feature = "axum")]
fn axum_body(any: &mut dyn Any, json: &Bytes) -> bool {
    match any.downcast_mut::<Option<axum::body::Body>>() {
        Some(slot) => {
            *slot = Some(axum::body::Body::from(json.clone()));
            true
        }
        None => false,
    }
}

#[cfg(not(feature = "axum"))]
fn axum_body(_: &mut dyn Any, _: &Bytes) -> bool {
    false
}

/// The `id` of a single JSON-RPC request body, when it is a string or a number; `null` for a
/// batch, a notification, or a body that is not a JSON object. Only for bodies that are JSON
/// without duplicate keys (else the `id` read here might not be the one a server would read).
pub(super) fn request_id(body: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<Value>,
    }
    match serde_json::from_slice::<WithId>(body) {
        Ok(WithId {
            id: Some(id @ (Value::String(_) | Value::Number(_))),
        }) => id,
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text<B>(body: B) -> String
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const EXPECTED: &str = r#"{"error":{"code":-32001,"message":"Session not found: start a new session"},"id":7,"jsonrpc":"2.0"}"#;

    #[tokio::test]
    async fn every_known_body_type_carries_the_error_and_others_stay_empty() {
        let refusal = Refusal::UnknownSession;
        let id = || serde_json::json!(7);
        let json = |headers: &http::HeaderMap| headers[CONTENT_TYPE] == "application/json";

        let r: Response<String> = refusal.response(id());
        assert!(json(r.headers()));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.into_body(), EXPECTED);
        let r: Response<Vec<u8>> = refusal.response(id());
        assert_eq!(r.into_body(), EXPECTED.as_bytes());
        let r: Response<Bytes> = refusal.response(id());
        assert_eq!(r.into_body(), EXPECTED);
        let r: Response<Full<Bytes>> = refusal.response(id());
        assert_eq!(text(r.into_body()).await, EXPECTED);
        let r: Response<BoxBody<Bytes, Infallible>> = refusal.response(id());
        assert_eq!(text(r.into_body()).await, EXPECTED);
        let r: Response<UnsyncBoxBody<Bytes, Infallible>> = refusal.response(id());
        assert_eq!(text(r.into_body()).await, EXPECTED);
        let r: Response<BoxBody<Bytes, BoxError>> = refusal.response(id());
        assert_eq!(text(r.into_body()).await, EXPECTED);
        let r: Response<UnsyncBoxBody<Bytes, BoxError>> = refusal.response(id());
        assert_eq!(text(r.into_body()).await, EXPECTED);
        #[cfg(feature = "axum")]
        {
            let r: Response<axum::body::Body> = refusal.response(id());
            assert!(json(r.headers()));
            assert_eq!(text(r.into_body()).await, EXPECTED);
        }
        // A body type the layers do not know: the status alone, as before.
        let r: Response<()> = refusal.response(id());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn the_id_is_read_from_a_single_request_only() {
        assert_eq!(
            request_id(br#"{"jsonrpc":"2.0","id":3}"#),
            serde_json::json!(3)
        );
        assert_eq!(request_id(br#"{"id":"a"}"#), serde_json::json!("a"));
        for body in [
            &br#"{"jsonrpc":"2.0","method":"x"}"#[..],
            br#"{"id":{"a":1}}"#,
            br#"{"id":null}"#,
            br#"[{"jsonrpc":"2.0","id":3}]"#,
            b"{not json",
            b"7",
        ] {
            assert_eq!(
                request_id(body),
                Value::Null,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
