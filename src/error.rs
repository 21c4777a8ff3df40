//! Why a token was not accepted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The outcome of a failed verification.
///
/// The distinction matters for the response and for caching: an [`Invalid`](Self::Invalid) token
/// is the client's problem (401 `invalid_token`, cached briefly as a negative verdict), while an
/// [`Unavailable`](Self::Unavailable) or [`Throttled`](Self::Throttled) authorization server is
/// ours (503 without a challenge, never cached, so the next request asks again).
///
/// Non-exhaustive: a later release may tell more situations apart.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not acceptable for this resource.
    #[error("invalid token: {0}")]
    Invalid(InvalidToken),
    /// The token could not be checked: the authorization server failed, timed out, or answered
    /// something that is not an introspection response.
    #[error("token could not be verified: {0}")]
    Unavailable(#[source] Unavailable),
    /// The token could not be checked because the authorization server asked us to slow down
    /// (`429 Too Many Requests`): no call is made to it for the given time (its `Retry-After`,
    /// capped), and the client is told to retry after it (503 with that `Retry-After`).
    #[error("token could not be verified: the authorization server asked to retry in {0:?}")]
    Throttled(Duration),
}

/// Why an otherwise well-formed token was refused.
///
/// Each reason maps to a fixed, non-revealing `error_description` (see [`description`](Self::description)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The authorization server says `active: false` (unknown, revoked or expired there).
    Inactive,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `aud` is missing or does not contain this resource.
    WrongAudience,
    /// `iss` is missing or not the expected issuer.
    WrongIssuer,
    /// The token is not an access token (e.g. a refresh token was presented).
    NotAnAccessToken,
    /// The granted `scope` breaks RFC 6749 §3.3 (a scope holds a character outside NQCHAR, e.g. a
    /// TAB or NBSP). Such a token is refused whole rather than read one way here and another way by
    /// whoever splits its scopes next.
    MalformedScope,
    /// A JWT that cannot be read: not three base64url parts, a header or claims that are not JSON
    /// objects, a claim of the wrong type, no `exp`, an unsupported or disallowed `alg`, or a
    /// `crit` header (no JWS extension is understood here).
    Malformed,
    /// A JWT whose signature does not verify with the issuer's key.
    InvalidSignature,
    /// A JWT from an issuer this resource does not trust (no verifier is configured for its
    /// `iss`). Refused without any network call.
    UnknownIssuer,
    /// A JWT signed with a key (`kid`) the issuer does not publish, even after a refetch of its
    /// key set (at most one per issuer per refetch interval).
    UnknownKey,
    /// A token bound to a key (`cnf.jkt`, RFC 9449) presented as a bearer token: without the
    /// proof that the caller holds the key, it is refused (RFC 9449 §7.2).
    BoundToKey,
    /// A token sent with the `DPoP` scheme that is not bound to any key.
    NotBound,
    /// A bearer token sent to a resource that accepts DPoP-bound tokens only.
    DpopRequired,
    /// A token bound by a confirmation method this resource cannot check: a `cnf` member other
    /// than a DPoP `jkt` (mutual-TLS `x5t#S256`, RFC 8705; `jwk`, `kid`, …), or a `cnf` that is
    /// not an object of strings. Accepting it as a bearer token would drop the binding its
    /// issuer promised, so it is refused unless
    /// [`accept_unverifiable_bindings`](crate::BearerAuthLayer::accept_unverifiable_bindings).
    UnverifiableBinding,
}

impl InvalidToken {
    /// The `error_description` sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Inactive => "The access token is not active",
            Self::Expired => "The access token expired",
            Self::NotYetValid => "The access token is not valid yet",
            Self::WrongAudience => "The access token is not meant for this resource",
            Self::WrongIssuer => "The access token was issued by an untrusted issuer",
            Self::NotAnAccessToken => "The presented token is not an access token",
            Self::MalformedScope => "The access token's scope is malformed",
            Self::Malformed => "The access token is malformed",
            Self::InvalidSignature => "The access token's signature is invalid",
            Self::UnknownIssuer => "The access token was issued by an untrusted issuer",
            Self::UnknownKey => "The access token was signed with an unknown key",
            Self::BoundToKey => {
                "The access token is bound to a key: present it with the DPoP scheme and a proof"
            }
            Self::NotBound => "The access token is not bound to a DPoP key",
            Self::DpopRequired => "This resource accepts DPoP-bound access tokens only",
            Self::UnverifiableBinding => {
                "The access token is bound by a confirmation method this resource cannot verify"
            }
        }
    }

    /// A short, stable identifier for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::NotAnAccessToken => "not_an_access_token",
            Self::MalformedScope => "malformed_scope",
            Self::Malformed => "malformed",
            Self::InvalidSignature => "invalid_signature",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::BoundToKey => "bound_to_key",
            Self::NotBound => "not_bound",
            Self::DpopRequired => "dpop_required",
            Self::UnverifiableBinding => "unverifiable_binding",
        }
    }
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl VerifyError {
    /// An [`Unavailable`](Self::Unavailable) error: the server could not give a verdict, for
    /// `cause`, described by `detail` (logged; never sent to the client).
    pub fn unavailable(cause: UnavailableCause, detail: impl Into<String>) -> Self {
        Self::Unavailable(Unavailable::new(cause, detail))
    }
}

/// Why a token could not be checked, with what went wrong in words.
///
/// The cause is a short fixed set, for metrics and alerts; the detail (which may name the
/// endpoint's URL, never a token) is for logs.
#[derive(Debug, Clone)]
pub struct Unavailable {
    cause: UnavailableCause,
    detail: String,
    /// What failed underneath (e.g. the HTTP client's error), for `Error::source` chains.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The error itself, not the `Arc` around it, so that callers can downcast it.
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl Unavailable {
    /// An unavailability for `cause`, described by `detail` (logged; never sent to the client).
    pub fn new(cause: UnavailableCause, detail: impl Into<String>) -> Self {
        Self {
            cause,
            detail: detail.into(),
            source: None,
        }
    }

    /// This unavailability, caused by `source` (kept as the error's
    /// [`source`](std::error::Error::source), so logs and callers can walk the chain).
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Why, as one of a few fixed causes.
    pub fn cause(&self) -> UnavailableCause {
        self.cause
    }

    /// What went wrong, in words.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Why the authorization server could not give a verdict: the `cause` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnavailableCause {
    /// No answer within the request timeout (waiting for a call slot included).
    Timeout,
    /// The request could not be sent or its answer not received (connection refused or reset,
    /// DNS, TLS).
    Unreachable,
    /// The server answered with a status other than 2xx and 429.
    Status,
    /// The answer is not an introspection response (not JSON, a wrong shape, too large).
    InvalidResponse,
    /// The introspection endpoint or the key set's location is not known yet: discovery of the
    /// authorization server's metadata has not succeeded.
    Discovery,
    /// No signing keys of the issuer are known yet: its key set (JWKS) could not be fetched.
    Keys,
    /// Any other reason (a custom verifier's, for instance).
    Other,
}

impl UnavailableCause {
    /// A short, stable identifier for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Status => "status",
            Self::InvalidResponse => "invalid_response",
            Self::Discovery => "discovery",
            Self::Keys => "keys",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for UnavailableCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<InvalidToken> for VerifyError {
    fn from(reason: InvalidToken) -> Self {
        Self::Invalid(reason)
    }
}

/// A configuration error found while building a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL could not be parsed or is not usable here.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// RFC 8414 discovery failed.
    #[error("authorization server discovery failed: {0}")]
    Discovery(String),
    /// A setting that has no safe default was not given.
    #[error("{setting} is required: {why}")]
    Missing {
        /// The builder method that gives it.
        setting: &'static str,
        /// Why there is no default.
        why: &'static str,
    },
    /// A setting's value cannot be used.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The builder method that gave it.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
