//! Internals exposed for the crate's own benchmarks (feature `internals`, hidden); not part of
//! the API and not semver-stable.

/// Parses the `Authorization` header as the layer does; `Ok(None)` when no bearer token.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<Option<&str>, &'static str> {
    match crate::header::bearer_token(headers, crate::header::DEFAULT_MAX_TOKEN_LENGTH) {
        crate::header::Credentials::Missing => Ok(None),
        crate::header::Credentials::Malformed(reason) => Err(reason),
        crate::header::Credentials::Bearer(token) => Ok(Some(token)),
        crate::header::Credentials::Dpop(_) => unreachable!("the DPoP scheme is not accepted here"),
    }
}

/// The cache key of a token.
pub fn token_key(token: &str) -> [u8; 32] {
    crate::cache::token_key(token)
}
