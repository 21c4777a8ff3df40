//! RFC 9068 JWT access tokens, verified locally with each trusted issuer's published keys.
//!
//! Authorization servers such as Microsoft Entra ID and Auth0 issue JWT access tokens and offer
//! no introspection for them. A [`JwtIssuer`] verifies one issuer's tokens;
//! a [`JwtVerifier`] holds several and routes each token by its (unverified) `iss` to that
//! issuer only, so a token naming issuer A is never checked with issuer B's keys, and a token
//! naming no trusted issuer is refused without any network call.
//!
//! Wrap it in a [`CachedVerifier`](crate::cache::CachedVerifier) (as [`BearerAuthLayer::jwt`]
//! does) and a verified token costs what an introspected one does on the warm path: a cache hit
//! under the token's hash, never past `exp`. What local verification cannot know is
//! revocation: a revoked JWT stays valid until it expires. Where that matters, see
//! [`HybridVerifierBuilder::introspect_jwts`](crate::hybrid::HybridVerifierBuilder::introspect_jwts).
//!
//! [`BearerAuthLayer::jwt`]: crate::BearerAuthLayer::jwt
//!
//! ```
//! use tower_introspect::BearerAuthLayer;
//! use tower_introspect::jwt::{JwtIssuer, JwtVerifier};
//!
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! // Keys are found through the issuer's metadata (`jwks_uri`) on first use.
//! let ours = JwtIssuer::builder("https://auth.example.com")
//!     .audience("https://api.example.com/mcp")
//!     .build()?;
//! // Entra ID sends `typ: JWT`, not `at+jwt`; a v2.0 token's `aud` is the API's client id.
//! let entra = JwtIssuer::builder("https://login.microsoftonline.com/TENANT-ID/v2.0")
//!     .audience("API-CLIENT-ID")
//!     .accept_generic_typ(true)
//!     .build()?;
//! let layer = BearerAuthLayer::jwt(JwtVerifier::new([ours, entra])?);
//! # let _ = layer;
//! # Ok(()) }
//! ```

pub(crate) mod access_token;
mod algorithm;
pub(crate) mod compact;
mod issuer;
pub(crate) mod jwks;
pub(crate) mod keys;

use std::collections::HashMap;
use std::sync::Arc;

pub use self::algorithm::JwsAlgorithm;
use self::compact::UnverifiedJwt;
pub(crate) use self::compact::looks_like_jwt;
pub use self::issuer::{JwtIssuer, JwtIssuerBuilder};
pub use self::jwks::{
    DEFAULT_KEYS_REFRESH, DEFAULT_UNKNOWN_KID_REFETCH, MAX_KEYS_REFRESH, MIN_KEYS_REFRESH,
};
pub use self::keys::DEFAULT_MAX_KEYS;
use crate::{
    ConfigError, InvalidToken, Principal, TokenClaims, TokenVerifier, VerifierKind, VerifyError,
};

/// Several trusted issuers of JWT access tokens, each token routed by its `iss` to its issuer.
#[derive(Clone, Debug)]
pub struct JwtVerifier {
    issuers: Arc<HashMap<String, JwtIssuer>>,
}

impl JwtVerifier {
    /// A verifier trusting exactly these issuers. Two with the same issuer identifier, or none at
    /// all, is a configuration error.
    pub fn new(issuers: impl IntoIterator<Item = JwtIssuer>) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::new();
        for issuer in issuers {
            let name = issuer.issuer().to_owned();
            if by_name.insert(name.clone(), issuer).is_some() {
                return Err(ConfigError::Invalid {
                    setting: "issuers",
                    reason: format!("{name:?} is configured twice"),
                });
            }
        }
        if by_name.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "issuers",
                reason: "at least one issuer must be trusted".into(),
            });
        }
        Ok(Self {
            issuers: Arc::new(by_name),
        })
    }

    /// The trusted issuer named `issuer`, if any.
    pub fn issuer(&self, issuer: &str) -> Option<&JwtIssuer> {
        self.issuers.get(issuer)
    }

    /// Verifies `token` and returns its claims.
    pub(crate) async fn verify_claims(&self, token: &str) -> Result<TokenClaims, VerifyError> {
        let jwt = compact::parse(token)?;
        let issuer = self
            .issuers
            .get(unverified_issuer(&jwt)?)
            .ok_or(InvalidToken::UnknownIssuer)?;
        issuer.verify_parsed(jwt).await
    }
}

impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let verdict = self.verify_claims(token).await;
        crate::metrics::verification(VerifierKind::Jwt, &verdict);
        verdict.map(Principal::new)
    }
}

/// The `iss` a token claims, before anything is verified: used only to pick whose keys verify it.
pub(crate) fn unverified_issuer<'a>(jwt: &'a UnverifiedJwt<'_>) -> Result<&'a str, InvalidToken> {
    match jwt.claims.get("iss") {
        Some(serde_json::Value::String(iss)) => Ok(iss),
        _ => Err(InvalidToken::Malformed),
    }
}
