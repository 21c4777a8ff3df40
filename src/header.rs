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
    /// A token is present but the header breaks RFC 6750 (or RFC 9449 §7.1 for the `DPoP`
    /// scheme): the reason is sent as `error_description`.
    Malformed(&'static str),
    /// A syntactically valid bearer token.
    Bearer(&'a str),
    /// A syntactically valid token sent with the `DPoP` scheme (only when DPoP is accepted).
    Dpop(&'a str),
}

/// An authorization scheme this module reads, with its refusals' wording.
struct Scheme {
    /// Lower case, for a case-insensitive match (RFC 7235 §2.1).
    name: &'static [u8],
    no_space: &'static str,
    missing: &'static str,
    too_long: &'static str,
    not_b64token: &'static str,
}

const BEARER: Scheme = Scheme {
    name: b"bearer",
    no_space: "The bearer scheme must be followed by a space",
    missing: "The bearer token is missing",
    too_long: "The bearer token is too long",
    not_b64token: "The bearer token is not a valid b64token",
};

const DPOP: Scheme = Scheme {
    name: b"dpop",
    no_space: "The DPoP scheme must be followed by a space",
    missing: "The DPoP access token is missing",
    too_long: "The DPoP access token is too long",
    not_b64token: "The DPoP access token is not a valid token68",
};

/// Extracts the bearer token from `headers` (the `DPoP` scheme is another scheme here): what the
/// benches and fuzz targets measure, and the unit tests' reference.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn bearer_token(headers: &HeaderMap, max_len: usize) -> Credentials<'_> {
    credentials(headers, max_len, false)
}

/// Extracts the access token from `headers`: sent with the `Bearer` scheme or, when
/// `accept_dpop`, the `DPoP` scheme (RFC 9449 §7.1, whose token syntax is the same `token68`).
///
/// The scheme is matched case-insensitively (RFC 7235 §2.1) and must be followed by exactly the
/// separator RFC 6750 §2.1 allows: one or more SP. A value that starts with the scheme but
/// continues with anything else (`Bearer<TAB>token`, `Bearer\ntoken`, `Bearertoken`) is
/// *malformed*, never "no token": a client that meant to authenticate must learn that it did not,
/// and a layer that lets anonymous requests through must not treat it as anonymous.
///
/// Another scheme's credentials are none of our business: whatever bytes they hold (a Digest
/// username in UTF-8, say), such a header means "no bearer token".
pub(crate) fn credentials(
    headers: &HeaderMap,
    max_len: usize,
    accept_dpop: bool,
) -> Credentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed("Multiple Authorization headers");
    }
    let bytes = value.as_bytes();
    if let Some(rest) = strip_scheme(bytes, BEARER.name) {
        return token(rest, &BEARER, max_len)
            .map_or_else(Credentials::Malformed, Credentials::Bearer);
    }
    if accept_dpop && let Some(rest) = strip_scheme(bytes, DPOP.name) {
        return token(rest, &DPOP, max_len).map_or_else(Credentials::Malformed, Credentials::Dpop);
    }
    Credentials::Missing
}

/// The token after a scheme: separated by spaces, present, bounded, a `b64token`.
fn token<'a>(
    after_scheme: &'a [u8],
    scheme: &Scheme,
    max_len: usize,
) -> Result<&'a str, &'static str> {
    let Some(separated) = after_scheme.strip_prefix(b" ") else {
        return Err(if after_scheme.is_empty() {
            scheme.missing
        } else {
            scheme.no_space
        });
    };
    let token = trim_leading_spaces(separated);
    if token.is_empty() {
        return Err(scheme.missing);
    }
    if token.len() > max_len {
        return Err(scheme.too_long);
    }
    match std::str::from_utf8(token) {
        Ok(token) if is_b64token(token) => Ok(token),
        _ => Err(scheme.not_b64token),
    }
}

/// The bytes after a case-insensitive `scheme` prefix, or `None` when the value does not start
/// with it.
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
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

    #[test]
    fn the_dpop_scheme_only_when_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("DPoP abc.def"));
        assert_eq!(bearer_token(&headers, 64), Credentials::Missing);
        assert_eq!(
            credentials(&headers, 64, true),
            Credentials::Dpop("abc.def")
        );
        for (value, expected) in [
            ("dpop   abc", Credentials::Dpop("abc")),
            ("DPOP abc", Credentials::Dpop("abc")),
            (
                "DPoP",
                Credentials::Malformed("The DPoP access token is missing"),
            ),
            (
                "DPoP\tabc",
                Credentials::Malformed("The DPoP scheme must be followed by a space"),
            ),
            (
                "DPoPabc",
                Credentials::Malformed("The DPoP scheme must be followed by a space"),
            ),
            (
                "DPoP a b",
                Credentials::Malformed("The DPoP access token is not a valid token68"),
            ),
            (
                "DPoPs abc",
                Credentials::Malformed("The DPoP scheme must be followed by a space"),
            ),
            ("Bearer abc", Credentials::Bearer("abc")),
        ] {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(credentials(&headers, 64, true), expected, "{value:?}");
        }
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
                    Credentials::Dpop(_) => prop_assert!(false, "DPoP is not accepted here"),
                }
            }

            /// With DPoP accepted, a header starting with `DPoP` is judged like one starting with
            /// `Bearer`, and nothing else changes.
            #[test]
            fn the_dpop_scheme_is_judged_like_the_bearer_one(
                scheme in prop::sample::select(vec!["DPoP", "dpop", "DPOP", ""]),
                rest in header_bytes(),
            ) {
                let value = [scheme.as_bytes(), &rest].concat();
                let mut headers = HeaderMap::new();
                headers.insert(AUTHORIZATION, http::HeaderValue::from_bytes(&value).unwrap());
                let as_dpop = credentials(&headers, 64, true);
                let starts_with_dpop = value.len() >= 4 && value[..4].eq_ignore_ascii_case(b"dpop");
                if !starts_with_dpop {
                    prop_assert_eq!(as_dpop, bearer_token(&headers, 64));
                } else {
                    let mut rewritten = b"Bearer".to_vec();
                    rewritten.extend_from_slice(&value[4..]);
                    let mut as_bearer = HeaderMap::new();
                    as_bearer.insert(AUTHORIZATION, http::HeaderValue::from_bytes(&rewritten).unwrap());
                    match (as_dpop, bearer_token(&as_bearer, 64)) {
                        (Credentials::Dpop(a), Credentials::Bearer(b)) => prop_assert_eq!(a, b),
                        (Credentials::Malformed(_), Credentials::Malformed(_)) => {}
                        (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
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
