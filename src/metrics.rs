//! What the layer, the cache and the introspector count, through the [`metrics`](::metrics) facade
//! (feature `metrics`): the application installs whichever recorder it likes (Prometheus,
//! StatsD, …), and without the feature every function here compiles to nothing.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `tower_introspect_requests_total` | counter | `outcome`, `reason` |
//! | `tower_introspect_cache_lookups_total` | counter | `result` |
//! | `tower_introspect_stale_serves_total` | counter | |
//! | `tower_introspect_introspection_calls_total` | counter | `outcome` |
//! | `tower_introspect_introspection_duration_seconds` | histogram | `outcome` |
//! | `tower_introspect_introspection_in_flight` | gauge | |
//! | `tower_introspect_verifications_total` | counter | `verifier`, `outcome` |
//! | `tower_introspect_keys_fetches_total` | counter | `outcome` |
//! | `tower_introspect_dpop_proofs_total` | counter | `outcome` |
//! | `tower_introspect_ssf_events_total` | counter | `event`, `outcome` |
//!
//! Every label value comes from a short fixed set (see `docs/operations.md`): never a token, a
//! subject, a client id or anything else a caller chooses, so that no series can be created at
//! will. The warm path (a cache hit, accepted) records through keys fixed at compile time, with no
//! allocation.

use crate::{Principal, VerifyError};

/// `tower_introspect_requests_total`: requests `BearerAuth` decided, by `outcome`.
#[cfg(feature = "metrics")]
const REQUESTS: &str = "tower_introspect_requests_total";
/// `tower_introspect_cache_lookups_total`: verdict cache lookups, by `result`.
#[cfg(feature = "metrics")]
const CACHE_LOOKUPS: &str = "tower_introspect_cache_lookups_total";
/// `tower_introspect_stale_serves_total`: ended verdicts served during an outage.
#[cfg(feature = "metrics")]
const STALE_SERVES: &str = "tower_introspect_stale_serves_total";
/// `tower_introspect_introspection_calls_total`: introspection requests sent, by `outcome`.
#[cfg(feature = "metrics")]
const INTROSPECTION_CALLS: &str = "tower_introspect_introspection_calls_total";
/// `tower_introspect_introspection_duration_seconds`: how long each took, by `outcome`.
#[cfg(feature = "metrics")]
const INTROSPECTION_DURATION: &str = "tower_introspect_introspection_duration_seconds";
/// `tower_introspect_introspection_in_flight`: introspection requests under way.
#[cfg(feature = "metrics")]
const INTROSPECTION_IN_FLIGHT: &str = "tower_introspect_introspection_in_flight";

/// `tower_introspect_keys_fetches_total`: fetches of issuers' key sets, by `outcome`.
#[cfg(feature = "metrics")]
const KEYS_FETCHES: &str = "tower_introspect_keys_fetches_total";
/// `tower_introspect_verifications_total`: tokens checked by a verifier, by `verifier` and
/// `outcome`.
#[cfg(feature = "metrics")]
const VERIFICATIONS: &str = "tower_introspect_verifications_total";

/// `tower_introspect_dpop_proofs_total`: DPoP decisions, by `outcome` (`accepted`, or why not).
#[cfg(feature = "metrics")]
const DPOP_PROOFS: &str = "tower_introspect_dpop_proofs_total";

/// `tower_introspect_ssf_events_total`: Security Event Tokens received, by `event` (a short
/// label of a known type, `unknown`, or `none` for a SET refused before its events were read) and
/// `outcome`.
#[cfg(all(feature = "metrics", feature = "ssf"))]
const SSF_EVENTS: &str = "tower_introspect_ssf_events_total";

/// Counts a received security event: `applied`, `unmatched` (subject not matched to principals),
/// `acknowledged` (control or unknown events), or why its SET was refused (an RFC 8935 error
/// code, or `unavailable`).
#[cfg(feature = "ssf")]
#[inline]
pub(crate) fn ssf_event(event: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(SSF_EVENTS, "event" => event, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (event, outcome);
}

/// Counts a DPoP decision: `accepted`, a [`ProofError`](crate::dpop::ProofError)'s identifier,
/// or a binding refusal's ([`InvalidToken`](crate::InvalidToken) `bound_to_key`, `not_bound`,
/// `dpop_required`).
#[inline]
pub(crate) fn dpop_proof(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(DPOP_PROOFS, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Counts a request refused after its token verified: its presentation did not fit the token's
/// binding, or its DPoP proof failed (`reason`).
#[inline]
pub(crate) fn refused_after_verification(reason: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// The `reason` of a request refused or left unverified, and of an unavailable verdict.
fn refusal_reason(error: &VerifyError) -> &'static str {
    match error {
        VerifyError::Invalid(reason) => reason.as_str(),
        VerifyError::Unavailable(unavailable) => unavailable.cause().as_str(),
        VerifyError::Throttled(_) => "throttled",
    }
}

/// Counts a request whose token was verified, by its verdict.
#[inline]
pub(crate) fn verified(verdict: Result<&Principal, &VerifyError>) {
    #[cfg(feature = "metrics")]
    match verdict {
        Ok(_) => ::metrics::counter!(REQUESTS, "outcome" => "accepted").increment(1),
        Err(error) => {
            let outcome = match error {
                VerifyError::Invalid(_) => "rejected",
                VerifyError::Unavailable(_) | VerifyError::Throttled(_) => "unavailable",
            };
            ::metrics::counter!(REQUESTS, "outcome" => outcome, "reason" => refusal_reason(error))
                .increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (verdict, refusal_reason);
}

/// Counts a request decided without verification: refused for its `Authorization` header
/// (`reason` `missing_token` or `malformed_request`), or let through without a token when the
/// layer allows it (`anonymous`).
#[inline]
pub(crate) fn unverified(outcome: Unverified) {
    #[cfg(feature = "metrics")]
    match outcome {
        Unverified::Anonymous => ::metrics::counter!(REQUESTS, "outcome" => "anonymous"),
        Unverified::MissingToken => {
            ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => "missing_token")
        }
        Unverified::Malformed => {
            ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => "malformed_request")
        }
        Unverified::OverBudget => {
            ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => "over_budget")
        }
        Unverified::InvalidDpopProof => {
            ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => "invalid_dpop_proof")
        }
        Unverified::DpopRequired => {
            ::metrics::counter!(REQUESTS, "outcome" => "rejected", "reason" => "dpop_required")
        }
    }
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A request decided from its headers alone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unverified {
    /// No token, and the layer lets such requests through.
    Anonymous,
    /// No token.
    MissingToken,
    /// An `Authorization` header that breaks RFC 6750.
    Malformed,
    /// A new token from a client over its miss budget (429).
    OverBudget,
    /// A DPoP proof refused before its token was verified.
    InvalidDpopProof,
    /// A bearer token where DPoP is required.
    DpopRequired,
}

/// What a lookup of the verdict cache found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    /// A positive verdict.
    Hit,
    /// A negative verdict.
    NegativeHit,
    /// Nothing: this lookup started a call.
    Miss,
    /// Nothing, but a call for the same token was in flight: this lookup waits for it.
    Coalesced,
}

/// Counts a lookup of the verdict cache.
#[inline]
pub(crate) fn cache_lookup(lookup: Lookup) {
    #[cfg(feature = "metrics")]
    match lookup {
        Lookup::Hit => ::metrics::counter!(CACHE_LOOKUPS, "result" => "hit"),
        Lookup::NegativeHit => ::metrics::counter!(CACHE_LOOKUPS, "result" => "negative_hit"),
        Lookup::Miss => ::metrics::counter!(CACHE_LOOKUPS, "result" => "miss"),
        Lookup::Coalesced => ::metrics::counter!(CACHE_LOOKUPS, "result" => "coalesced"),
    }
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = lookup;
}

/// Counts an ended verdict served because the authorization server is unavailable.
#[inline]
pub(crate) fn stale_serve() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(STALE_SERVES).increment(1);
}

/// How an introspection request ended: the `outcome` label of the introspection metrics.
#[cfg(feature = "metrics")]
pub(crate) fn call_outcome(
    result: &Result<crate::IntrospectionResponse, VerifyError>,
) -> &'static str {
    match result {
        Ok(response) if response.active => "active",
        Ok(_) => "inactive",
        Err(error) => refusal_reason(error),
    }
}

/// Counts an introspection request that was sent, and records how long it took.
#[cfg(feature = "metrics")]
pub(crate) fn introspection_call(outcome: &'static str, took: std::time::Duration) {
    ::metrics::counter!(INTROSPECTION_CALLS, "outcome" => outcome).increment(1);
    ::metrics::histogram!(INTROSPECTION_DURATION, "outcome" => outcome).record(took);
}

/// Counts a fetch of an issuer's key set (JWKS), by `outcome`: `ok` or the unavailability cause.
#[inline]
pub(crate) fn keys_fetch(outcome: Result<(), crate::UnavailableCause>) {
    #[cfg(feature = "metrics")]
    {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(cause) => cause.as_str(),
        };
        ::metrics::counter!(KEYS_FETCHES, "outcome" => outcome).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Counts a token checked by a verifier (not a cache hit), by `verifier` and `outcome`
/// (`accepted`, or the reason or cause it was not).
#[inline]
pub(crate) fn verification(
    verifier: crate::VerifierKind,
    verdict: &Result<crate::TokenClaims, VerifyError>,
) {
    #[cfg(feature = "metrics")]
    {
        let outcome = match verdict {
            Ok(_) => "accepted",
            Err(error) => refusal_reason(error),
        };
        ::metrics::counter!(VERIFICATIONS, "verifier" => verifier.as_str(), "outcome" => outcome)
            .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (verifier, verdict);
}

/// Holds one unit of `tower_introspect_introspection_in_flight` while alive: one introspection
/// request under way (holding a slot of `max_concurrent_requests`, when that is set).
#[must_use]
pub(crate) struct InFlight(());

impl InFlight {
    /// A request starts.
    #[inline]
    pub(crate) fn start() -> Self {
        #[cfg(feature = "metrics")]
        ::metrics::gauge!(INTROSPECTION_IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        ::metrics::gauge!(INTROSPECTION_IN_FLIGHT).decrement(1.0);
    }
}
