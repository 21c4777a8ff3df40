//! What the bearer layer does with a verdict: admit the request with its principal, or refuse it.

use http::Request;

use super::Settings;
use super::binding::{Confirmed, Presented, confirm};
use crate::telemetry::{CacheResult, VerificationSpan};
use crate::{Principal, Rejection, VerifyError};

/// Lets a verified request in: the principal, carrying the layer's challenger, goes into the
/// request extensions for the inner service.
pub(crate) fn admit<B>(request: &mut Request<B>, principal: Principal, settings: &Settings) {
    tracing::debug!(
        subject = principal.subject().unwrap_or_default(),
        client_id = principal.client_id().unwrap_or_default(),
        "bearer token accepted"
    );
    request
        .extensions_mut()
        .insert(principal.with_challenger(&settings.challenger));
}

/// Why a failed verification refuses the request.
pub(crate) fn refusal(error: VerifyError) -> Rejection {
    match error {
        VerifyError::Invalid(reason) => {
            tracing::debug!(%reason, "bearer token rejected");
            Rejection::InvalidToken(reason)
        }
        VerifyError::Unavailable(_) => Rejection::Unavailable,
        // Rounded up: a client that retries when told never arrives early.
        VerifyError::Throttled(wait) => Rejection::Throttled(
            u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                .unwrap_or(u32::MAX)
                .max(1),
        ),
    }
}

/// What a verdict means for the request that presented the token as `presented`: admitted, with
/// the principal (and a nonce for the response), or refused. Ends the verification's span.
pub(crate) fn decide(
    verdict: Result<Principal, VerifyError>,
    presented: &Presented,
    span: &VerificationSpan,
    cache: CacheResult,
    settings: &Settings,
) -> Result<Confirmed, Rejection> {
    let confirmed = match verdict {
        Ok(principal) => confirm(principal, presented, settings),
        Err(error) => {
            let _entered = span.finish(cache, Err(&error)).enter();
            return Err(refusal(error));
        }
    };
    match confirmed {
        Ok(confirmed) => {
            let _entered = span.finish(cache, Ok(&confirmed.principal)).enter();
            Ok(confirmed)
        }
        Err(rejection) => {
            let _entered = span
                .finish_refused(cache, rejection_reason(&rejection))
                .enter();
            tracing::debug!(reason = rejection.description(), "bearer token rejected");
            Err(rejection)
        }
    }
}

/// The metrics `reason` of a refusal after verification.
fn rejection_reason(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::InvalidToken(reason) => reason.as_str(),
        Rejection::InvalidDpopProof(_) => "invalid_dpop_proof",
        _ => "other",
    }
}
