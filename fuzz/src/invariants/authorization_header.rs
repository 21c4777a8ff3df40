//! The `Authorization` header parser (RFC 6750 §2.1): whatever the headers, the parser never
//! panics, and a token it accepts is exactly the `b64token` after `Bearer` and spaces in the one
//! header the request carries.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tower_introspect::bench_support::bearer_token;
use tower_introspect::layer::DEFAULT_MAX_TOKEN_LENGTH;

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, from RFC 6750.
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && token[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn starts_with_bearer(value: &[u8]) -> bool {
    value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer")
}

/// Checks the parser on `data`: header values separated by `\n` (a byte no header value can
/// hold); empty input means no header.
pub fn check(data: &[u8]) {
    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    if !data.is_empty() {
        for part in data.split(|&b| b == b'\n') {
            if let Ok(value) = HeaderValue::from_bytes(part) {
                headers.append(AUTHORIZATION, value);
                values.push(part);
            }
        }
    }
    let result = bearer_token(&headers);
    match (values.as_slice(), result) {
        ([], result) => assert_eq!(result, Ok(None), "no header is no token"),
        ([_, _, ..], result) => assert!(result.is_err(), "two headers must be refused"),
        ([value], Ok(Some(token))) => {
            let token = token.as_bytes();
            assert!(!token.is_empty() && token.len() <= DEFAULT_MAX_TOKEN_LENGTH);
            assert!(
                is_b64token(token),
                "accepted a token that is not a b64token"
            );
            // value = "Bearer" 1*SP token, exactly.
            let prefix = &value[..value.len() - token.len()];
            assert!(value.ends_with(token), "the token is not the header's tail");
            assert!(starts_with_bearer(prefix), "accepted another scheme");
            assert!(
                prefix.len() > 6 && prefix[6..].iter().all(|&b| b == b' '),
                "scheme and token must be separated by spaces only"
            );
        }
        ([value], Ok(None)) => {
            // "No token" only for another scheme: a value that is `Bearer` followed by SP is a
            // bearer credential, valid or not.
            assert!(
                !(starts_with_bearer(value) && value.get(6) == Some(&b' ')),
                "a bearer credential was taken for no token"
            );
            assert!(
                !(starts_with_bearer(value) && matches!(value.get(6), None | Some(b' ' | b'\t'))),
                "`Bearer` followed by whitespace was taken for no token"
            );
        }
        ([value], Err(_)) => {
            assert!(
                starts_with_bearer(value),
                "another scheme's credentials were refused as a malformed bearer header"
            );
        }
    }
}
