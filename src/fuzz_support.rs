//! Internals exposed for the crate's fuzz targets (`fuzz/`); not part of the API and not
//! semver-stable.
//!
//! Each function is a thin wrapper over the code the layers run, so that the fuzzers exercise
//! exactly that code. The `Authorization` parser is reached through
//! [`bench_support::bearer_token`](crate::bench_support::bearer_token), the MCP layers through
//! their public tower services.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use http::HeaderValue;
use serde_json::{Map, Value};

use crate::challenge::{ChallengeContext, Challenger};
use crate::claims::ClaimChecks;
use crate::introspection::validation::Validation;
use crate::jwt::{JwtIssuer, JwtVerifier};
use crate::{
    IntrospectionResponse, InvalidToken, Principal, Rejection, TokenClaims, TokenVerifier,
    VerifierKind, VerifyError,
};

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
        crate::challenge::DEFAULT_RETRY_AFTER_SECS,
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

/// What the JWT verifiers read from a compact JWS before any key is involved.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedJwt {
    /// The first two parts and the dot between them: what the signature covers.
    pub signing_input: String,
    /// The third part, still encoded.
    pub signature: String,
    /// The header's `alg`.
    pub alg: String,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The claims, not yet verified.
    pub claims: Map<String, Value>,
}

/// Splits and decodes `token` as the JWT verifiers do (`jwt::compact::parse`).
pub fn jwt_parse(token: &str) -> Result<ParsedJwt, InvalidToken> {
    let jwt = crate::jwt::compact::parse(token)?;
    Ok(ParsedJwt {
        signing_input: jwt.signing_input.to_owned(),
        signature: jwt.signature.to_owned(),
        alg: jwt.header.alg,
        typ: jwt.header.typ,
        kid: jwt.header.kid,
        claims: jwt.claims,
    })
}

/// Reads a JWT's claims into [`TokenClaims`] as the JWT verifiers do once the signature holds
/// (`jwt::access_token::token_claims`).
pub fn jwt_claims(claims: Map<String, Value>) -> Result<TokenClaims, InvalidToken> {
    crate::jwt::access_token::token_claims(claims, VerifierKind::Jwt)
}

/// Checks `claims` as a verifier built with `audience`, `issuer` and `leeway` does at `now`
/// (seconds since the Unix epoch): the checks every verifier's claims pass (`ClaimChecks`).
pub fn check_claims(
    claims: &TokenClaims,
    audience: Option<&str>,
    issuer: Option<&str>,
    leeway: Duration,
    now: i64,
) -> Result<(), InvalidToken> {
    ClaimChecks {
        leeway,
        audience: audience.map(str::to_owned),
        issuer: issuer.map(str::to_owned),
    }
    .check(claims, now)
}

/// Verifies `token` in full, at the current time, both ways the library does: with a
/// [`JwtVerifier`] trusting `issuer` alone (routing by `iss`; its claims are returned) and with
/// `issuer` itself as a [`TokenVerifier`]. `issuer` must have fixed keys
/// ([`jwks`](crate::jwt::JwtIssuerBuilder::jwks) or
/// [`pem_key`](crate::jwt::JwtIssuerBuilder::pem_key)), so that nothing is awaited.
///
/// # Panics
///
/// When the verification waits for something (an issuer whose keys are fetched).
pub fn jwt_verify(
    issuer: &JwtIssuer,
    token: &str,
) -> (
    Result<TokenClaims, VerifyError>,
    Result<Principal, VerifyError>,
) {
    let verifier = JwtVerifier::new([issuer.clone()]).expect("one issuer");
    let claims = verifier
        .verify_claims(token)
        .now_or_never()
        .expect("fixed keys: nothing to wait for");
    let principal = issuer
        .verify(token)
        .now_or_never()
        .expect("fixed keys: nothing to wait for");
    (claims, principal)
}
