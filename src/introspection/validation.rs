//! Checks applied to an `active: true` response before it becomes a [`Principal`](crate::Principal):
//! `active: true`, then the checks of [`ClaimChecks`](crate::claims::ClaimChecks).
//!
//! `active: true` only means the authorization server issued the token and has not revoked it. It
//! does not mean the token is meant for *this* resource: a token minted for another API of the same
//! server introspects as active too. Hence the audience check (RFC 8707, required by the MCP
//! specification) and the optional issuer pin.

use super::IntrospectionResponse;
pub(crate) use crate::claims::ClaimChecks as Validation;
use crate::{InvalidToken, TokenClaims, VerifierKind};

impl Validation {
    /// Accepts an introspection response: `active: true`, then the checks every verifier's
    /// claims pass.
    pub(crate) fn accept(
        &self,
        response: IntrospectionResponse,
        now: i64,
    ) -> Result<TokenClaims, InvalidToken> {
        if !response.active {
            return Err(InvalidToken::Inactive);
        }
        let mut claims = TokenClaims::from(response);
        claims.verified_by = VerifierKind::Introspection;
        self.check(&claims, now)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn active() -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            ..Default::default()
        }
    }

    fn strict() -> Validation {
        Validation {
            leeway: Duration::from_secs(60),
            audience: Some("https://rs.example/mcp".into()),
            issuer: Some("https://as.example".into()),
        }
    }

    #[test]
    fn inactive_is_rejected() {
        let claims = IntrospectionResponse::default();
        assert_eq!(
            Validation::default().accept(claims, NOW).map(drop),
            Err(InvalidToken::Inactive)
        );
    }

    #[test]
    fn expiry_respects_leeway() {
        let v = Validation::default();
        let mut c = active();
        c.exp = Some(NOW - 60);
        assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()));
        c.exp = Some(NOW - 61);
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::Expired)
        );
        c.exp = Some(i64::MIN);
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::Expired)
        );
    }

    #[test]
    fn not_before_respects_leeway() {
        let v = Validation::default();
        let mut c = active();
        c.nbf = Some(NOW + 60);
        assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()));
        c.nbf = Some(NOW + 61);
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::NotYetValid)
        );
    }

    #[test]
    fn refresh_tokens_in_any_spelling_are_refused() {
        let v = Validation::default();
        for (field, value) in [
            ("token_type", "refresh_token"),
            ("token_type", "REFRESH_TOKEN"),
            (
                "token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            ("token_use", "refresh_token"),
            ("token_use", "refresh"),
            ("typ", "Refresh"),
            ("typ", "Offline"),
            ("typ", " offline "),
            ("typ", "urn:ietf:params:oauth:token-type:refresh_token"),
        ] {
            let mut c = active();
            if field == "token_type" {
                c.token_type = Some(value.into());
            } else {
                c.extra.insert(field.into(), value.into());
            }
            assert_eq!(
                v.accept(c.clone(), NOW).map(drop),
                Err(InvalidToken::NotAnAccessToken),
                "{field}"
            );
        }
        for access in [
            "Bearer",
            "access_token",
            "urn:ietf:params:oauth:token-type:access_token",
            "refresh_token_hint",
        ] {
            let mut c = active();
            c.token_type = Some(access.into());
            c.extra.insert("typ".into(), access.into());
            assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()), "{access}");
        }
    }

    #[test]
    fn scopes_outside_nqchar_refuse_the_token() {
        let v = Validation::default();
        for odd in [
            "tenant:x\tadmin",
            "read\nadmin",
            "read\u{a0}admin",
            "read \"admin\"",
        ] {
            let mut c = active();
            c.scope = crate::Scopes::parse(odd);
            assert_eq!(
                v.accept(c.clone(), NOW).map(drop),
                Err(InvalidToken::MalformedScope),
                "{odd:?}"
            );
        }
        let mut c = active();
        c.scope = crate::Scopes::parse(" read  write ");
        assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()));
    }

    #[test]
    fn audience_must_be_contained() {
        let v = strict();
        let mut c = active();
        c.iss = Some("https://as.example".into());
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::WrongAudience),
            "missing aud"
        );
        c.aud = vec!["https://rs.example/mcp/".into()];
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::WrongAudience),
            "no normalisation"
        );
        c.aud = vec!["other".into(), "https://rs.example/mcp".into()];
        assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()));
    }

    #[test]
    fn issuer_must_match_exactly() {
        let v = strict();
        let mut c = active();
        c.aud = vec!["https://rs.example/mcp".into()];
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::WrongIssuer),
            "missing iss"
        );
        c.iss = Some("https://as.example/".into());
        assert_eq!(
            v.accept(c.clone(), NOW).map(drop),
            Err(InvalidToken::WrongIssuer)
        );
        c.iss = Some("https://as.example".into());
        assert_eq!(v.accept(c.clone(), NOW).map(drop), Ok(()));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        /// A JSON value of any type, for a claim a server might send in any shape.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e12f64..1e12).prop_map(Value::from),
                "\\PC{0,8}".prop_map(Value::from),
                prop::sample::select(vec![
                    "refresh_token",
                    "Refresh",
                    "Offline",
                    "Bearer",
                    "read write",
                    "read\tadmin",
                    "https://rs.example/mcp",
                    "https://as.example",
                ])
                .prop_map(Value::from),
            ];
            leaf.prop_recursive(2, 8, 3, |inner| {
                prop::collection::vec(inner, 0..3).prop_map(Value::from)
            })
        }

        /// An introspection response made of the claims the validator reads, each present or not
        /// and of any type.
        fn response() -> impl Strategy<Value = Value> {
            let claims = [
                "active",
                "scope",
                "exp",
                "nbf",
                "aud",
                "iss",
                "token_type",
                "token_use",
                "typ",
            ];
            prop::collection::vec(proptest::option::of(any_json()), claims.len()).prop_map(
                move |values| {
                    let mut object = serde_json::Map::new();
                    for (name, value) in claims.iter().zip(values) {
                        if let Some(value) = value {
                            object.insert((*name).to_owned(), value);
                        }
                    }
                    if let Some(active) = object.get_mut("active") {
                        // Mostly a boolean, so that validation is reached.
                        if !active.is_string() {
                            *active = json!(true);
                        }
                    }
                    Value::Object(object)
                },
            )
        }

        proptest! {
            /// Any bytes: parsing answers (never panics) and a parsed response round-trips.
            #[test]
            fn any_body_parses_or_fails_cleanly(body in prop::collection::vec(any::<u8>(), 0..64)) {
                if let Ok(parsed) = serde_json::from_slice::<IntrospectionResponse>(&body) {
                    let again = serde_json::to_vec(&parsed).unwrap();
                    let reparsed: IntrospectionResponse = serde_json::from_slice(&again).unwrap();
                    prop_assert_eq!(reparsed.active, parsed.active);
                }
            }

            /// Whatever the server answers, an accepted token is active, current, an access token,
            /// with well-formed scopes, for our audience and issuer.
            #[test]
            fn accepted_responses_meet_every_rule(response in response()) {
                let Ok(claims) = serde_json::from_value::<IntrospectionResponse>(response.clone()) else {
                    return Ok(());
                };
                if strict().accept(claims.clone(), NOW).is_ok() {
                    prop_assert!(claims.active);
                    prop_assert!(claims.exp.is_none_or(|exp| exp >= NOW - 60));
                    prop_assert!(claims.nbf.is_none_or(|nbf| nbf <= NOW + 60));
                    prop_assert!(claims.aud.iter().any(|a| a == "https://rs.example/mcp"));
                    prop_assert_eq!(claims.iss.as_deref(), Some("https://as.example"));
                    prop_assert!(claims.scope.is_well_formed());
                    prop_assert!(!claims.scope.contains("admin"));
                    for claim in ["token_type", "token_use", "typ"] {
                        let value = response.get(claim).and_then(Value::as_str).unwrap_or("");
                        prop_assert!(
                            !["refresh_token", "refresh", "offline"]
                                .contains(&value.to_ascii_lowercase().as_str()),
                            "{} = {:?}", claim, value
                        );
                    }
                }
            }
        }
    }
}
