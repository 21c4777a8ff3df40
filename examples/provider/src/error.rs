//! JSON error responses of the token, introspection, revocation and registration endpoints
//! (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2).

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::storage::StorageError;

/// Standard OAuth error codes used by this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Missing, repeated or malformed parameter.
    InvalidRequest,
    /// Client authentication failed (401).
    InvalidClient,
    /// Bad, expired, revoked or replayed code / refresh token, or a binding mismatch.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// Unknown grant type.
    UnsupportedGrantType,
    /// Scope unknown, not allowed, or broader than granted.
    InvalidScope,
    /// RFC 8707: resource malformed or not the one the grant is bound to.
    InvalidTarget,
    /// RFC 7591: a redirect URI is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591: other client metadata is not acceptable.
    InvalidClientMetadata,
    /// The server failed (500); the cause is logged, not returned.
    ServerError,
    /// A limit was reached; retry after the time in `Retry-After` (503, or 429 when the limit
    /// is the caller's own).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error answer: `{"error": …, "error_description": …}` with the right status,
/// `Cache-Control: no-store`, and `WWW-Authenticate: Basic` on 401.
#[derive(Debug)]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// Human-readable description (never contains secrets).
    pub description: Cow<'static, str>,
}

impl OAuthError {
    /// Builds an error.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }
}

impl From<StorageError> for OAuthError {
    fn from(err: StorageError) -> Self {
        tracing::error!(error = %err, "storage failure");
        Self::new(ErrorCode::ServerError, "internal error")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        }));
        let mut response = (self.code.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidClient {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth-provider\", charset=\"UTF-8\""),
            );
        }
        response
    }
}
