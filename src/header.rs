//! Reading the bearer token from the `Authorization` header (RFC 6750 §2.1).
//!
//! Only the header is read: tokens in query strings end up in logs and browser history, and the
//! MCP specification forbids them, so `?access_token=` is never looked at. Form-encoded body tokens
//! (RFC 6750 §2.2) are not supported either.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Default longest token accepted, in bytes. Real access tokens (even large JWTs) stay well below;
/// the bound keeps a hostile header from costing us hashing work and memory.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 4096;

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    /// No `Authorization` header, or one with another scheme (e.g. `Basic`): no bearer token was
    /// offered.
    Missing,
    /// A bearer token is present but the header breaks RFC 6750: the reason is sent as
    /// `error_description`.
    Malformed(&'static str),
    /// A syntactically valid bearer token.
    Bearer(&'a str),
}

/// Extracts the bearer token from `headers`.
pub(crate) fn bearer_token(headers: &HeaderMap, max_len: usize) -> Credentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed("Multiple Authorization headers");
    }
    // Non-visible-ASCII bytes can never form a b64token.
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed("The Authorization header is not valid ASCII");
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Missing;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Credentials::Malformed("The bearer token is missing");
    }
    if token.len() > max_len {
        return Credentials::Malformed("The bearer token is too long");
    }
    if !is_b64token(token) {
        return Credentials::Malformed("The bearer token is not a valid b64token");
    }
    Credentials::Bearer(token)
}

/// The characters of a `b64token` body, as a table: one load per byte on the hot path.
const B64TOKEN_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| B64TOKEN_CHAR[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&[u8]]) -> Credentials<'static> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        // Leak to keep the borrowed token in the returned value: fine in a test.
        let headers: &'static HeaderMap = Box::leak(Box::new(headers));
        bearer_token(headers, 64)
    }

    #[test]
    fn accepts_valid_tokens_case_insensitively() {
        assert_eq!(
            parse(&[b"Bearer abc.DEF-_~+/=="]),
            Credentials::Bearer("abc.DEF-_~+/==")
        );
        assert_eq!(parse(&[b"bearer abc"]), Credentials::Bearer("abc"));
        assert_eq!(parse(&[b"BEARER   abc"]), Credentials::Bearer("abc"));
    }

    #[test]
    fn missing_or_other_scheme() {
        assert_eq!(parse(&[]), Credentials::Missing);
        assert_eq!(parse(&[b"Basic dXNlcjpwYXNz"]), Credentials::Missing);
        assert_eq!(parse(&[b"Bearerabc"]), Credentials::Missing);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer ===",
            b"Bearer a=b",
            b"Bearer \"abc\"",
            b"Bearer abc\t",
            b"Bearer \xc3\xa9",
        ] {
            assert!(
                matches!(parse(&[bad]), Credentials::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(&[&[b"Bearer ".as_slice(), &[b'a'; 65]].concat()]),
            Credentials::Malformed("The bearer token is too long")
        );
        assert_eq!(
            parse(&[&[b"Bearer ".as_slice(), &[b'a'; 64]].concat()]),
            Credentials::Bearer(Box::leak("a".repeat(64).into_boxed_str()))
        );
        assert_eq!(
            parse(&[b"Bearer a", b"Bearer b"]),
            Credentials::Malformed("Multiple Authorization headers")
        );
    }
}
