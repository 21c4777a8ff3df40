//! The RFC 7662 §2.2 introspection response, parsed as leniently as real servers require.

use serde::{Deserialize, Deserializer, Serialize};

use crate::principal::Scopes;

/// The members of an introspection response (RFC 7662 §2.2).
///
/// Only `active` is required. Real servers differ in the details, so parsing accepts:
/// `aud` as a string or an array; `scope` absent, `null`, empty, SP-separated (SP only, see
/// [`Scopes`]) or an array; `exp`/`iat`/`nbf` as integers (or floats, truncated). Members the
/// library does not model are kept in [`extra`](Self::extra).
///
/// The struct is `#[non_exhaustive]`: build one with `IntrospectionResponse::default()` and assign
/// the fields you need (custom verifiers and tests do this).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IntrospectionResponse {
    /// Whether the token is currently active. Required by RFC 7662; a response without it is a
    /// server error, not an inactive token.
    pub active: bool,
    /// Granted scopes.
    #[serde(default, skip_serializing_if = "Scopes::is_empty")]
    pub scope: Scopes,
    /// The client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Human-readable identifier of the resource owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Type of the token (e.g. `Bearer`, or `refresh_token` on servers that introspect those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "epoch",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<i64>,
    /// Issued-at, seconds since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "epoch",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<i64>,
    /// Not-before, seconds since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "epoch",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<i64>,
    /// Subject of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Intended audiences.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aud: Vec<String>,
    /// Issuer of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Unique identifier of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Every other member of the response.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn epoch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    Ok(match Option::<Number>::deserialize(deserializer)? {
        None => None,
        Some(Number::Int(n)) => Some(n),
        // `as` saturates at the i64 bounds and maps NaN to 0, both harmless for a timestamp.
        Some(Number::Float(f)) => Some(f as i64),
    })
}

/// A member that servers send as one string or as an array of strings (`aud`, sometimes `scope`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<IntrospectionResponse, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn minimal_inactive() {
        let r = parse(r#"{"active":false}"#).unwrap();
        assert!(!r.active);
        assert!(r.aud.is_empty() && r.scope.is_empty() && r.extra.is_empty());
    }

    #[test]
    fn active_is_required_and_boolean() {
        assert!(parse(r#"{"scope":"a"}"#).is_err());
        assert!(parse(r#"{"active":"true"}"#).is_err());
    }

    #[test]
    fn full_response_with_extras() {
        let r = parse(
            r#"{"active":true,"scope":"read  write","client_id":"c","username":"u",
               "token_type":"Bearer","exp":1700000000,"iat":1699990000.5,"nbf":null,
               "sub":"s","aud":["a","b"],"iss":"https://as","jti":"j","tenant":"t1"}"#,
        )
        .unwrap();
        assert!(r.active);
        assert_eq!(r.scope.to_string(), "read write");
        assert_eq!(r.exp, Some(1_700_000_000));
        assert_eq!(r.iat, Some(1_699_990_000));
        assert_eq!(r.nbf, None);
        assert_eq!(r.aud, ["a", "b"]);
        assert_eq!(r.extra.get("tenant"), Some(&serde_json::json!("t1")));
        assert_eq!(r.extra.len(), 1);
    }

    #[test]
    fn audience_as_string() {
        let r = parse(r#"{"active":true,"aud":"https://rs"}"#).unwrap();
        assert_eq!(r.aud, ["https://rs"]);
    }
}
