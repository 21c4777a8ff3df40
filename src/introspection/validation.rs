//! Checks applied to an `active: true` response before it becomes a [`Principal`](crate::Principal).
//!
//! `active: true` only means the authorization server issued the token and has not revoked it. It
//! does not mean the token is meant for *this* resource: a token minted for another API of the same
//! server introspects as active too. Hence the audience check (RFC 8707, required by the MCP
//! specification) and the optional issuer pin.

use std::time::Duration;

use super::IntrospectionResponse;
use crate::InvalidToken;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// What an active token must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct Validation {
    pub(crate) leeway: Duration,
    pub(crate) audience: Option<String>,
    pub(crate) issuer: Option<String>,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            leeway: DEFAULT_LEEWAY,
            audience: None,
            issuer: None,
        }
    }
}

impl Validation {
    /// Validates `claims` at `now` (seconds since the Unix epoch).
    pub(crate) fn check(
        &self,
        claims: &IntrospectionResponse,
        now: i64,
    ) -> Result<(), InvalidToken> {
        if !claims.active {
            return Err(InvalidToken::Inactive);
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if claims
            .exp
            .is_some_and(|exp| now > exp.saturating_add(leeway))
        {
            return Err(InvalidToken::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
        {
            return Err(InvalidToken::NotYetValid);
        }
        if is_refresh_token(claims) {
            return Err(InvalidToken::NotAnAccessToken);
        }
        if let Some(expected) = &self.audience
            && !claims.aud.iter().any(|aud| aud == expected)
        {
            return Err(InvalidToken::WrongAudience);
        }
        if let Some(expected) = &self.issuer
            && claims.iss.as_deref() != Some(expected.as_str())
        {
            return Err(InvalidToken::WrongIssuer);
        }
        Ok(())
    }
}

/// Whether the server says this is a refresh token. Servers spell it differently: RFC 7662's
/// `token_type` (`refresh_token`), Ory Hydra's `token_use`, Keycloak's `typ` (`Refresh`).
fn is_refresh_token(claims: &IntrospectionResponse) -> bool {
    let says_refresh = |value: Option<&str>| {
        value.is_some_and(|v| {
            v.eq_ignore_ascii_case("refresh_token") || v.eq_ignore_ascii_case("refresh")
        })
    };
    says_refresh(claims.token_type.as_deref())
        || ["token_use", "typ"]
            .iter()
            .any(|name| says_refresh(claims.extra.get(*name).and_then(|v| v.as_str())))
}

#[cfg(test)]
mod tests {
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
            Validation::default().check(&claims, NOW),
            Err(InvalidToken::Inactive)
        );
    }

    #[test]
    fn expiry_respects_leeway() {
        let v = Validation::default();
        let mut c = active();
        c.exp = Some(NOW - 60);
        assert_eq!(v.check(&c, NOW), Ok(()));
        c.exp = Some(NOW - 61);
        assert_eq!(v.check(&c, NOW), Err(InvalidToken::Expired));
        c.exp = Some(i64::MIN);
        assert_eq!(v.check(&c, NOW), Err(InvalidToken::Expired));
    }

    #[test]
    fn not_before_respects_leeway() {
        let v = Validation::default();
        let mut c = active();
        c.nbf = Some(NOW + 60);
        assert_eq!(v.check(&c, NOW), Ok(()));
        c.nbf = Some(NOW + 61);
        assert_eq!(v.check(&c, NOW), Err(InvalidToken::NotYetValid));
    }

    #[test]
    fn refresh_tokens_in_any_spelling_are_refused() {
        let v = Validation::default();
        for (field, value) in [
            ("token_type", "refresh_token"),
            ("token_use", "refresh_token"),
            ("typ", "Refresh"),
        ] {
            let mut c = active();
            if field == "token_type" {
                c.token_type = Some(value.into());
            } else {
                c.extra.insert(field.into(), value.into());
            }
            assert_eq!(
                v.check(&c, NOW),
                Err(InvalidToken::NotAnAccessToken),
                "{field}"
            );
        }
        let mut c = active();
        c.token_type = Some("Bearer".into());
        assert_eq!(v.check(&c, NOW), Ok(()));
    }

    #[test]
    fn audience_must_be_contained() {
        let v = strict();
        let mut c = active();
        c.iss = Some("https://as.example".into());
        assert_eq!(
            v.check(&c, NOW),
            Err(InvalidToken::WrongAudience),
            "missing aud"
        );
        c.aud = vec!["https://rs.example/mcp/".into()];
        assert_eq!(
            v.check(&c, NOW),
            Err(InvalidToken::WrongAudience),
            "no normalisation"
        );
        c.aud = vec!["other".into(), "https://rs.example/mcp".into()];
        assert_eq!(v.check(&c, NOW), Ok(()));
    }

    #[test]
    fn issuer_must_match_exactly() {
        let v = strict();
        let mut c = active();
        c.aud = vec!["https://rs.example/mcp".into()];
        assert_eq!(
            v.check(&c, NOW),
            Err(InvalidToken::WrongIssuer),
            "missing iss"
        );
        c.iss = Some("https://as.example/".into());
        assert_eq!(v.check(&c, NOW), Err(InvalidToken::WrongIssuer));
        c.iss = Some("https://as.example".into());
        assert_eq!(v.check(&c, NOW), Ok(()));
    }
}
