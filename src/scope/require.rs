//! [`RequireScopeLayer`]: per-route scope enforcement after [`BearerAuthLayer`](crate::BearerAuthLayer).
//!
//! The bearer layer answers "who is calling"; this layer answers "may they do this". It runs on
//! every request, also when the principal came from the cache, so a cached token never carries
//! more rights than the route allows.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tower_introspect::RequireScopeLayer;
//!
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! // A scope that is not a valid RFC 6749 scope-token is refused here, at start-up.
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "list" }))
//!     .route_layer(RequireScopeLayer::all(["read"])?)
//!     .route("/admin", post(|| async { "done" }).route_layer(RequireScopeLayer::all(["admin", "write"])?));
//! // … then `.layer(bearer_auth_layer)` around the whole router.
//! # let _ = app;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::ScopeFuture;
use crate::challenge::{Challenger, Rejection};
use crate::{ConfigError, Principal, Scopes};

/// How the required scopes combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// Requires the request's [`Principal`] to hold scopes, answering RFC 6750 challenges otherwise.
///
/// - No principal (the bearer layer is missing, placed inside this one, or let an anonymous
///   request through): 401 with the no-token challenge. Never a pass: the layer fails closed.
/// - Scopes missing: 403 `insufficient_scope` whose `scope` parameter names every required scope
///   (for [`any`](Self::any), every acceptable one), so the client can ask for them in one step.
///
/// The challenge parameters (`realm`, `resource_metadata`) are the bearer layer's, read from the
/// request, so the two layers cannot disagree.
#[derive(Clone)]
pub struct RequireScopeLayer {
    required: Arc<Scopes>,
    mode: Mode,
}

impl RequireScopeLayer {
    /// Requires every one of `scopes`; an error names a scope that is not a valid RFC 6749
    /// `scope-token` (see [`Scopes::is_scope_token`]) or is `offline_access`.
    pub fn all<I, T>(scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Ok(Self {
            required: Arc::new(Scopes::configured("RequireScopeLayer::all", scopes)?),
            mode: Mode::All,
        })
    }

    /// Requires at least one of `scopes` (an empty list is never satisfied); errors as
    /// [`all`](Self::all).
    pub fn any<I, T>(scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Ok(Self {
            required: Arc::new(Scopes::configured("RequireScopeLayer::any", scopes)?),
            mode: Mode::Any,
        })
    }

    /// The scopes this layer names in its challenges.
    pub fn scopes(&self) -> &Scopes {
        &self.required
    }
}

impl fmt::Debug for RequireScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("required", &self.required)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            required: self.required.clone(),
            mode: self.mode,
        }
    }
}

/// The service built by [`RequireScopeLayer`].
#[derive(Clone)]
pub struct RequireScope<S> {
    inner: S,
    required: Arc<Scopes>,
    mode: Mode,
}

impl<S: fmt::Debug> fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("inner", &self.inner)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Whether `principal` holds all (or, with `any`, one) of `required`, under the hierarchy the
/// bearer layer configured.
fn satisfies(principal: &Principal, required: &Scopes, any: bool) -> bool {
    let hierarchy = principal.scope_hierarchy();
    let granted = principal.scopes();
    if any {
        hierarchy.satisfies_any(granted, required.iter())
    } else {
        hierarchy.satisfies_all(granted, required.iter())
    }
}

/// Decides whether the principal of a request with `headers` satisfies a requirement; `None` when
/// it does. The rejection names `required` (the narrow scopes, also when a broader one would do),
/// plus the granted scopes when the challenger's [`StepUpScopes`](crate::StepUpScopes) says so
/// for this request.
pub(crate) fn check_scopes(
    principal: Option<&Principal>,
    required: &Scopes,
    any: bool,
    challenger: &Challenger,
    headers: &HeaderMap,
) -> Option<Rejection> {
    let Some(principal) = principal else {
        return Some(Rejection::MissingToken);
    };
    (!satisfies(principal, required, any)).then(|| {
        Rejection::InsufficientScope(if challenger.step_up_scopes().includes_granted(headers) {
            required.union(principal.scopes())
        } else {
            required.clone()
        })
    })
}

/// Calls `inner` if the request's principal satisfies `required`, or answers the rejection: the one
/// decision every scope layer makes once it knows what a request requires.
pub(crate) fn guard<S, ReqBody, ResBody>(
    inner: &mut S,
    request: Request<ReqBody>,
    required: &Scopes,
    any: bool,
) -> ScopeFuture<S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    let principal = request.extensions().get::<Principal>();
    if principal.is_some_and(|p| satisfies(p, required, any)) {
        return ScopeFuture::inner(inner.call(request));
    }
    let challenger = Challenger::of(&request);
    let rejection = check_scopes(principal, required, any, challenger, request.headers())
        .unwrap_or(Rejection::MissingToken);
    tracing::debug!(path = request.uri().path(), %required, "request lacks a required scope");
    ScopeFuture::rejected(challenger.response(&rejection, request.headers()))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ScopeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        guard(
            &mut self.inner,
            request,
            &self.required,
            self.mode == Mode::Any,
        )
    }
}
