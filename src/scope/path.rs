//! [`PathScopeLayer`]: scopes per request path, for servers whose routes are not separate services
//! (gRPC methods are paths: `/package.Service/Method`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::ScopeFuture;
use super::guard;
use crate::Scopes;

/// Requires scopes by request path: exact paths first, then the longest matching prefix, then a
/// default.
///
/// Rejections are those of [`RequireScopeLayer`](crate::RequireScopeLayer): 401 without a
/// principal, 403 `insufficient_scope` (gRPC: `PERMISSION_DENIED`) naming the path's scopes.
///
/// ```
/// use tower_introspect::PathScopeLayer;
///
/// let scopes = PathScopeLayer::new()
///     .path("/grpc.health.v1.Health/Check", ["read"])
///     .path("/grpc.health.v1.Health/Watch", ["admin"])
///     .prefix("/notes.v1.Notes/", ["notes"])
///     // Anything not named: fail closed.
///     .default_scopes(["admin"]);
/// # let _ = scopes;
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct PathScopeLayer {
    table: Arc<PathTable>,
}

#[derive(Debug, Clone, Default)]
struct PathTable {
    exact: HashMap<String, Scopes>,
    /// Longest first, so the first match is the most specific.
    prefixes: Vec<(String, Scopes)>,
    default: Scopes,
}

impl PathTable {
    fn required(&self, path: &str) -> &Scopes {
        self.exact
            .get(path)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                    .map(|(_, scopes)| scopes)
            })
            .unwrap_or(&self.default)
    }
}

impl PathScopeLayer {
    /// A layer that requires nothing but a principal until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&mut self) -> &mut PathTable {
        Arc::make_mut(&mut self.table)
    }

    /// Every one of `scopes` is required for exactly `path`.
    ///
    /// # Panics
    ///
    /// When a scope is not a valid RFC 6749 `scope-token` (see [`Scopes::is_scope_token`]).
    #[track_caller]
    pub fn path<I, T>(mut self, path: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.table()
            .exact
            .insert(path.into(), Scopes::configured(scopes));
        self
    }

    /// Every one of `scopes` is required for paths starting with `prefix` (e.g. a whole gRPC
    /// service: `/package.Service/`).
    ///
    /// # Panics
    ///
    /// When a scope is not a valid RFC 6749 `scope-token` (see [`Scopes::is_scope_token`]).
    #[track_caller]
    pub fn prefix<I, T>(mut self, prefix: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let table = self.table();
        table
            .prefixes
            .push((prefix.into(), Scopes::configured(scopes)));
        table
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Scopes required for paths no rule names (default: none, only a principal).
    ///
    /// # Panics
    ///
    /// When a scope is not a valid RFC 6749 `scope-token` (see [`Scopes::is_scope_token`]).
    #[track_caller]
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.table().default = Scopes::configured(scopes);
        self
    }
}

impl fmt::Debug for PathScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathScopeLayer")
            .field("table", &self.table)
            .finish()
    }
}

impl<S> Layer<S> for PathScopeLayer {
    type Service = PathScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PathScope {
            inner,
            table: self.table.clone(),
        }
    }
}

/// The service built by [`PathScopeLayer`].
#[derive(Clone)]
pub struct PathScope<S> {
    inner: S,
    table: Arc<PathTable>,
}

impl<S: fmt::Debug> fmt::Debug for PathScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathScope")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PathScope<S>
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
        let required = self.table.required(request.uri().path());
        guard(&mut self.inner, request, required, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_prefix_then_default() {
        let layer = PathScopeLayer::new()
            .prefix("/a.S/", ["s"])
            .prefix("/a.S/Admin", ["admin"])
            .path("/a.S/Read", ["read"])
            .default_scopes(["fallback"]);
        let t = &layer.table;
        assert_eq!(t.required("/a.S/Read").to_string(), "read");
        assert_eq!(t.required("/a.S/AdminDelete").to_string(), "admin");
        assert_eq!(t.required("/a.S/Other").to_string(), "s");
        assert_eq!(t.required("/b.T/X").to_string(), "fallback");
        assert!(PathScopeLayer::new().table.required("/x").is_empty());
    }
}
