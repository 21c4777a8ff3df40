//! What the bearer layer does with a verdict: admit the request with its principal, or refuse it.

use http::Request;

use super::Settings;
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
