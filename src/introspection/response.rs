//! The RFC 7662 §2.2 introspection response, parsed as leniently as real servers require.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Scopes;
use crate::{TokenClaims, VerifierKind};

/// The members of an introspection response (RFC 7662 §2.2).
///
/// Only `active` is required. Real servers differ in the details, so parsing accepts:
/// `aud` as a string or an array; `scope` absent, `null`, empty, SP-separated (SP only, see
/// [`Scopes`]) or an array; `exp`/`iat`/`nbf` as integers (or floats, truncated). Members the
/// library does not model are kept in [`extra`](Self::extra).
///
/// The struct is `#[non_exhaustive]`: build one with `IntrospectionResponse::default()` and assign
/// the fields you need (custom verifiers and tests do this).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IntrospectionResponse {
    /// Whether the token is currently active. Required by RFC 7662; a response without it is a
    /// server error, not an inactive token.
    pub active: bool,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Scopes::is_empty")]
    pub scope: Scopes,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Human-readable identifier of the resource owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Type of the token (e.g. `Bearer`, or `refresh_token` on servers that introspect those).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued-at, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not-before, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Subject of the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Intended audiences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    /// Issuer of the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Unique identifier of the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Every other member of the response.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn epoch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    /// A JSON number as whole seconds.
    struct Seconds(i64);
    impl<'de> Deserialize<'de> for Seconds {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct SecondsVisitor;
            impl Visitor<'_> for SecondsVisitor {
                type Value = Seconds;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("seconds since the Unix epoch")
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seconds, E> {
                    Ok(Seconds(n))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seconds, E> {
                    Ok(Seconds(i64::try_from(n).unwrap_or(i64::MAX)))
                }
                // `as` saturates at the i64 bounds and maps NaN to 0, both harmless for a
                // timestamp.
                fn visit_f64<E: de::Error>(self, f: f64) -> Result<Seconds, E> {
                    Ok(Seconds(f as i64))
                }
            }
            deserializer.deserialize_any(SecondsVisitor)
        }
    }
    Ok(Option::<Seconds>::deserialize(deserializer)?.map(|s| s.0))
}

/// A member that servers send as one string or as an array of strings (`aud`, sometimes `scope`).
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Read straight from the parser (an untagged enum would buffer the value first).
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, one: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(one.to_owned()))
            }
            fn visit_string<E: de::Error>(self, one: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(one))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// Reads the members in one pass, straight from the parser. (`#[serde(flatten)]` would buffer the
/// whole object into an intermediate tree first, several times the cost, on every cache miss.)
impl<'de> Deserialize<'de> for IntrospectionResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResponseVisitor)
    }
}

/// The members the struct models, by position in [`FIELDS`].
const FIELDS: [&str; 12] = [
    "active",
    "scope",
    "client_id",
    "username",
    "token_type",
    "exp",
    "iat",
    "nbf",
    "sub",
    "aud",
    "iss",
    "jti",
];

/// A member name: one of [`FIELDS`], or another (kept in `extra`).
enum Member {
    Field(usize),
    Other(String),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl Visitor<'_> for MemberVisitor {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
                Ok(match FIELDS.iter().position(|field| *field == name) {
                    Some(i) => Member::Field(i),
                    None => Member::Other(name.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(MemberVisitor)
    }
}

/// `exp`, `iat`, `nbf`: see [`epoch`].
struct Epoch(Option<i64>);

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        epoch(deserializer).map(Epoch)
    }
}

/// `aud`: see [`one_or_many`].
struct Audiences(Vec<String>);

impl<'de> Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        one_or_many(deserializer).map(Audiences)
    }
}

struct ResponseVisitor;

impl<'de> Visitor<'de> for ResponseVisitor {
    type Value = IntrospectionResponse;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an introspection response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut response = IntrospectionResponse::default();
        let mut seen = [false; FIELDS.len()];
        while let Some(member) = map.next_key::<Member>()? {
            let i = match member {
                Member::Field(i) => i,
                Member::Other(name) => {
                    let value = map.next_value()?;
                    response.extra.insert(name, value);
                    continue;
                }
            };
            // A member given twice is ambiguous: which one would another parser believe?
            if std::mem::replace(&mut seen[i], true) {
                return Err(de::Error::duplicate_field(FIELDS[i]));
            }
            let r = &mut response;
            match FIELDS[i] {
                "active" => r.active = map.next_value()?,
                "scope" => r.scope = map.next_value()?,
                "client_id" => r.client_id = map.next_value()?,
                "username" => r.username = map.next_value()?,
                "token_type" => r.token_type = map.next_value()?,
                "exp" => r.exp = map.next_value::<Epoch>()?.0,
                "iat" => r.iat = map.next_value::<Epoch>()?.0,
                "nbf" => r.nbf = map.next_value::<Epoch>()?.0,
                "sub" => r.sub = map.next_value()?,
                "aud" => r.aud = map.next_value::<Audiences>()?.0,
                "iss" => r.iss = map.next_value()?,
                _ => r.jti = map.next_value()?,
            }
        }
        if !seen[0] {
            return Err(de::Error::missing_field("active"));
        }
        Ok(response)
    }
}

/// The verifier-neutral claims of a response (what a [`Principal`](crate::Principal) is built
/// from). `active` is not carried over: the introspector refuses an inactive response before
/// converting it.
impl From<IntrospectionResponse> for TokenClaims {
    fn from(response: IntrospectionResponse) -> Self {
        let IntrospectionResponse {
            active: _,
            scope,
            client_id,
            username,
            token_type,
            exp,
            iat,
            nbf,
            sub,
            aud,
            iss,
            jti,
            extra,
        } = response;
        TokenClaims {
            issuer: iss,
            subject: sub,
            username,
            audiences: aud,
            client_id,
            scope,
            token_type,
            token_id: jti,
            expires_at: exp,
            issued_at: iat,
            not_before: nbf,
            extra,
            verified_by: VerifierKind::Introspection,
        }
    }
}

/// Accepts the RFC 7662 string form, `null`, or (as some servers send) an array of strings.
impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
            None => Scopes::new(),
            Some(OneOrMany::One(text)) => Scopes::parse(&text),
            Some(OneOrMany::Many(list)) => list.iter().collect(),
        })
    }
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
    fn a_modelled_member_given_twice_is_refused() {
        for twice in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"aud":"a","aud":"b"}"#,
            r#"{"active":true,"exp":1,"exp":4102444800}"#,
        ] {
            let error = parse(twice).unwrap_err().to_string();
            assert!(error.starts_with("duplicate field"), "{twice}: {error}");
        }
    }

    #[test]
    fn shapes_servers_send_parse_as_before() {
        let r = parse(r#"{"active":true,"exp":1.9,"iat":18446744073709551615,"nbf":-3,"scope":["b","a"],"aud":null}"#)
            .unwrap();
        assert_eq!((r.exp, r.iat, r.nbf), (Some(1), Some(i64::MAX), Some(-3)));
        assert_eq!(r.scope.as_str(), "a b");
        assert!(r.aud.is_empty());
        for refused in [
            r#"{"active":true,"exp":"1"}"#,
            r#"{"active":true,"aud":3}"#,
            r#"{"active":true,"aud":[1]}"#,
            r#"{"active":true,"sub":1}"#,
            r#"{"active":1}"#,
            r#"[true]"#,
            r#"{"sub":"s"}"#,
        ] {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn audience_as_string() {
        let r = parse(r#"{"active":true,"aud":"https://rs"}"#).unwrap();
        assert_eq!(r.aud, ["https://rs"]);
    }

    #[test]
    fn deserializes_string_null_and_array() {
        let s: Scopes = serde_json::from_str(r#""a b""#).unwrap();
        assert_eq!(s.to_string(), "a b");
        let s: Scopes = serde_json::from_str("null").unwrap();
        assert!(s.is_empty());
        let s: Scopes = serde_json::from_str(r#"["b","a b"]"#).unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(serde_json::from_str::<Scopes>("3").is_err());
    }
}
