//! What one verification tells an operator: a `tracing` span with its outcome, whether the
//! verifier knew the verdict at once, and how long it took.
//!
//! Field names (documented in `docs/operations.md`): `outcome` (`accepted`, `rejected`, `unavailable`),
//! `cache` (`hit` when the verdict was known at once, positive or negative; `miss` when the
//! verifier had to be awaited), `latency_us`, and for an accepted token `verifier` (the
//! [`VerifierKind`](crate::VerifierKind): `introspection`, `jwt`, `jwt_introspected`, `custom`). Never the token, nor anything derived from it.
//!
//! Finishing a span also counts the verdict in the metrics (feature `metrics`).

use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

use crate::{Principal, VerifyError};

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    /// Known at once (a cache hit, positive or negative).
    Hit,
    /// The verifier had to be awaited.
    Miss,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
        }
    }
}

/// The span of one verification and when it started.
pub(crate) struct VerificationSpan {
    span: Span,
    /// Read only when the span is recorded, so that the warm path reads no clock otherwise.
    started: Option<Instant>,
}

impl VerificationSpan {
    /// Opens the span of a verification starting now.
    pub(crate) fn start() -> Self {
        let span = tracing::debug_span!(
            target: "tower_introspect",
            "verify_token",
            outcome = Empty,
            cache = Empty,
            latency_us = Empty,
            verifier = Empty
        );
        let started = (!span.is_disabled()).then(Instant::now);
        Self { span, started }
    }

    /// Records how the verification ended; returns the span, to enter while acting on it.
    pub(crate) fn finish(
        &self,
        cache: CacheResult,
        verdict: Result<&Principal, &VerifyError>,
    ) -> &Span {
        crate::metrics::verified(verdict);
        if let Some(started) = self.started {
            let outcome = match verdict {
                Ok(_) => "accepted",
                Err(VerifyError::Invalid(_)) => "rejected",
                Err(VerifyError::Unavailable(_) | VerifyError::Throttled(_)) => "unavailable",
            };
            let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.span.record("outcome", outcome);
            self.span.record("cache", cache.as_str());
            self.span.record("latency_us", latency);
            if let Ok(principal) = verdict {
                self.span
                    .record("verifier", principal.verified_by().as_str());
            }
        }
        &self.span
    }

    /// Records a verification whose token verified but whose request is refused all the same
    /// (`reason`: its presentation does not fit the token's DPoP binding).
    pub(crate) fn finish_refused(&self, cache: CacheResult, reason: &'static str) -> &Span {
        crate::metrics::refused_after_verification(reason);
        if let Some(started) = self.started {
            let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.span.record("outcome", "rejected");
            self.span.record("cache", cache.as_str());
            self.span.record("latency_us", latency);
        }
        &self.span
    }

    /// The span, to instrument the verifier's future with.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }
}
