//! The seam between the layer, the cache and the introspection client.

use std::future::Future;
use std::sync::Arc;

use crate::{Principal, VerifyError};

/// Turns a bearer token into a [`Principal`] or says why it cannot.
///
/// [`Introspector`](crate::Introspector) implements it by asking the authorization server;
/// [`CachedVerifier`](crate::cache::CachedVerifier) wraps any verifier with a cache; tests and unusual
/// deployments can implement it directly (e.g. a static token table in development).
///
/// Implementations must fail closed: anything that is not a positive, validated answer is an error.
///
/// ```
/// use tower_introspect::{Principal, TokenVerifier, VerifyError};
/// use tower_introspect::claims::TokenClaims;
/// use tower_introspect::error::InvalidToken;
///
/// /// Accepts exactly one development token.
/// struct DevToken;
///
/// impl TokenVerifier for DevToken {
///     async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
///         if token != "dev-token" {
///             return Err(InvalidToken::Inactive.into());
///         }
///         let mut claims = TokenClaims::default();
///         claims.subject = Some("developer".into());
///         Ok(Principal::new(claims))
///     }
/// }
/// ```
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token`. The token is secret: implementations must not log or store it in clear.
    fn verify(&self, token: &str) -> impl Future<Output = Result<Principal, VerifyError>> + Send;

    /// The verdict on `token` when it is known at once, without waiting (e.g. a cache hit);
    /// `None`, the default, when [`verify`](Self::verify) must be called.
    ///
    /// [`BearerAuth`](crate::layer::BearerAuth) asks this first, so that a request answered from a cache
    /// costs no future, no copy of the token and no second lookup. An implementation must give the
    /// verdict `verify` would give, and must not block.
    fn verify_cached(&self, token: &str) -> Option<Result<Principal, VerifyError>> {
        let _ = token;
        None
    }

    /// Whether [`verify`](Self::verify) would make a new call for `token` (to the authorization
    /// server, or a new signature check), rather than join one in flight. The bearer layer charges
    /// only such calls to a client's miss budget. The default, `true`, suits verifiers without a
    /// cache.
    fn would_call(&self, token: &str) -> bool {
        let _ = token;
        true
    }
}

impl<V: TokenVerifier> TokenVerifier for Arc<V> {
    fn verify(&self, token: &str) -> impl Future<Output = Result<Principal, VerifyError>> + Send {
        (**self).verify(token)
    }

    fn verify_cached(&self, token: &str) -> Option<Result<Principal, VerifyError>> {
        (**self).verify_cached(token)
    }

    fn would_call(&self, token: &str) -> bool {
        (**self).would_call(token)
    }
}
