//! DPoP (RFC 9449): access tokens bound to a key the client proves it holds on every request.
//!
//! A stolen bearer token works for whoever holds it. A DPoP-bound token names a public key
//! (`cnf.jkt`, its RFC 7638 thumbprint), and each request carries a fresh proof signed with the
//! matching private key, for that method, that URL and that token. A stolen token without the
//! key is useless; a captured proof is useless for another request and, once seen, for the same
//! one.
//!
//! # On the resource server
//!
//! Configure [`BearerAuthLayer::dpop`](crate::BearerAuthLayer::dpop) with a [`Dpop`]. Then
//! `Authorization: DPoP <token>` is accepted with exactly one `DPoP: <proof>` header, and the
//! layer checks, on every request (a cached token verdict included):
//!
//! - the proof: `typ: dpop+jwt`, an allowed asymmetric `alg`, a public `jwk` with no private
//!   member, the signature, `htm`, `htu` (after normalization: scheme and host case, default
//!   port, dot segments; query and fragment ignored), `iat` within the window (default ±5 min),
//!   `ath` (the hash of the token) and, when configured, the server nonce;
//! - the token, as for a bearer token (the same verifier and verdict cache);
//! - the binding: the token's `cnf.jkt` equals the proof key's thumbprint;
//! - the `jti`, last: a proof seen before while still fresh is a replay.
//!
//! The [`DpopPolicy`] decides what else is accepted:
//!
//! | policy | bearer token | bound token as `Bearer` | `DPoP` scheme |
//! |---|---|---|---|
//! | [`Disabled`](DpopPolicy::Disabled) (and no `dpop` configured) | accepted | refused | not recognised (401, no token) |
//! | [`Allowed`](DpopPolicy::Allowed) (the default) | accepted | refused | accepted |
//! | [`Required`](DpopPolicy::Required) | refused | refused | accepted |
//!
//! A DPoP-bound token presented as `Bearer` is refused under every policy: that downgrade is the
//! attack binding exists to stop (RFC 9449 §7.2). An unbound token presented with the `DPoP`
//! scheme is refused too.
//!
//! Refusals are RFC 9449 §7.1 challenges: `WWW-Authenticate: DPoP algs="…", error="…"`, with
//! the `Bearer` challenge beside it when bearer tokens are also accepted. A missing or stale
//! nonce gets `error="use_dpop_nonce"` and a fresh nonce in `DPoP-Nonce`; a response to a proof
//! whose nonce is about to expire carries the next one.
//!
//! ```
//! use std::time::Duration;
//! use tower_introspect::BearerAuthLayer;
//! use tower_introspect::dpop::{Dpop, DpopPolicy, NonceSource, ProofChecker};
//! use tower_introspect::jwt::{JwtIssuer, JwtVerifier};
//!
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! let issuer = JwtIssuer::builder("https://auth.example.com")
//!     .audience("https://api.example.com/mcp")
//!     .build()?;
//! let nonces = NonceSource::new(b"the same 32+ random bytes on every instance", Duration::from_secs(300))?;
//! let dpop = Dpop::builder()
//!     // The URL clients call: what `htu` is compared with.
//!     .origin("https://api.example.com")
//!     .policy(DpopPolicy::Required)
//!     .checker(ProofChecker::builder().nonces(nonces).build()?)
//!     .build()?;
//! let layer = BearerAuthLayer::jwt(JwtVerifier::new([issuer])?).dpop(dpop);
//! # let _ = layer;
//! # Ok(()) }
//! ```
//!
//! # Costs and bounds
//!
//! The verdict cache stays keyed by the token: a proof cannot be cached, so its signature is
//! checked on every request (see BENCHMARKS.md for the figure). The replay store is bounded
//! ([`ProofCheckerBuilder::replay_capacity`]); when it is full of fresh proofs, new ones are
//! refused with 503 rather than an identifier forgotten. Only proofs that passed every other
//! check, for a valid token bound to their key, take room in it.
//!
//! # On the client and the authorization server
//!
//! [`DpopKey`] generates a key and signs proofs (what a client needs); [`ProofChecker`] with a
//! [`ProofTarget`] for the token endpoint is what an authorization server needs to bind the
//! tokens it issues (the reference provider uses both).

mod htu;
mod key;
mod nonce;
mod proof;
mod thumbprint;

use std::sync::Arc;

pub(crate) use self::htu::Origins;
pub use self::key::{DpopKey, ProofOptions};
pub use self::nonce::{DEFAULT_NONCE_ROTATION, MIN_NONCE_SECRET_LENGTH, NonceSource, NonceStatus};
pub use self::proof::{
    DEFAULT_IAT_WINDOW, MAX_PROOF_LENGTH, ProofChecker, ProofCheckerBuilder, ProofError,
    ProofTarget, VerifiedProof,
};
use crate::ConfigError;
pub use crate::replay::DEFAULT_REPLAY_CAPACITY;

/// The name of the proof header (RFC 9449 §4.1) and of the authorization scheme.
pub const DPOP: &str = "DPoP";

/// The response header carrying a server nonce (RFC 9449 §8.1).
pub const DPOP_NONCE: &str = "dpop-nonce";

/// What a layer accepts besides bearer tokens. See the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DpopPolicy {
    /// The `DPoP` scheme is not recognised; bound tokens are refused.
    Disabled,
    /// Bound tokens with proofs, and unbound tokens as bearer tokens.
    #[default]
    Allowed,
    /// Bound tokens with proofs only.
    Required,
}

/// A layer's DPoP settings: the policy, the public origins `htu` is checked against, and the
/// proof checker (algorithms, window, replay store, nonces). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dpop {
    pub(crate) policy: DpopPolicy,
    pub(crate) origins: Option<Arc<Origins>>,
    pub(crate) checker: ProofChecker,
}

/// Builds a [`Dpop`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct DpopBuilder {
    policy: DpopPolicy,
    origins: Vec<String>,
    checker: Option<ProofChecker>,
}

impl DpopBuilder {
    /// The policy (default [`DpopPolicy::Allowed`]).
    pub fn policy(mut self, policy: DpopPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A public origin of this resource, as clients reach it (`https://api.example.com`, no
    /// path): a proof's `htu` must be this origin followed by the request's path. Call it once
    /// per name the resource is reached under. Required unless the policy is
    /// [`Disabled`](DpopPolicy::Disabled): a server behind a proxy cannot tell its public URL
    /// from a request, and trusting the `Host` header would let a proof made for another server
    /// pass here.
    ///
    /// The layer must see the request's full path: put it outside anything that strips a
    /// prefix (such as axum's `nest`).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// The proof checker (default [`ProofChecker::default`]): algorithms, `iat` window, replay
    /// store size, nonces. Layers given clones of one checker share its replay store.
    pub fn checker(mut self, checker: ProofChecker) -> Self {
        self.checker = Some(checker);
        self
    }

    /// The settings, or what is wrong with them (a missing or invalid origin).
    pub fn build(self) -> Result<Dpop, ConfigError> {
        let origins = match self.policy {
            DpopPolicy::Disabled if self.origins.is_empty() => None,
            _ => Some(Arc::new(Origins::new(&self.origins)?)),
        };
        Ok(Dpop {
            policy: self.policy,
            origins,
            checker: self.checker.unwrap_or_default(),
        })
    }
}

impl Dpop {
    /// A builder with the default policy ([`DpopPolicy::Allowed`]) and proof checker.
    pub fn builder() -> DpopBuilder {
        DpopBuilder::default()
    }

    /// The policy.
    pub fn policy(&self) -> DpopPolicy {
        self.policy
    }

    /// The proof checker (its replay store statistics, its nonces).
    pub fn checker(&self) -> &ProofChecker {
        &self.checker
    }
}

#[cfg(test)]
mod tests;
