//! The introspection response parser and validator (RFC 7662 §2.2): any body either fails to
//! parse (the layer answers 503) or parses to claims that the validator accepts only when they
//! are active, unexpired, already valid, for this audience and issuer, and not a refresh token;
//! and a valid access token is never refused.

use std::time::Duration;

use serde_json::Value;
use tower_introspect::Principal;
use tower_introspect::fuzz_support::validate;
use tower_introspect::introspection::IntrospectionResponse;

const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "https://rs.example/mcp";
const ISSUER: &str = "https://as.example";

/// The members servers use to say what kind of token this is.
fn type_claims(claims: &IntrospectionResponse) -> Vec<&str> {
    let mut kinds: Vec<&str> = claims.token_type.as_deref().into_iter().collect();
    for name in ["token_use", "typ"] {
        if let Some(Value::String(kind)) = claims.extra.get(name) {
            kinds.push(kind);
        }
    }
    kinds
}

// Both compare as servers' values are compared: ASCII case and surrounding whitespace aside
// (`"Offline "` is an offline token).
fn says_refresh(kind: &str) -> bool {
    let kind = kind.trim_ascii().to_ascii_lowercase();
    kind == "refresh_token" || kind == "refresh"
}

fn says_refresh_in_any_spelling(kind: &str) -> bool {
    let kind = kind.trim_ascii().to_ascii_lowercase();
    says_refresh(&kind)
        || kind == "offline"
        || kind == "urn:ietf:params:oauth:token-type:refresh_token"
}

/// Checks the parser and validator on `data`: byte 0 selects the audience and issuer pins (bits 0
/// and 1), byte 1 is the leeway in seconds, the rest is the response body.
pub fn check(data: &[u8]) {
    let [flags, leeway, body @ ..] = data else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<IntrospectionResponse>(body) else {
        return;
    };
    let audience = (flags & 1 != 0).then_some(AUDIENCE);
    let issuer = (flags & 2 != 0).then_some(ISSUER);
    let leeway_secs = i128::from(*leeway);
    let verdict = validate(
        &claims,
        audience,
        issuer,
        Duration::from_secs(u64::from(*leeway)),
        NOW,
    );

    let now = i128::from(NOW);
    let in_time = claims
        .exp
        .is_none_or(|exp| now <= i128::from(exp) + leeway_secs)
        && claims
            .nbf
            .is_none_or(|nbf| i128::from(nbf) - leeway_secs <= now);
    let for_us = audience.is_none_or(|aud| claims.aud.iter().any(|a| a == aud))
        && issuer.is_none_or(|iss| claims.iss.as_deref() == Some(iss));
    let kinds = type_claims(&claims);

    if verdict.is_ok() {
        assert!(claims.active, "accepted an inactive token");
        assert!(in_time, "accepted a token outside its validity window");
        assert!(for_us, "accepted a token for another audience or issuer");
        assert!(
            !kinds.iter().any(|k| says_refresh(k)),
            "accepted a refresh token"
        );
        assert!(
            !kinds.iter().any(|k| says_refresh_in_any_spelling(k)),
            "accepted a refresh token"
        );
    } else if claims.active
        && in_time
        && for_us
        && !kinds.iter().any(|k| says_refresh_in_any_spelling(k))
        && claims.scope.is_well_formed()
    {
        panic!("refused a valid access token: {verdict:?}");
    }

    // What handlers see is what the server said.
    let principal = Principal::new(claims.clone().into());
    assert_eq!(principal.subject(), claims.sub.as_deref());
    assert_eq!(principal.client_id(), claims.client_id.as_deref());
    assert!(principal.approximate_size() > 0);
    if let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(scope)) = raw.get("scope")
    {
        for granted in principal.scopes().iter() {
            assert!(
                scope.split(' ').any(|s| s == granted),
                "scope {granted:?} is not one of the SP-separated scopes of {scope:?}"
            );
        }
    }
}
