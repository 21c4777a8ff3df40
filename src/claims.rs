//! The claims of a verified token, in a form that belongs to no verifier.
//!
//! Every verifier (introspection, JWT, a custom one) turns what it verified into [`TokenClaims`],
//! the same checks (`ClaimChecks`) judge them whichever verifier ran, and a
//! [`Principal`](crate::Principal) is built from them. Nothing above the verifier knows how a token
//! was verified, except through [`VerifierKind`], which says so explicitly.

use std::time::Duration;

use crate::{InvalidToken, Scopes};

/// Which kind of verifier vouched for a principal.
///
/// Operators read it in metrics and traces; handlers may use it where the kinds differ in what
/// they guarantee (an introspected token was active at the authorization server when checked; a
/// locally verified JWT was validly signed and unexpired, but may have been revoked since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum VerifierKind {
    /// RFC 7662 token introspection.
    Introspection,
    /// An RFC 9068 JWT access token verified locally against the issuer's keys.
    Jwt,
    /// A JWT verified locally and also introspected (for revocation).
    JwtIntrospected,
    /// A verifier outside this crate.
    #[default]
    Custom,
}

impl VerifierKind {
    /// The label used in metrics and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Introspection => "introspection",
            Self::Jwt => "jwt",
            Self::JwtIntrospected => "jwt_introspected",
            Self::Custom => "custom",
        }
    }

    pub(crate) fn to_bits(self) -> u8 {
        match self {
            Self::Custom => 0,
            Self::Introspection => 1,
            Self::Jwt => 2,
            Self::JwtIntrospected => 3,
        }
    }

    pub(crate) fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Introspection,
            2 => Self::Jwt,
            3 => Self::JwtIntrospected,
            _ => Self::Custom,
        }
    }
}

/// The claims of a token that a verifier has verified, independent of its wire format.
///
/// Build one with `TokenClaims::default()` and assign the fields you know; then
/// [`Principal::new`](crate::Principal::new) makes the principal. Times are seconds since the Unix
/// epoch. The struct is `#[non_exhaustive]`: later releases may add fields.
///
/// ```
/// use tower_introspect::{Principal, Scopes};
/// use tower_introspect::claims::{TokenClaims, VerifierKind};
///
/// let mut claims = TokenClaims::default();
/// claims.subject = Some("alice".into());
/// claims.scope = Scopes::parse("read write");
/// claims.verified_by = VerifierKind::Custom;
/// let principal = Principal::new(claims);
/// assert!(principal.scopes().contains("write"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TokenClaims {
    /// `iss`: who issued the token.
    pub issuer: Option<String>,
    /// `sub`: the resource owner (absent for client-credentials tokens on some servers).
    pub subject: Option<String>,
    /// A human-readable name of the resource owner.
    pub username: Option<String>,
    /// `aud`: the resources the token is meant for.
    pub audiences: Vec<String>,
    /// The client the token was issued to (`client_id`, or `azp` where a server names it so).
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scope: Scopes,
    /// The token's type as the issuer names it (e.g. `Bearer`).
    pub token_type: Option<String>,
    /// `jti`: the token's identifier.
    pub token_id: Option<String>,
    /// `exp`.
    pub expires_at: Option<i64>,
    /// `iat`.
    pub issued_at: Option<i64>,
    /// `nbf`.
    pub not_before: Option<i64>,
    /// Every other claim, kept as sent (e.g. `cnf`, which sender-constrained tokens carry).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Which kind of verifier vouched for these claims.
    pub verified_by: VerifierKind,
}

/// Default clock-skew allowance for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// What verified claims must satisfy, whichever verifier produced them.
///
/// A valid signature or an `active: true` only says who issued the token and that it stands. It
/// does not say the token is meant for *this* resource: a token minted for another API of the same
/// server is just as valid. Hence the audience check (RFC 8707, required by the MCP specification)
/// and the issuer pin.
#[derive(Debug, Clone)]
pub(crate) struct ClaimChecks {
    pub(crate) leeway: Duration,
    pub(crate) audience: Option<String>,
    pub(crate) issuer: Option<String>,
}

impl Default for ClaimChecks {
    fn default() -> Self {
        Self {
            leeway: DEFAULT_LEEWAY,
            audience: None,
            issuer: None,
        }
    }
}

impl ClaimChecks {
    /// Checks `claims` at `now` (seconds since the Unix epoch).
    pub(crate) fn check(&self, claims: &TokenClaims, now: i64) -> Result<(), InvalidToken> {
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if claims
            .expires_at
            .is_some_and(|exp| now > exp.saturating_add(leeway))
        {
            return Err(InvalidToken::Expired);
        }
        let in_future = |t: Option<i64>| t.is_some_and(|t| t.saturating_sub(leeway) > now);
        if in_future(claims.not_before) || in_future(claims.issued_at) {
            return Err(InvalidToken::NotYetValid);
        }
        if is_refresh_token(claims) {
            return Err(InvalidToken::NotAnAccessToken);
        }
        if !claims.scope.is_well_formed() {
            return Err(InvalidToken::MalformedScope);
        }
        if let Some(expected) = &self.audience
            && !claims.audiences.iter().any(|aud| aud == expected)
        {
            return Err(InvalidToken::WrongAudience);
        }
        if let Some(expected) = &self.issuer
            && claims.issuer.as_deref() != Some(expected.as_str())
        {
            return Err(InvalidToken::WrongIssuer);
        }
        Ok(())
    }
}

/// The values by which servers say "this is a refresh token", compared ASCII-case-insensitively:
/// RFC 7662 / RFC 6749 `refresh_token`, the RFC 8693 token type URI, the short `refresh`
/// (Keycloak's `typ: "Refresh"`), and Keycloak's offline tokens (`typ: "Offline"`), which are
/// long-lived refresh tokens.
const REFRESH_TOKEN_TYPES: [&str; 4] = [
    "refresh_token",
    "refresh",
    "offline",
    "urn:ietf:params:oauth:token-type:refresh_token",
];

/// The claims in which servers name the token's type: RFC 7662's `token_type`, Ory Hydra's
/// `token_use`, Keycloak's `typ`.
const TOKEN_TYPE_CLAIMS: [&str; 2] = ["token_use", "typ"];

/// Whether the issuer says this is a refresh token, in any of the claims and spellings servers use.
///
/// Matching ignores ASCII case and surrounding whitespace but is otherwise exact (no prefix
/// matching): a refresh token must never be usable as an access token, so any spelling a server
/// might plausibly emit is refused, and no access token type is spelled like one of these.
fn is_refresh_token(claims: &TokenClaims) -> bool {
    let says_refresh = |value: Option<&str>| {
        value.is_some_and(|v| {
            let v = v.trim_ascii();
            REFRESH_TOKEN_TYPES
                .iter()
                .any(|refresh| v.eq_ignore_ascii_case(refresh))
        })
    };
    says_refresh(claims.token_type.as_deref())
        || TOKEN_TYPE_CLAIMS
            .iter()
            .any(|name| says_refresh(claims.extra.get(*name).and_then(|v| v.as_str())))
}
