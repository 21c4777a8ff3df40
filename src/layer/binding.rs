//! DPoP at the bearer layer: the proof read before the token is verified, and the binding
//! between the two confirmed after (RFC 9449 §7).

use http::{HeaderValue, Request};

use super::Settings;
use crate::dpop::{DPOP, Dpop, DpopPolicy, ProofError, ProofTarget, VerifiedProof};
use crate::{InvalidToken, Principal, Rejection};

/// How the token was presented.
#[derive(Debug)]
pub(crate) enum Presented {
    /// With the `Bearer` scheme: the token must not be bound to a key.
    Bearer,
    /// With the `DPoP` scheme and this proof, checked but not yet recorded: the token must be
    /// bound to the proof's key.
    Proof(VerifiedProof),
}

/// A principal whose presentation fits its token, and the fresh nonce the response should carry
/// when the client's is about to expire.
pub(crate) struct Confirmed {
    pub(crate) principal: Principal,
    pub(crate) nonce: Option<HeaderValue>,
}

/// Whether a bearer-scheme request may go on to verification: not when DPoP is required (no
/// verification is spent on a token that will be refused whatever it is).
pub(crate) fn bearer_allowed(settings: &Settings) -> Result<Presented, Rejection> {
    match settings.dpop.as_ref().map(Dpop::policy) {
        Some(DpopPolicy::Required) => {
            crate::metrics::dpop_proof(InvalidToken::DpopRequired.as_str());
            Err(Rejection::InvalidToken(InvalidToken::DpopRequired))
        }
        _ => Ok(Presented::Bearer),
    }
}

/// Checks the request's proof for `token` (everything but the binding and the replay check).
pub(crate) fn check_proof<B>(
    request: &Request<B>,
    token: &str,
    dpop: &Dpop,
) -> Result<Presented, Rejection> {
    let checked = proof_header(request).and_then(|proof| {
        let origins = dpop
            .origins
            .as_deref()
            .expect("DPoP is accepted only with origins configured");
        let target =
            ProofTarget::under_origins(request.method().as_str(), origins, request.uri().path());
        dpop.checker.check(proof, &target, Some(token))
    });
    match checked {
        Ok(proof) => Ok(Presented::Proof(proof)),
        Err(error) => {
            crate::metrics::dpop_proof(error.as_str());
            tracing::debug!(reason = error.as_str(), "DPoP proof refused");
            Err(Rejection::InvalidDpopProof(error))
        }
    }
}

/// Whether `principal`'s token carries a binding this layer cannot check: a `cnf` that is not
/// an object or a `jkt` that is not a string (malformed: either would otherwise read as no
/// binding at all), or, unless `accept_other_methods`, a member other than `jkt`.
fn unverifiable_binding(principal: &Principal, accept_other_methods: bool) -> bool {
    match principal.claim("cnf") {
        None => false,
        Some(serde_json::Value::Object(members)) => {
            members.iter().any(|(name, value)| match name.as_str() {
                "jkt" => !value.is_string(),
                _ => !accept_other_methods,
            })
        }
        Some(_) => true,
    }
}

/// The one `DPoP` header (RFC 9449 §4.3: exactly one).
fn proof_header<B>(request: &Request<B>) -> Result<&str, ProofError> {
    let mut values = request.headers().get_all(DPOP).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().map_err(|_| ProofError::Malformed),
        _ => Err(ProofError::Missing),
    }
}

/// Confirms that `principal`'s token was presented the way its binding requires, and records
/// the proof's `jti` (last: only an otherwise acceptable request takes room in the replay store).
pub(crate) fn confirm(
    principal: Principal,
    presented: &Presented,
    settings: &Settings,
) -> Result<Confirmed, Rejection> {
    if unverifiable_binding(&principal, settings.accept_unverifiable_bindings) {
        tracing::debug!("token bound by a confirmation method this layer cannot check: refused");
        return Err(Rejection::InvalidToken(InvalidToken::UnverifiableBinding));
    }
    let bound_to = principal.confirmation_thumbprint();
    let proof = match presented {
        Presented::Bearer if bound_to.is_some() => {
            crate::metrics::dpop_proof(InvalidToken::BoundToKey.as_str());
            return Err(Rejection::InvalidToken(InvalidToken::BoundToKey));
        }
        Presented::Bearer => {
            return Ok(Confirmed {
                principal,
                nonce: None,
            });
        }
        Presented::Proof(proof) => proof,
    };
    let dpop = settings
        .dpop
        .as_ref()
        .expect("a proof is checked only when DPoP is accepted");
    let outcome = match bound_to {
        None => Err(Rejection::InvalidToken(InvalidToken::NotBound)),
        Some(jkt) if jkt != proof.thumbprint() => {
            Err(Rejection::InvalidDpopProof(ProofError::KeyMismatch))
        }
        Some(_) => dpop
            .checker
            .record(proof)
            .map_err(Rejection::InvalidDpopProof),
    };
    crate::metrics::dpop_proof(match &outcome {
        Ok(()) => "accepted",
        Err(Rejection::InvalidDpopProof(error)) => error.as_str(),
        Err(_) => InvalidToken::NotBound.as_str(),
    });
    outcome?;
    let nonce = proof
        .nonce_is_stale()
        .then(|| dpop.checker.nonces())
        .flatten()
        .map(|nonces| HeaderValue::try_from(nonces.current()).expect("a nonce is base64url"));
    Ok(Confirmed { principal, nonce })
}
