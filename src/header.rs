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
///
/// The scheme is matched case-insensitively (RFC 7235 §2.1) and must be followed by exactly the
/// separator RFC 6750 §2.1 allows: one or more SP. A value that starts with `Bearer` but continues
/// with anything else (`Bearer<TAB>token`, `Bearer\ntoken`, `Bearertoken`) is *malformed*, never
/// "no token": a client that meant to authenticate must learn that it did not, and a layer that lets
/// anonymous requests through must not treat it as anonymous.
///
/// Another scheme's credentials are none of our business: whatever bytes they hold (a Digest
/// username in UTF-8, say), such a header means "no bearer token".
pub(crate) fn bearer_token(headers: &HeaderMap, max_len: usize) -> Credentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed("Multiple Authorization headers");
    }
    let bytes = value.as_bytes();
    let Some(after_scheme) = strip_bearer_scheme(bytes) else {
        return Credentials::Missing;
    };
    let Some(separated) = after_scheme.strip_prefix(b" ") else {
        return Credentials::Malformed(if after_scheme.is_empty() {
            "The bearer token is missing"
        } else {
            "The bearer scheme must be followed by a space"
        });
    };
    let token = trim_leading_spaces(separated);
    if token.is_empty() {
        return Credentials::Malformed("The bearer token is missing");
    }
    if token.len() > max_len {
        return Credentials::Malformed("The bearer token is too long");
    }
    match std::str::from_utf8(token) {
        Ok(token) if is_b64token(token) => Credentials::Bearer(token),
        _ => Credentials::Malformed("The bearer token is not a valid b64token"),
    }
}

/// The bytes after a case-insensitive `Bearer` prefix, or `None` when the value does not start
/// with it.
fn strip_bearer_scheme(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    scheme.eq_ignore_ascii_case(SCHEME).then_some(rest)
}

fn trim_leading_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
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
        // Another scheme's non-ASCII credentials are not ours to judge.
        assert_eq!(
            parse(&[b"Digest username=\"J\xc3\xbcrgen\", realm=\"x\""]),
            Credentials::Missing
        );
        assert_eq!(parse(&[b"Bear abc"]), Credentials::Missing);
    }

    #[test]
    fn bearer_scheme_without_a_space_is_malformed() {
        for bad in [
            &b"Bearer\tabc"[..],
            b"Bearer\t abc",
            b"bearer\tabc",
            b"Bearer\x85abc",
            b"Bearer\xc2\xa0abc",
            b"Bearerabc",
            b"Bearer,abc",
        ] {
            assert_eq!(
                parse(&[bad]),
                Credentials::Malformed("The bearer scheme must be followed by a space"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
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

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Bytes a header value may hold (what `HeaderValue::from_bytes` accepts).
        fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    Just(b'\t'),
                    0x20u8..0x7f,
                    0x80u8..=0xff,
                    prop::sample::select(b"Bb eEaArR=.-_~+/\t".to_vec()),
                ],
                0..40,
            )
        }

        fn parse_one(value: &[u8]) -> Credentials<'static> {
            parse(&[value])
        }

        proptest! {
            /// Whatever the header, the parser answers, and a bearer token it returns is exactly
            /// what followed `Bearer` and its spaces, a valid b64token within the length bound.
            #[test]
            fn any_header_is_judged_consistently(value in header_bytes()) {
                let starts_with_bearer = value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer");
                match parse_one(&value) {
                    Credentials::Missing => prop_assert!(!starts_with_bearer),
                    Credentials::Malformed(_) => prop_assert!(starts_with_bearer),
                    Credentials::Bearer(token) => {
                        prop_assert!(starts_with_bearer);
                        prop_assert_eq!(value[6], b' ');
                        let rest = &value[6..];
                        let spaces = rest.iter().take_while(|&&b| b == b' ').count();
                        prop_assert_eq!(&rest[spaces..], token.as_bytes());
                        prop_assert!(is_b64token(token) && token.len() <= 64);
                    }
                }
            }

            /// Every valid token is read back exactly, whatever the scheme's case and the spaces.
            #[test]
            fn valid_tokens_round_trip(
                body in "[A-Za-z0-9._~+/-]{1,40}",
                padding in 0usize..3,
                spaces in 1usize..4,
                upper in prop::collection::vec(any::<bool>(), 6),
            ) {
                let scheme: String = "bearer"
                    .chars()
                    .zip(&upper)
                    .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                    .collect();
                let token = format!("{body}{}", "=".repeat(padding));
                let value = format!("{scheme}{}{token}", " ".repeat(spaces));
                let expected = if token.len() > 64 {
                    Credentials::Malformed("The bearer token is too long")
                } else {
                    Credentials::Bearer(Box::leak(token.into_boxed_str()))
                };
                prop_assert_eq!(parse_one(value.as_bytes()), expected);
            }
        }
    }
}
