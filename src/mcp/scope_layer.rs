//! [`McpScopeLayer`]: per-tool scope enforcement for MCP's single JSON-RPC endpoint.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::{McpScopePolicy, Requirement};
use crate::Principal;
use crate::challenge::Challenger;
use crate::challenge::Rejection;
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
/// - Requests other than `POST`, and bodies that are not JSON, reach the inner service untouched
///   (it owns JSON-RPC errors).
/// - A body over the limit is refused with 413; the inner service is not called.
/// - The body is restored for the inner service byte for byte.
///
/// Place it inside [`BearerAuthLayer`](crate::BearerAuthLayer) (which supplies the principal).
#[derive(Clone)]
pub struct McpScopeLayer {
    policy: Arc<McpScopePolicy>,
    max_body_bytes: usize,
}

impl McpScopeLayer {
    /// Enforces `policy`.
    pub fn new(policy: McpScopePolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
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
        }
    }
}

/// The service built by [`McpScopeLayer`].
#[derive(Clone, Debug)]
pub struct McpScope<S> {
    inner: S,
    policy: Arc<McpScopePolicy>,
    max_body_bytes: usize,
}

/// The boxed response future of [`McpScope`] (reading the body is asynchronous).
pub type McpScopeFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// What `body` requires under `policy`, or `None` when it is not JSON.
fn requirement(policy: &McpScopePolicy, body: &[u8]) -> Option<Requirement> {
    let message: Value = serde_json::from_slice(body).ok()?;
    Some(match &message {
        Value::Array(batch) => batch
            .iter()
            .fold(Requirement::Public, |acc, m| acc.and(policy.required(m))),
        single => policy.required(single).clone(),
    })
}

/// Why `principal` may not make a request with `requirement`, if it may not.
fn refuse(
    requirement: &Requirement,
    principal: Option<&Principal>,
    challenger: &Challenger,
) -> Option<Rejection> {
    match requirement {
        Requirement::Public => None,
        Requirement::Scopes(required) => check_scopes(
            principal,
            required,
            false,
            challenger.step_up_with_granted(),
        ),
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
        let policy = self.policy.clone();
        let limit = self.max_body_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let status = if error.is::<http_body_util::LengthLimitError>() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = status;
                    return Ok(response);
                }
            };
            let challenger = Challenger::from_extensions(&parts.extensions);
            if let Some(requirement) = requirement(&policy, &bytes)
                && let Some(rejection) = refuse(
                    &requirement,
                    parts.extensions.get::<Principal>(),
                    challenger,
                )
            {
                tracing::debug!(?requirement, "MCP operation refused");
                return Ok(challenger.response(&rejection, &parts.headers));
            }
            inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await
        })
    }
}
