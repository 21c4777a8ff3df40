//! RFC 9728 OAuth 2.0 Protected Resource Metadata: how clients find the authorization server.
//!
//! An MCP client that receives a 401 reads `resource_metadata` from the challenge, fetches this
//! document, and learns which authorization server to use and which `resource` value to ask a token
//! for. The document's `resource` must be the resource's URL exactly as clients use it (no slash
//! added or removed), or clients reject it.
//!
//! ```
//! use tower_introspect::metadata::ProtectedResourceMetadata;
//!
//! let metadata = ProtectedResourceMetadata::new("https://mcp.example.com/mcp", "https://auth.example.com")?
//!     .scopes_supported(["read", "write"])?
//!     .resource_name("Example MCP server");
//! assert_eq!(
//!     metadata.metadata_url(),
//!     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
//! );
//! assert_eq!(
//!     metadata.well_known_paths(),
//!     ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
//! );
//! # Ok::<(), tower_introspect::ConfigError>(())
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tower_service::Service;
use url::Url;

use crate::dpop::{Dpop, DpopPolicy};
use crate::{ConfigError, Scopes};

/// The well-known path prefix of RFC 9728 §3.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// An RFC 9728 protected resource metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: the URL clients call and put in `resource` token requests.
    pub resource: String,
    /// Authorization servers that issue tokens for this resource (never empty).
    pub authorization_servers: Vec<String>,
    /// Scopes clients may request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be presented: only `header` (RFC 6750 §2.1), as the layer reads nothing else.
    pub bearer_methods_supported: Vec<String>,
    /// Human-readable name of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// URL of developer documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// URL of the resource's policy on data use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy_uri: Option<String>,
    /// URL of the resource's terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_tos_uri: Option<String>,
    /// The algorithms DPoP proofs may use here (RFC 9728 §2, RFC 9449): present when the layer
    /// accepts DPoP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether this resource accepts DPoP-bound tokens only (RFC 9728 §2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens_required: bool,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, protected by `authorization_server` (its issuer identifier).
    ///
    /// `resource` must be an absolute http(s) URL without query or fragment; it is kept exactly as
    /// given.
    pub fn new(resource: &str, authorization_server: &str) -> Result<Self, ConfigError> {
        // Validated with `url`, but kept as given: `Url` would add a "/" to a bare origin.
        parse_resource(resource)?;
        Ok(Self {
            resource: resource.to_owned(),
            authorization_servers: vec![authorization_server.to_owned()],
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            resource_documentation: None,
            resource_policy_uri: None,
            resource_tos_uri: None,
            dpop_signing_alg_values_supported: Vec::new(),
            dpop_bound_access_tokens_required: false,
        })
    }

    /// Advertises what the layer's `dpop` settings accept: the proof algorithms
    /// (`dpop_signing_alg_values_supported`) unless DPoP is disabled, and
    /// `dpop_bound_access_tokens_required` when it is required. Give it the same [`Dpop`] as
    /// [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop), so that the document and the
    /// layer cannot disagree.
    #[must_use]
    pub fn dpop(mut self, dpop: &Dpop) -> Self {
        let accepted = dpop.policy() != DpopPolicy::Disabled;
        self.dpop_signing_alg_values_supported = if accepted {
            dpop.checker()
                .algorithms()
                .iter()
                .map(|alg| alg.name().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        self.dpop_bound_access_tokens_required = dpop.policy() == DpopPolicy::Required;
        self
    }

    /// Adds another authorization server.
    #[must_use]
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// Sets `scopes_supported` (in the order given).
    ///
    /// An error names a scope that is not a valid RFC 6749 `scope-token` (see
    /// [`Scopes::is_scope_token`]): a client would request it and get a token no server can
    /// express; or `offline_access`: it asks the authorization server for a refresh token, it is
    /// not a scope of this resource (MCP clients add it themselves when the server supports it).
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        // Each one checked on its own: the advertised list keeps the caller's order and spelling.
        for scope in &self.scopes_supported {
            Scopes::configured("scopes_supported", [scope.as_str()])?;
            if !Scopes::is_scope_token(scope) {
                return Err(ConfigError::Invalid {
                    setting: "scopes_supported",
                    reason: format!("{scope:?} is not a valid OAuth scope (RFC 6749 §3.3)"),
                });
            }
        }
        Ok(self)
    }

    /// Sets `resource_name`.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets `resource_documentation`.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The path part of the resource, as the well-known suffix (`""` for a bare origin).
    fn resource_path(&self) -> &str {
        let after_scheme = self.resource.split_once("://").map_or("", |(_, rest)| rest);
        let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        if path == "/" { "" } else { path }
    }

    /// Where RFC 9728 §3.1 puts this document: the well-known prefix inserted between the origin and
    /// the resource's path. This is the URL to give
    /// [`BearerAuthLayer::resource_metadata`](crate::BearerAuthLayer::resource_metadata).
    pub fn metadata_url(&self) -> String {
        let path = self.resource_path();
        let origin = &self.resource[..self.resource.len() - path.len()];
        let origin = origin.trim_end_matches('/');
        format!("{origin}{WELL_KNOWN_PREFIX}{path}")
    }

    /// The paths the document is served at: the path-specific one, then the root one (many clients
    /// try the root). One path when the resource is an origin.
    pub fn well_known_paths(&self) -> Vec<String> {
        let path = self.resource_path();
        let mut paths = vec![format!("{WELL_KNOWN_PREFIX}{path}")];
        if !path.is_empty() {
            paths.push(WELL_KNOWN_PREFIX.to_owned());
        }
        paths
    }

    /// A tower service answering `GET` on [`well_known_paths`](Self::well_known_paths) with this
    /// document (and 404 elsewhere).
    pub fn into_service(self) -> MetadataService {
        let body = Bytes::from(serde_json::to_vec(&self).expect("metadata serializes to JSON"));
        MetadataService {
            inner: Arc::new(MetadataInner {
                paths: self.well_known_paths(),
                body,
            }),
        }
    }

    /// An axum router serving the document at both well-known paths; merge it into your app
    /// *outside* the bearer layer (the document is public).
    #[cfg(feature = "axum")]
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        let paths = self.well_known_paths();
        let service = self.into_service();
        paths.iter().fold(axum::Router::new(), |router, path| {
            router.route_service(path, service.clone())
        })
    }
}

fn parse_resource(resource: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        url: resource.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(resource).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("a resource is an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || resource.contains(['?', '#']) {
        return Err(invalid("a resource has no query or fragment"));
    }
    Ok(())
}

#[derive(Debug)]
struct MetadataInner {
    paths: Vec<String>,
    body: Bytes,
}

/// The service built by [`ProtectedResourceMetadata::into_service`].
///
/// The document is public: it is served with `Access-Control-Allow-Origin: *` so browser-based
/// MCP clients can read it, and cacheable for an hour.
#[derive(Debug, Clone)]
pub struct MetadataService {
    inner: Arc<MetadataInner>,
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let known = self.inner.paths.iter().any(|p| p == request.uri().path());
        let mut response = Response::new(Full::default());
        if !known {
            *response.status_mut() = StatusCode::NOT_FOUND;
        } else if request.method() == Method::GET || request.method() == Method::HEAD {
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            if request.method() == Method::GET {
                *response.body_mut() = Full::new(self.inner.body.clone());
            }
        } else if request.method() == Method::OPTIONS {
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(
                http::header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
        } else {
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_keep_the_resource_exact() {
        let m = ProtectedResourceMetadata::new("https://h.example/mcp/", "https://as").unwrap();
        assert_eq!(m.resource, "https://h.example/mcp/");
        assert_eq!(
            m.metadata_url(),
            "https://h.example/.well-known/oauth-protected-resource/mcp/"
        );
        let m = ProtectedResourceMetadata::new("http://127.0.0.1:8080", "https://as").unwrap();
        assert_eq!(m.resource, "http://127.0.0.1:8080");
        assert_eq!(
            m.metadata_url(),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            m.well_known_paths(),
            ["/.well-known/oauth-protected-resource"]
        );
        let m = ProtectedResourceMetadata::new("https://h.example/", "https://as").unwrap();
        assert_eq!(
            m.metadata_url(),
            "https://h.example/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn rejects_unusable_resources() {
        for bad in [
            "h.example/mcp",
            "ftp://h/x",
            "https://h/mcp?x=1",
            "https://h/mcp#f",
        ] {
            assert!(
                ProtectedResourceMetadata::new(bad, "https://as").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_shape() {
        let m = ProtectedResourceMetadata::new("https://h/mcp", "https://as")
            .unwrap()
            .scopes_supported(["read"])
            .unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({
                "resource": "https://h/mcp",
                "authorization_servers": ["https://as"],
                "scopes_supported": ["read"],
                "bearer_methods_supported": ["header"],
            })
        );
    }
}
