//! Internals exposed for the crate's fuzz targets (`fuzz/`); not part of the API and not
//! semver-stable.
//!
//! Each function is a thin wrapper over the code the layers run, so that the fuzzers exercise
//! exactly that code. The `Authorization` parser is reached through
//! [`bench_support::bearer_token`](crate::bench_support::bearer_token), the MCP layers through
//! their public tower services.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::Principal;
use crate::challenge::{ChallengeContext, Challenger};
use crate::introspection::validation::Validation;
use crate::{IntrospectionResponse, InvalidToken, Rejection};

/// Validates `claims` as an introspector built with `audience`, `issuer` and `leeway` does at
/// `now` (seconds since the Unix epoch).
pub fn validate(
    claims: &IntrospectionResponse,
    audience: Option<&str>,
    issuer: Option<&str>,
    leeway: Duration,
    now: i64,
) -> Result<(), InvalidToken> {
    Validation {
        leeway,
        audience: audience.map(str::to_owned),
        issuer: issuer.map(str::to_owned),
    }
    .accept(claims.clone(), now)
    .map(drop)
}

/// The `WWW-Authenticate` value a bearer layer configured with `realm`, `resource_metadata` and
/// the no-token challenge `scope` sends for `rejection` (`None` when it sends none).
pub fn www_authenticate(
    realm: Option<&str>,
    resource_metadata: Option<&str>,
    scope: Option<&str>,
    rejection: &Rejection,
) -> Option<HeaderValue> {
    Challenger::new(
        realm.map(str::to_owned),
        resource_metadata.map(str::to_owned),
        scope.map(str::to_owned),
        crate::DEFAULT_RETRY_AFTER_SECS,
    )
    .www_authenticate(rejection)
}

/// Puts into `request` what a bearer layer attaches after verifying `token`: its challenge
/// context, and `principal` (when the token was valid) carrying the token's hash, as the layer
/// attaches it. Inner layers (scope and session layers) refuse requests without them.
pub fn as_if_authenticated<B>(
    request: &mut http::Request<B>,
    principal: Option<Principal>,
    token: &str,
) {
    let extensions = request.extensions_mut();
    extensions.insert(ChallengeContext(Arc::default()));
    if let Some(principal) = principal {
        extensions.insert(principal.with_token_key(crate::cache::token_key(token)));
    }
}
