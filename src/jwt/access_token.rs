//! The claims of a verified JWT access token (RFC 9068 §2.2), as verifier-neutral [`TokenClaims`].
//!
//! Real issuers differ: Entra ID names scopes in `scp` (a space-separated string) and its client
//! in `azp` (v2) or `appid` (v1); Okta sends `scp` as an array and its client in `cid`; RFC 9068
//! says `scope` and `client_id`. All of these are read. A modelled claim of the wrong type makes the token
//! malformed rather than silently absent, so that a claim is never read one way here and
//! another way elsewhere.

use serde_json::{Map, Value};

use crate::{InvalidToken, Scopes, TokenClaims, VerifierKind};

/// Turns the verified claims into [`TokenClaims`]. `exp` is required (RFC 9068 §2.2): a token
/// that never expires is not accepted.
pub(crate) fn token_claims(
    mut claims: Map<String, Value>,
    verified_by: VerifierKind,
) -> Result<TokenClaims, InvalidToken> {
    Ok(TokenClaims {
        issuer: take_string(&mut claims, "iss")?,
        subject: take_string(&mut claims, "sub")?,
        token_id: take_string(&mut claims, "jti")?,
        audiences: take_audiences(&mut claims)?,
        expires_at: Some(take_time(&mut claims, "exp")?.ok_or(InvalidToken::Malformed)?),
        issued_at: take_time(&mut claims, "iat")?,
        not_before: take_time(&mut claims, "nbf")?,
        client_id: first_string(&mut claims, &["client_id", "azp", "appid", "cid"])?,
        username: first_string(&mut claims, &["username", "preferred_username"])?,
        scope: take_scopes(&mut claims)?,
        token_type: None,
        verified_by,
        extra: claims,
    })
}

fn take_string(
    claims: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, InvalidToken> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidToken::Malformed),
    }
}

/// The first present of `names`; the others stay in the extra claims.
fn first_string(
    claims: &mut Map<String, Value>,
    names: &[&str],
) -> Result<Option<String>, InvalidToken> {
    for name in names {
        if claims.contains_key(*name) {
            return take_string(claims, name);
        }
    }
    Ok(None)
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional (truncated).
fn take_time(claims: &mut Map<String, Value>, name: &str) -> Result<Option<i64>, InvalidToken> {
    let Some(value) = claims.remove(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(InvalidToken::Malformed);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e17 => Ok(Some(f.trunc() as i64)),
        _ => Err(InvalidToken::Malformed),
    }
}

/// `aud`: a string or an array of strings (RFC 7519 §4.1.3).
fn take_audiences(claims: &mut Map<String, Value>) -> Result<Vec<String>, InvalidToken> {
    match claims.remove("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud]),
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(InvalidToken::Malformed),
            })
            .collect(),
        Some(_) => Err(InvalidToken::Malformed),
    }
}

/// `scope` (RFC 9068: SP-separated), else `scp` (a SP-separated string or an array of scope
/// tokens). An array element that is not a string, or holds a space, refuses the token: read as
/// one scope here, it would be two wherever it is joined and split again.
fn take_scopes(claims: &mut Map<String, Value>) -> Result<Scopes, InvalidToken> {
    let value = match claims.remove("scope") {
        Some(scope) => scope,
        None => match claims.remove("scp") {
            Some(scp) => scp,
            None => return Ok(Scopes::new()),
        },
    };
    match value {
        Value::String(text) => Ok(Scopes::parse(&text)),
        Value::Array(list) => {
            let mut tokens = Vec::with_capacity(list.len());
            for item in &list {
                match item.as_str() {
                    Some(s) if Scopes::is_scope_token(s) => tokens.push(s),
                    _ => return Err(InvalidToken::MalformedScope),
                }
            }
            Ok(tokens.into_iter().collect())
        }
        _ => Err(InvalidToken::MalformedScope),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(claims: Value) -> Result<TokenClaims, InvalidToken> {
        let Value::Object(map) = claims else {
            unreachable!()
        };
        token_claims(map, VerifierKind::Jwt)
    }

    #[test]
    fn rfc_9068_claims() {
        let c = read(json!({
            "iss": "https://as", "sub": "alice", "aud": "https://rs", "exp": 2000, "iat": 1000,
            "jti": "j", "client_id": "app", "scope": "read write", "cnf": {"jkt": "abc"},
        }))
        .unwrap();
        assert_eq!(c.issuer.as_deref(), Some("https://as"));
        assert_eq!(c.subject.as_deref(), Some("alice"));
        assert_eq!(c.audiences, ["https://rs"]);
        assert_eq!((c.expires_at, c.issued_at), (Some(2000), Some(1000)));
        assert_eq!(c.client_id.as_deref(), Some("app"));
        assert_eq!(c.scope.as_str(), "read write");
        assert_eq!(c.extra["cnf"], json!({"jkt": "abc"}));
        assert_eq!(c.verified_by, VerifierKind::Jwt);
    }

    #[test]
    fn entra_and_okta_shapes() {
        let entra =
            read(json!({"exp": 2, "scp": "User.Read Mail.Send", "azp": "app-guid"})).unwrap();
        assert_eq!(entra.scope.as_str(), "Mail.Send User.Read");
        assert_eq!(entra.client_id.as_deref(), Some("app-guid"));
        let okta = read(json!({"exp": 2, "scp": ["openid", "read"], "cid": "x"})).unwrap();
        assert!(okta.scope.contains("read") && okta.scope.contains("openid"));
        assert_eq!(okta.client_id.as_deref(), Some("x"));
        let v1 = read(json!({"exp": 2, "appid": "legacy"})).unwrap();
        assert_eq!(v1.client_id.as_deref(), Some("legacy"));
    }

    #[test]
    fn fractional_times_truncate() {
        let c = read(json!({"exp": 2000.9, "nbf": 10.5})).unwrap();
        assert_eq!((c.expires_at, c.not_before), (Some(2000), Some(10)));
    }

    #[test]
    fn wrong_types_and_no_exp_are_malformed() {
        for bad in [
            json!({}),
            json!({"exp": "2000"}),
            json!({"exp": 1e300}),
            json!({"exp": 2, "iss": 7}),
            json!({"exp": 2, "aud": ["a", 1]}),
            json!({"exp": 2, "aud": {"a": 1}}),
            json!({"exp": 2, "sub": null}),
            json!({"exp": 2, "client_id": ["a"]}),
        ] {
            assert_eq!(read(bad.clone()), Err(InvalidToken::Malformed), "{bad}");
        }
        for bad in [
            json!({"exp": 2, "scp": ["read", 1]}),
            json!({"exp": 2, "scp": ["read admin"]}),
            json!({"exp": 2, "scope": 5}),
        ] {
            assert_eq!(
                read(bad.clone()),
                Err(InvalidToken::MalformedScope),
                "{bad}"
            );
        }
    }
}
