//! JSON error responses of the token, introspection, revocation and registration endpoints
//! (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2), including the router's own 404, 405 and 413.
//!
//! Descriptions are `&'static str`: they are written in the code and never echo request input,
//! so nothing an attacker sends is reflected into a response. They are still filtered to the
//! character set RFC 6749 §5.2 allows and bounded in length when rendered.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::storage::StorageError;

/// How long a client is told to wait (`Retry-After`) when the DPoP replay store is full of fresh
/// proofs: entries leave it as their proofs stop being fresh.
pub const DPOP_REPLAY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest `error_description` sent.
pub const MAX_DESCRIPTION_LEN: usize = 200;

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
    /// Scope unknown, not allowed, blank, or broader than granted.
    InvalidScope,
    /// RFC 8707: resource malformed, unknown, not allowed for the client, repeated, or not the
    /// one the grant is bound to.
    InvalidTarget,
    /// RFC 7591: a redirect URI is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591: other client metadata is not acceptable.
    InvalidClientMetadata,
    /// RFC 7591 §3 / RFC 6750 §3.1: the initial access token presented at registration is wrong
    /// (401 with a `Bearer` challenge).
    InvalidToken,
    /// The router's 404, 405 and 413 (status given by [`OAuthError::with_status`]).
    NotServed,
    /// The server failed (500); the cause is logged, not returned.
    ServerError,
    /// A limit was reached, or the database is unavailable for now; retry after the time in
    /// `Retry-After` (503, or 429 when the limit is the caller's own).
    TemporarilyUnavailable,
    /// RFC 9449 §5: the DPoP proof is missing, malformed, replayed, for another request, or
    /// signed by another key than the one the grant is bound to.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof needs a server nonce (sent in `DPoP-Nonce`).
    UseDpopNonce,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::NotServed => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error answer: `{"error": …, "error_description": …}` with the right status,
/// `Cache-Control: no-store`, and a `WWW-Authenticate` challenge on 401.
#[derive(Debug)]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// Human-readable description, written in the code (never request input, never secrets).
    pub description: &'static str,
    status: Option<StatusCode>,
    /// Sent as `Retry-After` (whole seconds, at least 1) when set.
    retry_after: Option<std::time::Duration>,
    /// Sent as `DPoP-Nonce` when set (RFC 9449 §8).
    dpop_nonce: Option<String>,
}

impl OAuthError {
    /// Builds an error.
    pub fn new(code: ErrorCode, description: &'static str) -> Self {
        Self {
            code,
            description,
            status: None,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// A refused DPoP proof at the token endpoint: `400 invalid_dpop_proof` or `400
    /// use_dpop_nonce` with the library's fixed description, and `DPoP-Nonce: nonce` when given;
    /// a full replay store is `503 temporarily_unavailable` with `Retry-After`
    /// ([`DPOP_REPLAY_RETRY_AFTER`]).
    pub fn dpop(err: tower_introspect::dpop::ProofError, nonce: Option<String>) -> Self {
        use tower_introspect::dpop::ProofError;
        let code = match err {
            ProofError::ReplayStoreFull => {
                return Self::unavailable(
                    StatusCode::SERVICE_UNAVAILABLE,
                    err.description(),
                    DPOP_REPLAY_RETRY_AFTER,
                );
            }
            ProofError::UseNonce => ErrorCode::UseDpopNonce,
            _ => ErrorCode::InvalidDpopProof,
        };
        Self {
            dpop_nonce: nonce,
            ..Self::new(code, err.description())
        }
    }

    /// `temporarily_unavailable` answered with `status` (503, or 429 for one caller's limit) and
    /// `Retry-After: wait`.
    pub fn unavailable(
        status: StatusCode,
        description: &'static str,
        wait: std::time::Duration,
    ) -> Self {
        Self {
            status: Some(status),
            retry_after: Some(wait),
            ..Self::new(ErrorCode::TemporarilyUnavailable, description)
        }
    }

    /// `temporarily_unavailable` (503) because the database is unavailable, with
    /// `Retry-After` ([`crate::storage::UNAVAILABLE_RETRY_AFTER`]).
    pub fn database_unavailable() -> Self {
        Self::unavailable(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry later",
            crate::storage::UNAVAILABLE_RETRY_AFTER,
        )
    }

    /// `invalid_request` answered with another status (the router's 404, 405, 413).
    pub fn with_status(status: StatusCode, description: &'static str) -> Self {
        Self {
            code: ErrorCode::NotServed,
            description,
            status: Some(status),
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_scope`.
    pub fn invalid_scope(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    /// `invalid_target`.
    pub fn invalid_target(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidTarget, description)
    }
}

/// An unavailable database answers `503 temporarily_unavailable` with `Retry-After`; any other
/// storage failure `500 server_error`.
impl From<StorageError> for OAuthError {
    fn from(err: StorageError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            return Self::database_unavailable();
        }
        tracing::error!(error = %err, "storage failure");
        Self::new(ErrorCode::ServerError, "internal error")
    }
}

impl From<crate::keys::KeyError> for OAuthError {
    fn from(err: crate::keys::KeyError) -> Self {
        if let crate::keys::KeyError::Storage(err) = err {
            return err.into();
        }
        // KeyError messages never contain key material.
        tracing::error!(error = %err, "signing key failure");
        Self::new(ErrorCode::ServerError, "internal error")
    }
}

/// `description` reduced to RFC 6749 §5.2's `error_description` characters (%x20-21 / %x23-5B /
/// %x5D-7E; anything else becomes `?`) and to [`MAX_DESCRIPTION_LEN`] characters.
pub fn safe_description(description: &str) -> String {
    description
        .chars()
        .take(MAX_DESCRIPTION_LEN)
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E' => c,
            _ => '?',
        })
        .collect()
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": self.code.as_str(),
            "error_description": safe_description(self.description),
        }));
        let status = self.status.unwrap_or_else(|| self.code.status());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(wait) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::limits::retry_after_secs(wait)),
            );
        }
        if let Some(nonce) = self
            .dpop_nonce
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert(tower_introspect::dpop::DPOP_NONCE, nonce);
        }
        let challenge = match self.code {
            ErrorCode::InvalidClient => Some("Basic realm=\"oauth-provider\", charset=\"UTF-8\""),
            ErrorCode::InvalidToken => {
                Some("Bearer realm=\"oauth-provider\", error=\"invalid_token\"")
            }
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The router's fallback for unknown paths: a JSON `404`.
pub async fn not_found() -> Response {
    OAuthError::with_status(StatusCode::NOT_FOUND, "no such endpoint").into_response()
}

/// Rewrites the framework's plain-text `405` and `413` answers of the API endpoints into JSON
/// errors (keeping the status and the `Allow` header); every other response passes unchanged.
pub async fn json_framework_errors(response: Response) -> Response {
    let description = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        StatusCode::NOT_FOUND => "no such endpoint",
        _ => return response,
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut rewritten = OAuthError::with_status(response.status(), description).into_response();
    if let Some(allow) = allow {
        rewritten.headers_mut().insert(header::ALLOW, allow);
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_answers_503_with_retry_after_and_a_failure_500() {
        let unavailable = OAuthError::from(StorageError::from(sqlx::Error::PoolTimedOut));
        let response = unavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let failed = OAuthError::from(StorageError::from(sqlx::Error::RowNotFound));
        let response = failed.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let key = crate::keys::KeyError::Storage(StorageError::from(sqlx::Error::PoolClosed));
        assert_eq!(
            OAuthError::from(key).into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn dpop_refusals_are_400_with_their_code_and_a_full_replay_store_503() {
        use tower_introspect::dpop::ProofError;
        let response = OAuthError::dpop(ProofError::Replayed, None).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("dpop-nonce").is_none());
        let response =
            OAuthError::dpop(ProofError::UseNonce, Some("the-nonce".into())).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["dpop-nonce"], "the-nonce");
        let full = OAuthError::dpop(ProofError::ReplayStoreFull, None);
        assert_eq!(full.code, ErrorCode::TemporarilyUnavailable);
        let response = full.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "10");
        assert_eq!(
            OAuthError::dpop(ProofError::Replayed, None).code.as_str(),
            "invalid_dpop_proof"
        );
        assert_eq!(
            OAuthError::dpop(ProofError::UseNonce, None).code.as_str(),
            "use_dpop_nonce"
        );
    }

    #[test]
    fn descriptions_keep_only_the_allowed_characters_and_are_bounded() {
        assert_eq!(safe_description("a\"b\\c\u{e9}\n~"), "a?b?c??~");
        assert_eq!(
            safe_description(&"x".repeat(1000)).len(),
            MAX_DESCRIPTION_LEN
        );
    }
}
