//! JWTs verified locally and opaque tokens introspected, behind one layer: one verifier type for
//! all four modes, so a server can pick its mode from configuration at run time.

use crate::jwt::{JwtVerifier, looks_like_jwt};
use crate::{
    ConfigError, Introspector, InvalidToken, Principal, TokenVerifier, VerifierKind, VerifyError,
};

/// Routes each token by its shape: a JWT (three base64url parts) to the [`JwtVerifier`], which
/// routes it on by its `iss`; anything else to the [`Introspector`].
///
/// | mode | built with | a JWT | an opaque token |
/// |---|---|---|---|
/// | JWT only | [`jwt`](HybridVerifierBuilder::jwt) | verified locally | 401 `invalid_token` |
/// | introspection only | [`introspector`](HybridVerifierBuilder::introspector) | introspected | introspected |
/// | JWT or introspection | both | verified locally | introspected |
/// | introspect JWTs too | both, [`introspect_jwts`](HybridVerifierBuilder::introspect_jwts) | verified locally, then introspected | introspected |
///
/// With both, a JWT naming an issuer the JWT verifier does not trust is refused (401, no network
/// call); it is not handed to the introspector. An introspection answer `active: false` is final
/// too: no token falls through from one verifier to another, so an attacker cannot pick the
/// weaker check.
///
/// A revoked JWT verified locally stays valid until its `exp`: that is what local verification
/// means. "Introspect JWTs too" refuses it at once, at the cost of an introspection call per cache
/// miss (the cache still spares every hit).
#[derive(Clone, Debug)]
pub struct HybridVerifier {
    jwt: Option<JwtVerifier>,
    introspector: Option<Introspector>,
    introspect_jwts: bool,
}

impl HybridVerifier {
    /// Configures the verifiers and the mode.
    pub fn builder() -> HybridVerifierBuilder {
        HybridVerifierBuilder::default()
    }

    /// JWTs to `jwt`, opaque tokens to `introspector`.
    pub fn new(jwt: JwtVerifier, introspector: Introspector) -> Self {
        Self {
            jwt: Some(jwt),
            introspector: Some(introspector),
            introspect_jwts: false,
        }
    }

    /// The introspector, if one is configured.
    pub fn introspector(&self) -> Option<&Introspector> {
        self.introspector.as_ref()
    }

    /// The JWT verifier, if one is configured.
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_ref()
    }

    async fn verify_jwt(&self, jwt: &JwtVerifier, token: &str) -> Result<Principal, VerifyError> {
        let introspector = self.introspector.as_ref().filter(|_| self.introspect_jwts);
        let kind = if introspector.is_some() {
            VerifierKind::JwtIntrospected
        } else {
            VerifierKind::Jwt
        };
        let mut verdict = jwt.verify_claims(token).await;
        if let (Some(introspector), Ok(claims)) = (introspector, &mut verdict) {
            match introspector.verify(token).await {
                Ok(_) => claims.verified_by = kind,
                Err(refused) => verdict = Err(refused),
            }
        }
        crate::metrics::verification(kind, &verdict);
        verdict.map(Principal::new)
    }
}

impl TokenVerifier for HybridVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        match (&self.jwt, &self.introspector) {
            (Some(jwt), _) if looks_like_jwt(token) => self.verify_jwt(jwt, token).await,
            (_, Some(introspector)) => introspector.verify(token).await,
            // JWT only, and this is no JWT.
            (_, None) => {
                let verdict = Err(InvalidToken::Malformed.into());
                crate::metrics::verification(VerifierKind::Jwt, &verdict);
                verdict.map(Principal::new)
            }
        }
    }
}

/// Configures a [`HybridVerifier`]: at least one of the two verifiers.
#[derive(Debug, Default)]
#[must_use]
pub struct HybridVerifierBuilder {
    jwt: Option<JwtVerifier>,
    introspector: Option<Introspector>,
    introspect_jwts: bool,
}

impl HybridVerifierBuilder {
    /// Verifies JWTs locally with `jwt`.
    pub fn jwt(mut self, jwt: JwtVerifier) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Introspects opaque tokens (and, without a JWT verifier, every token) with `introspector`.
    pub fn introspector(mut self, introspector: Introspector) -> Self {
        self.introspector = Some(introspector);
        self
    }

    /// Also introspects every JWT after verifying it locally (default off). Both must accept;
    /// the principal is built from the JWT's verified claims and marked
    /// [`VerifierKind::JwtIntrospected`]. Needs both verifiers.
    pub fn introspect_jwts(mut self, introspect: bool) -> Self {
        self.introspect_jwts = introspect;
        self
    }

    /// Checks that the mode is complete.
    pub fn build(self) -> Result<HybridVerifier, ConfigError> {
        if self.jwt.is_none() && self.introspector.is_none() {
            return Err(ConfigError::Missing {
                setting: "jwt or introspector",
                why: "a verifier with neither would refuse every token",
            });
        }
        if self.introspect_jwts && (self.jwt.is_none() || self.introspector.is_none()) {
            return Err(ConfigError::Invalid {
                setting: "introspect_jwts",
                reason: "needs both a JWT verifier and an introspector".into(),
            });
        }
        Ok(HybridVerifier {
            jwt: self.jwt,
            introspector: self.introspector,
            introspect_jwts: self.introspect_jwts,
        })
    }
}
