//! [`McpSessionBindingLayer`]: an MCP session belongs to the principal that created it.

use std::fmt;
use std::mem;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode};
use moka::sync::Cache;
use tower_layer::Layer;
use tower_service::Service;

use super::scope_layer::McpScopeFuture;
use crate::Principal;

/// The MCP session header.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Default bound on remembered sessions.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;
/// Default time a session binding is kept after its last use.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Who created a session: issuer, subject and client of its principal (`None` when anonymous).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner(Option<(Option<String>, Option<String>, Option<String>)>);

impl Owner {
    fn of(principal: Option<&Principal>) -> Self {
        Self(principal.map(|p| {
            (
                p.issuer().map(str::to_owned),
                p.subject().map(str::to_owned),
                p.client_id().map(str::to_owned),
            )
        }))
    }
}

/// Binds each `Mcp-Session-Id` to the principal whose request created it, and refuses (403) a
/// request that presents the session id under another principal.
///
/// Session ids travel in a plain header; the MCP specification asks servers not to treat them as
/// authentication and to bind them to the user. With this layer a leaked session id is useless to
/// anyone holding a different token (the same user with a refreshed token keeps working, since the
/// binding is to issuer, subject and client, not to the token).
///
/// A session created anonymously (bearer layer in
/// [`allow_missing_token`](crate::BearerAuthLayer::allow_missing_token) mode) is bound to the first
/// principal that uses it, and then refused to anyone else, anonymous callers included.
///
/// The bindings are kept in a bounded cache (default 100,000 sessions, dropped after an hour
/// without use) and forgotten when a `DELETE` ends the session. A session id the layer does not
/// know (e.g. created before a restart) is passed through: the MCP service answers 404 for it.
///
/// Place it inside [`BearerAuthLayer`](crate::BearerAuthLayer).
#[derive(Clone)]
pub struct McpSessionBindingLayer {
    owners: Cache<String, Owner>,
}

impl Default for McpSessionBindingLayer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE)
    }
}

impl McpSessionBindingLayer {
    /// Remembers at most `max_sessions` bindings, each until `idle` passes without use.
    pub fn new(max_sessions: u64, idle: Duration) -> Self {
        Self {
            owners: Cache::builder()
                .max_capacity(max_sessions)
                .time_to_idle(idle)
                .build(),
        }
    }
}

impl fmt::Debug for McpSessionBindingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionBindingLayer")
            .field("sessions", &self.owners.entry_count())
            .finish()
    }
}

impl<S> Layer<S> for McpSessionBindingLayer {
    type Service = McpSessionBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpSessionBinding {
            inner,
            owners: self.owners.clone(),
        }
    }
}

/// The service built by [`McpSessionBindingLayer`].
#[derive(Clone)]
pub struct McpSessionBinding<S> {
    inner: S,
    owners: Cache<String, Owner>,
}

impl<S: fmt::Debug> fmt::Debug for McpSessionBinding<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionBinding")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpSessionBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = McpScopeFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let owner = Owner::of(request.extensions().get::<Principal>());
        let presented = request
            .headers()
            .get(&MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(session) = &presented
            && let Some(bound) = self.owners.get(session)
            && bound != owner
        {
            if bound.0.is_none() {
                // An anonymous session becomes its first authenticated user's.
                self.owners.insert(session.clone(), owner.clone());
            } else {
                tracing::warn!("MCP session id presented by a principal that did not create it");
                let mut response = Response::new(ResBody::default());
                *response.status_mut() = StatusCode::FORBIDDEN;
                return Box::pin(async move { Ok(response) });
            }
        }
        let ends_session = request.method() == Method::DELETE;
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let owners = self.owners.clone();
        Box::pin(async move {
            let response = inner.call(request).await?;
            if ends_session && response.status().is_success() {
                if let Some(session) = presented {
                    owners.invalidate(&session);
                }
            } else if presented.is_none()
                && let Some(created) = response
                    .headers()
                    .get(&MCP_SESSION_ID)
                    .and_then(|v| v.to_str().ok())
            {
                owners.insert(created.to_owned(), owner);
            }
            Ok(response)
        })
    }
}
