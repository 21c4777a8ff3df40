//! Why a Security Event Token was refused, in the terms of RFC 8935 §2.4 (push) and RFC 8936 §2.4
//! (poll), which share their error codes.

use std::fmt;

use crate::Unavailable;

/// Why a SET was not accepted.
///
/// Every refusal but [`SetError::Unavailable`] is final: sending the same SET again gets the same
/// answer, so a transmitter should not retry it. `Unavailable` means "not now" (the transmitter's
/// keys could not be had, or the replay store is full): the SET was not acted on and should be
/// sent again later.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetError {
    /// The SET could not be parsed, lacks a required claim, is too old or from the future, or
    /// repeats a `jti` already received (`invalid_request`).
    InvalidRequest(&'static str),
    /// The signature does not verify, or names an algorithm or key that is not accepted
    /// (`invalid_key`).
    InvalidKey(&'static str),
    /// `iss` is not the configured transmitter (`invalid_issuer`).
    InvalidIssuer,
    /// `aud` does not name this receiver (`invalid_audience`).
    InvalidAudience,
    /// The push request did not carry the stream's `Authorization` header
    /// (`authentication_failed`).
    AuthenticationFailed,
    /// The SET could not be checked now; nothing was acted on.
    Unavailable(Unavailable),
}

impl SetError {
    /// The RFC 8935 error code (`err`), or `None` for [`SetError::Unavailable`], which is
    /// answered with a 503 instead.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AuthenticationFailed => "authentication_failed",
            Self::Unavailable(_) => return None,
        })
    }

    /// A human-readable description (`description`). It names what was wrong, never the SET's
    /// content.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(why) | Self::InvalidKey(why) => why,
            Self::InvalidIssuer => "the SET's iss is not the transmitter this receiver trusts",
            Self::InvalidAudience => "the SET's aud does not name this receiver",
            Self::AuthenticationFailed => "the request lacks the stream's authorization",
            Self::Unavailable(_) => "the SET cannot be checked now; send it again later",
        }
    }

    /// Whether sending the same SET again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// A short label for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            other => other.code().unwrap_or("unavailable"),
        }
    }

    /// The RFC 8935 error object `{"err": …, "description": …}`.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "err": self.code().unwrap_or("temporarily_unavailable"),
            "description": self.description(),
        })
    }
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(code) => write!(f, "{code}: {}", self.description()),
            None => write!(f, "unavailable: {}", self.description()),
        }
    }
}

impl std::error::Error for SetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(cause) => Some(cause),
            _ => None,
        }
    }
}
