//! [`McpScopeLayer`]: per-tool scope enforcement for MCP's single JSON-RPC endpoint.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_ENCODING;
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::method_headers::AnnouncedCall;
use super::refusal::{Refusal, request_id};
use super::{McpScopePolicy, Requirement, UnclassifiableBody, classify_body};
use crate::Principal;
use crate::challenge::Challenger;
use crate::challenge::Rejection;
use crate::mcp::protocol_version::McpGeneration;
use crate::scope::check_scopes;

/// Default largest JSON-RPC body the layer reads.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Enforces an [`McpScopePolicy`] on MCP requests (step-up authorization).
///
/// All MCP traffic is `POST /mcp`, so a route-level scope check cannot tell `read_data` from
/// `admin_operation`. This layer reads the JSON-RPC body (up to a bound), finds the operation,
/// and answers a call whose principal lacks the operation's scopes with 403
/// `insufficient_scope` naming exactly those scopes: the client can then obtain a token with more
/// scope and retry. An anonymous call of a non-public operation gets the 401 challenge. A batch
/// requires every scope any of its messages requires.
///
/// The layer fails closed: what it cannot judge never reaches the inner service.
///
/// - A `POST` body is classified by [`classify_body`]; one it cannot classify (not JSON, a key
///   repeated in an object, not JSON-RPC 2.0, an empty batch, a `tools/call` without a string
///   `name`, …) is refused with 400. Passing it through would let a more lenient parser, or a
///   decoding layer placed inside this one, run an operation nobody judged.
/// - A `POST` with a `Content-Encoding` other than `identity` is refused with 415: this layer
///   does not decode bodies, and judging compressed bytes is impossible. Put any decompression
///   layer *outside* this one.
/// - A body over the limit is refused with 413.
/// - Requests other than `POST` (MCP's `GET` stream and `DELETE`) carry no JSON-RPC message and
///   reach the inner service untouched.
/// - The body is restored for the inner service byte for byte.
///
/// - A `POST` whose `Mcp-Method` / `Mcp-Name` headers (SEP-2243) disagree with the body read is
///   refused with 400, as is one with such a header repeated, not visible ASCII, or an `Mcp-Name`
///   without an `Mcp-Method`: the layer and a router reading the headers must judge one operation.
///
/// The refusals of this list carry a JSON-RPC 2.0 error (`Content-Type: application/json`) naming
/// the reason, with the request's `id` when the body was read and holds one (else `null`):
/// `-32700` for a body that is not JSON, `-32600` for one that is not JSON-RPC 2.0 and for
/// malformed `Mcp-Method` / `Mcp-Name` headers, `-32602` for a method that does not name what it
/// addresses, `-32020` for headers that disagree with the body, `-32005` for 413 and `-32006`
/// for 415. The inner service is not called. (The body is written for the response body types of
/// axum, rmcp and http-body-util, and for `Bytes`, `String` and `Vec<u8>`; another body type gets
/// the status alone.)
///
/// With [`trust_method_headers`](Self::trust_method_headers), requests of MCP 2026-07-28 and later
/// are judged from their headers alone, without reading the body.
///
/// Place it inside [`BearerAuthLayer`](crate::BearerAuthLayer) (which supplies the principal).
#[derive(Clone)]
pub struct McpScopeLayer {
    policy: Arc<McpScopePolicy>,
    max_body_bytes: usize,
    trust_method_headers: bool,
}

impl McpScopeLayer {
    /// Enforces `policy`.
    pub fn new(policy: McpScopePolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            trust_method_headers: false,
        }
    }

    /// Judges requests of MCP 2026-07-28 and later (by `MCP-Protocol-Version`) by their
    /// `Mcp-Method` / `Mcp-Name` headers, without reading the body, when those headers describe
    /// the operation completely (default: off, the body is always read).
    ///
    /// Turn it on **only** when the inner service refuses a request whose headers disagree with
    /// its body, as 2026-07-28 requires of servers (rmcp answers 400 / `-32020`): otherwise a
    /// client could announce `read_data` in the header and call `admin_operation` in the body.
    /// Older protocol versions, requests without the headers, and operations the headers cannot
    /// fully name (completions, listens, encoded names) are still judged by their body.
    #[must_use]
    pub fn trust_method_headers(mut self, trust: bool) -> Self {
        self.trust_method_headers = trust;
        self
    }

    /// Largest body read (default 4 MiB); larger requests get 413.
    #[must_use]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }
}

impl fmt::Debug for McpScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpScopeLayer")
            .field("policy", &self.policy)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("trust_method_headers", &self.trust_method_headers)
            .finish()
    }
}

impl<S> Layer<S> for McpScopeLayer {
    type Service = McpScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpScope {
            inner,
            policy: self.policy.clone(),
            max_body_bytes: self.max_body_bytes,
            trust_method_headers: self.trust_method_headers,
        }
    }
}

/// The service built by [`McpScopeLayer`].
#[derive(Clone, Debug)]
pub struct McpScope<S> {
    inner: S,
    policy: Arc<McpScopePolicy>,
    max_body_bytes: usize,
    trust_method_headers: bool,
}

/// The boxed response future of [`McpScope`] (reading the body is asynchronous).
pub type McpScopeFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Whether every coding of the `Content-Encoding` headers is `identity` (also when there is
/// none): the only bodies this layer can read as sent.
fn identity_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().all(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

/// Why `principal` may not make a request with `requirement`, if it may not.
fn refuse(
    requirement: &Requirement,
    principal: Option<&Principal>,
    challenger: &Challenger,
    headers: &HeaderMap,
) -> Option<Rejection> {
    match requirement {
        Requirement::Public => None,
        Requirement::Scopes(required) => {
            check_scopes(principal, required, false, challenger, headers)
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = McpScopeFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        if request.method() != Method::POST {
            return Box::pin(inner.call(request));
        }
        if !identity_encoded(request.headers()) {
            tracing::debug!("MCP request with a content coding refused");
            let response = Refusal::ContentEncoding.response(Value::Null);
            return Box::pin(async { Ok(response) });
        }
        let Ok(announced) = AnnouncedCall::of(request.headers()) else {
            tracing::debug!("MCP request with malformed Mcp-Method / Mcp-Name headers refused");
            let response = Refusal::MethodHeaders.response(Value::Null);
            return Box::pin(async { Ok(response) });
        };
        let policy = self.policy.clone();
        if self.trust_method_headers
            && McpGeneration::of(request.headers()) >= McpGeneration::V2026_07_28
            && let Some(message) = announced.as_ref().and_then(AnnouncedCall::message)
        {
            let requirement = policy.required(&message);
            let challenger = Challenger::of(&request);
            if let Some(rejection) = refuse(
                &requirement,
                request.extensions().get::<Principal>(),
                challenger,
                request.headers(),
            ) {
                tracing::debug!(?requirement, "MCP operation refused (by its headers)");
                let response = challenger.response(&rejection, request.headers());
                return Box::pin(async { Ok(response) });
            }
            return Box::pin(inner.call(request));
        }
        let limit = self.max_body_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let refusal = if error.is::<http_body_util::LengthLimitError>() {
                        Refusal::TooLarge(limit)
                    } else {
                        Refusal::UnreadableBody
                    };
                    return Ok(refusal.response(Value::Null));
                }
            };
            let messages = match classify_body(&bytes) {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "MCP request body refused");
                    // A body that is not strict JSON has no `id` this layer trusts.
                    let id = match error {
                        UnclassifiableBody::NotJson => Value::Null,
                        _ => request_id(&bytes),
                    };
                    return Ok(Refusal::Unclassifiable(error).response(id));
                }
            };
            if announced.is_some_and(|a| !a.matches(&messages)) {
                tracing::debug!("MCP request whose Mcp-Method / Mcp-Name disagree with its body");
                return Ok(Refusal::HeaderMismatch.response(request_id(&bytes)));
            }
            let requirement = policy.required_for_all(&messages);
            let challenger = Challenger::from_extensions(&parts.extensions);
            if let Some(rejection) = refuse(
                &requirement,
                parts.extensions.get::<Principal>(),
                challenger,
                &parts.headers,
            ) {
                tracing::debug!(?requirement, "MCP operation refused");
                return Ok(challenger.response(&rejection, &parts.headers));
            }
            inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, StatusCode};
    use http_body_util::Full;

    /// A body one byte over the limit is refused with 413 before it is classified, and the inner
    /// service never sees it; a body at the limit is read whole.
    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_413() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let inner = tower::service_fn(move |_request: Request<Full<Bytes>>| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(())) }
        });
        let policy = McpScopePolicy::builder()
            .public_method("ping")
            .build()
            .unwrap();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let mut service = McpScopeLayer::new(policy)
            .max_body_bytes(body.len())
            .layer(inner);
        let request = |bytes: Vec<u8>| {
            Request::post("/mcp")
                .body(Full::new(Bytes::from(bytes)))
                .unwrap()
        };
        let mut over = body.to_vec();
        over.push(b' ');
        let refused = service.call(request(over)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        let passed = service.call(request(body.to_vec())).await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn encoded(values: &[&[u8]]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_ENCODING, HeaderValue::from_bytes(value).unwrap());
        }
        identity_encoded(&headers)
    }

    #[test]
    fn only_identity_is_readable_as_sent() {
        assert!(encoded(&[]));
        assert!(encoded(&[b"identity"]));
        assert!(encoded(&[b"Identity", b" identity , IDENTITY"]));
        for refused in [
            &[&b"gzip"[..]][..],
            &[b"identity, gzip"],
            &[b"identity", b"br"],
            &[b"x-gzip"],
            &[b""],
            &[b"identity,"],
            &[b"identit\xc3\xa9"],
        ] {
            assert!(!encoded(refused), "{refused:?}");
        }
    }
}
