//! The challenge renderer (RFC 6750 §3): whatever the configured realm, metadata URL and scopes,
//! every rejection yields a `WWW-Authenticate` value that parses back (independent RFC 9110
//! parser) to the `Bearer` scheme with exactly the intended parameters, in order, each value being
//! the configured one with what cannot appear in a header dropped, and nothing else.

use tower_introspect::error::InvalidToken;
use tower_introspect::fuzz_support::www_authenticate;
use tower_introspect::{Rejection, Scopes};

use crate::auth_param::parse_challenge;

const INVALID_TOKEN: [InvalidToken; 6] = [
    InvalidToken::Inactive,
    InvalidToken::Expired,
    InvalidToken::NotYetValid,
    InvalidToken::WrongAudience,
    InvalidToken::WrongIssuer,
    InvalidToken::NotAnAccessToken,
];

/// A configured value as a header can carry it: visible ASCII and spaces only.
fn sanitized(value: &str) -> String {
    value.chars().filter(|c| matches!(c, ' '..='~')).collect()
}

/// What a bearer layer is configured with, and the rejection to render.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// `realm`, if configured.
    pub realm: Option<String>,
    /// `resource_metadata`, if configured.
    pub resource_metadata: Option<String>,
    /// The scope advertised in the no-token challenge, if configured.
    pub scope: Option<String>,
    /// Which rejection: `kind % 5` picks no token, invalid request, invalid token, insufficient
    /// scope or unavailable; `kind / 5` picks the reason where there are several.
    pub kind: u8,
    /// The required scopes of an insufficient-scope rejection.
    pub required: Vec<String>,
}

/// Renders the challenge for `input` and checks it parses back to exactly the intended parameters.
pub fn check(input: &Input) {
    let reason = usize::from(input.kind / 5);
    let rejection = match input.kind % 5 {
        0 => Rejection::MissingToken,
        1 => Rejection::InvalidRequest(if reason % 2 == 0 {
            "Multiple Authorization headers"
        } else {
            "The bearer token is not a valid b64token"
        }),
        2 => Rejection::InvalidToken(INVALID_TOKEN[reason % INVALID_TOKEN.len()]),
        3 => Rejection::InsufficientScope(input.required.iter().collect::<Scopes>()),
        _ => Rejection::Unavailable,
    };
    let header = www_authenticate(
        input.realm.as_deref(),
        input.resource_metadata.as_deref(),
        input.scope.as_deref(),
        &rejection,
    );
    if rejection == Rejection::Unavailable {
        assert!(header.is_none(), "a server failure is not a challenge");
        return;
    }
    let header = header.expect("every client-side rejection has a challenge");
    let challenge = parse_challenge(header.as_bytes())
        .unwrap_or_else(|| panic!("unparsable challenge {header:?}"));
    assert_eq!(challenge.scheme, "Bearer");

    let mut expected: Vec<(&str, String)> = Vec::new();
    if let Some(realm) = &input.realm {
        expected.push(("realm", sanitized(realm)));
    }
    let error = match &rejection {
        Rejection::InvalidRequest(_) => Some("invalid_request"),
        Rejection::InvalidToken(_) => Some("invalid_token"),
        Rejection::InsufficientScope(_) => Some("insufficient_scope"),
        _ => None,
    };
    if let Some(error) = error {
        expected.push(("error", error.to_owned()));
        expected.push(("error_description", rejection.description().to_owned()));
    }
    match &rejection {
        Rejection::InsufficientScope(required) => {
            expected.push(("scope", sanitized(required.as_str())));
        }
        Rejection::MissingToken => {
            if let Some(scope) = &input.scope {
                expected.push(("scope", sanitized(scope)));
            }
        }
        _ => {}
    }
    if let Some(url) = &input.resource_metadata {
        expected.push(("resource_metadata", sanitized(url)));
    }

    let got: Vec<(&str, String)> = challenge
        .params
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    if let Rejection::InsufficientScope(required) = &rejection {
        let named = got.iter().find(|(name, _)| *name == "scope");
        for scope in named.map_or("", |(_, v)| v.as_str()).split(' ') {
            assert!(
                scope.is_empty() || required.contains(scope),
                "challenge names {scope:?}, which is not a required scope"
            );
        }
        return;
    }
    assert_eq!(got, expected, "challenge {header:?}");
}
