//! JWTs verified locally and opaque tokens introspected, behind one layer.

use crate::jwt::{JwtVerifier, looks_like_jwt};
use crate::{Introspector, Principal, TokenVerifier, VerifierKind, VerifyError};

/// Routes each token by its shape: a JWT (three base64url parts) to the [`JwtVerifier`], which
/// routes it on by its `iss`; anything else to the [`Introspector`].
///
/// A JWT naming an issuer the JWT verifier does not trust is refused (401, no network call); it
/// is not handed to the introspector. An introspection answer `active: false` is final too: no
/// token falls through from one verifier to another, so an attacker cannot pick the weaker check.
///
/// With [`introspect_jwts`](Self::introspect_jwts), JWTs are verified locally *and* introspected,
/// so a revoked JWT is refused at once (at the cost of an introspection call per cache miss);
/// otherwise a revoked JWT works until its `exp`.
#[derive(Clone, Debug)]
pub struct HybridVerifier {
    jwt: JwtVerifier,
    introspector: Introspector,
    introspect_jwts: bool,
}

impl HybridVerifier {
    /// JWTs to `jwt`, opaque tokens to `introspector`.
    pub fn new(jwt: JwtVerifier, introspector: Introspector) -> Self {
        Self {
            jwt,
            introspector,
            introspect_jwts: false,
        }
    }

    /// Also introspects every JWT after verifying it locally (default off). Both must accept:
    /// the principal is built from the JWT's verified claims, marked
    /// [`VerifierKind::JwtIntrospected`].
    pub fn introspect_jwts(mut self, introspect: bool) -> Self {
        self.introspect_jwts = introspect;
        self
    }
}

impl TokenVerifier for HybridVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        if !looks_like_jwt(token) {
            return self.introspector.verify(token).await;
        }
        let kind = if self.introspect_jwts {
            VerifierKind::JwtIntrospected
        } else {
            VerifierKind::Jwt
        };
        let mut verdict = self.jwt.verify_claims(token).await;
        if self.introspect_jwts
            && let Ok(claims) = &mut verdict
        {
            match self.introspector.verify(token).await {
                Ok(_) => claims.verified_by = kind,
                Err(refused) => verdict = Err(refused),
            }
        }
        crate::metrics::verification(kind, &verdict);
        verdict.map(Principal::new)
    }
}
