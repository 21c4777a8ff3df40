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
use crate::{ConfigError, Scopes};

/// Requires scopes by request path: exact paths first, then the longest matching prefix, then a
/// default.
///
/// Rejections are those of [`RequireScopeLayer`](crate::RequireScopeLayer): 401 without a
/// principal, 403 `insufficient_scope` (gRPC: `PERMISSION_DENIED`) naming the path's scopes.
///
/// ```
/// use tower_introspect::PathScopeLayer;
///
/// # fn main() -> Result<(), tower_introspect::ConfigError> {
/// let scopes = PathScopeLayer::builder()
///     .path("/grpc.health.v1.Health/Check", ["read"])
///     .path("/grpc.health.v1.Health/Watch", ["admin"])
///     .prefix("/notes.v1.Notes/", ["notes"])
///     // Anything not named: fail closed.
///     .default_scopes(["admin"])
///     .build()?;
/// # let _ = scopes;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
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
    /// Configures the table: [`path`](PathScopeLayerBuilder::path),
    /// [`prefix`](PathScopeLayerBuilder::prefix), [`default_scopes`](PathScopeLayerBuilder::default_scopes).
    pub fn builder() -> PathScopeLayerBuilder {
        PathScopeLayerBuilder::default()
    }
}

/// Configures a [`PathScopeLayer`]; [`build`](Self::build) reports the first bad scope.
#[derive(Debug, Default)]
#[must_use]
pub struct PathScopeLayerBuilder {
    table: PathTable,
    error: Option<ConfigError>,
}

impl PathScopeLayerBuilder {
    /// The scopes for one rule, or the first error kept for [`build`](Self::build).
    fn scopes<I, T>(&mut self, setting: &'static str, scopes: I) -> Scopes
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        match Scopes::configured(setting, scopes) {
            Ok(scopes) => scopes,
            Err(error) => {
                self.error.get_or_insert(error);
                Scopes::new()
            }
        }
    }

    /// Every one of `scopes` is required for exactly `path`.
    pub fn path<I, T>(mut self, path: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let scopes = self.scopes("path", scopes);
        self.table.exact.insert(path.into(), scopes);
        self
    }

    /// Every one of `scopes` is required for paths starting with `prefix` (e.g. a whole gRPC
    /// service: `/package.Service/`).
    pub fn prefix<I, T>(mut self, prefix: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let scopes = self.scopes("prefix", scopes);
        self.table.prefixes.push((prefix.into(), scopes));
        self.table
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Scopes required for paths no rule names (default: none, only a principal).
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.table.default = self.scopes("default_scopes", scopes);
        self
    }

    /// The layer, or the first scope that is not a valid RFC 6749 `scope-token` (or is
    /// `offline_access`), with the setting that named it.
    pub fn build(self) -> Result<PathScopeLayer, ConfigError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(PathScopeLayer {
                table: Arc::new(self.table),
            }),
        }
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
        let layer = PathScopeLayer::builder()
            .prefix("/a.S/", ["s"])
            .prefix("/a.S/Admin", ["admin"])
            .path("/a.S/Read", ["read"])
            .default_scopes(["fallback"])
            .build()
            .unwrap();
        let t = &layer.table;
        assert_eq!(t.required("/a.S/Read").to_string(), "read");
        assert_eq!(t.required("/a.S/AdminDelete").to_string(), "admin");
        assert_eq!(t.required("/a.S/Other").to_string(), "s");
        assert_eq!(t.required("/b.T/X").to_string(), "fallback");
        assert!(
            PathScopeLayer::builder()
                .build()
                .unwrap()
                .table
                .required("/x")
                .is_empty()
        );
    }
}
