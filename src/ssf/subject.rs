//! Subject identifiers (RFC 9493) as they appear in Security Event Tokens, and the cached
//! verdicts each one reaches.

use serde_json::{Map, Value};

use crate::cache::Identifier;

/// Deepest nesting of `complex` and `aliases` subjects read: real ones are one level deep, and
/// the bound keeps a hostile document from recursing without end.
const MAX_DEPTH: usize = 3;
/// Most identifiers an `aliases` subject may list.
const MAX_ALIASES: usize = 16;

/// A subject identifier, read from its JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    /// `iss_sub`: a subject as named by its issuer.
    IssSub { iss: String, sub: String },
    /// `email`.
    Email(String),
    /// `opaque`: an identifier the transmitter alone understands; read as its `sub`.
    Opaque(String),
    /// `jwt_id`: one token, by its issuer and `jti`.
    JwtId { iss: String, jti: String },
    /// `complex`: the `user` and `session` members are read; others (tenant, device, …) narrow
    /// nothing here.
    Complex {
        user: Option<Box<Subject>>,
        session: Option<Box<Subject>>,
    },
    /// `aliases`: several identifiers of one subject.
    Aliases(Vec<Subject>),
    /// A format this receiver does not match to principals (`phone_number`, `account`, `did`,
    /// `uri`, or unknown): the event is acknowledged and counted as unmatched.
    Unsupported,
}

impl Subject {
    /// Reads a subject identifier. `Err` for an object that claims a known format but lacks
    /// its members: a malformed event, not an unknown one.
    pub(crate) fn parse(value: &Value) -> Result<Self, &'static str> {
        Self::parse_at(value, 0)
    }

    fn parse_at(value: &Value, depth: usize) -> Result<Self, &'static str> {
        let object = value
            .as_object()
            .ok_or("a subject identifier is a JSON object")?;
        if depth > MAX_DEPTH {
            return Err("subject identifiers nest too deeply");
        }
        let format = object
            .get("format")
            .and_then(Value::as_str)
            .ok_or("a subject identifier has a format")?;
        Ok(match format {
            "iss_sub" => Self::IssSub {
                iss: member(object, "iss")?,
                sub: member(object, "sub")?,
            },
            "email" => Self::Email(member(object, "email")?),
            "opaque" => Self::Opaque(member(object, "id")?),
            "jwt_id" => Self::JwtId {
                iss: member(object, "iss")?,
                jti: member(object, "jti")?,
            },
            "complex" => {
                let nested = |name| {
                    object
                        .get(name)
                        .map(|v| Self::parse_at(v, depth + 1).map(Box::new))
                        .transpose()
                };
                Self::Complex {
                    user: nested("user")?,
                    session: nested("session")?,
                }
            }
            "aliases" => {
                let identifiers = object
                    .get("identifiers")
                    .and_then(Value::as_array)
                    .ok_or("an aliases subject lists identifiers")?;
                if identifiers.len() > MAX_ALIASES {
                    return Err("an aliases subject lists too many identifiers");
                }
                Self::Aliases(
                    identifiers
                        .iter()
                        .map(|v| Self::parse_at(v, depth + 1))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => Self::Unsupported,
        })
    }

    /// What a revocation naming this subject, sent by the transmitter `issuer`, invalidates.
    pub(crate) fn targets<'a>(&'a self, issuer: &'a str) -> Vec<Target<'a>> {
        let mut targets = Vec::new();
        self.collect(issuer, &mut targets);
        targets
    }

    fn collect<'a>(&'a self, issuer: &'a str, into: &mut Vec<Target<'a>>) {
        let every = |identifier| Target {
            identifier,
            only_without_session: false,
        };
        match self {
            Self::IssSub { iss, sub } => into.push(every(Identifier::Subject(Some(iss), sub))),
            Self::Email(email) => into.push(every(Identifier::Email(email))),
            Self::Opaque(id) => into.push(every(Identifier::Subject(Some(issuer), id))),
            Self::JwtId { iss, jti } => into.push(every(Identifier::TokenId(Some(iss), jti))),
            Self::Complex { user, session } => match (user, session) {
                // One session of a user: the verdicts of that session, and the user's verdicts
                // that name no session (they may belong to it: when in doubt, remove more).
                (Some(user), Some(session)) => {
                    let start = into.len();
                    user.collect(issuer, into);
                    for target in &mut into[start..] {
                        target.only_without_session = true;
                    }
                    session.collect_session(issuer, into);
                }
                (Some(user), None) => user.collect(issuer, into),
                (None, Some(session)) => session.collect_session(issuer, into),
                (None, None) => {}
            },
            Self::Aliases(identifiers) => {
                for identifier in identifiers {
                    identifier.collect(issuer, into);
                }
            }
            Self::Unsupported => {}
        }
    }

    /// This subject read as the `session` member of a complex subject: an opaque identifier is
    /// a session id (`sid`); others are read as they are.
    fn collect_session<'a>(&'a self, issuer: &'a str, into: &mut Vec<Target<'a>>) {
        match self {
            Self::Opaque(sid) => into.push(Target {
                identifier: Identifier::Session(Some(issuer), sid),
                only_without_session: false,
            }),
            other => other.collect(issuer, into),
        }
    }
}

/// What one revocation forgets: the verdicts entered under an identifier, or only those of them
/// whose principal names no session (`sid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub(crate) identifier: Identifier<'a>,
    pub(crate) only_without_session: bool,
}

fn member(object: &Map<String, Value>, name: &'static str) -> Result<String, &'static str> {
    object
        .get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .ok_or(match name {
            "iss" => "the subject identifier lacks iss",
            "sub" => "the subject identifier lacks sub",
            "email" => "the subject identifier lacks email",
            "id" => "the subject identifier lacks id",
            _ => "the subject identifier lacks jti",
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn targets(value: Value) -> Vec<(Identifier<'static>, bool)> {
        let subject = Box::leak(Box::new(Subject::parse(&value).unwrap()));
        subject
            .targets("https://tr")
            .into_iter()
            .map(|t| (t.identifier, t.only_without_session))
            .collect()
    }

    #[test]
    fn each_format_reaches_its_verdicts() {
        assert_eq!(
            targets(json!({"format": "iss_sub", "iss": "https://as", "sub": "alice"})),
            [(Identifier::Subject(Some("https://as"), "alice"), false)]
        );
        assert_eq!(
            targets(json!({"format": "email", "email": "a@example.com"})),
            [(Identifier::Email("a@example.com"), false)]
        );
        assert_eq!(
            targets(json!({"format": "opaque", "id": "alice"})),
            [(Identifier::Subject(Some("https://tr"), "alice"), false)]
        );
        assert_eq!(
            targets(json!({"format": "jwt_id", "iss": "https://as", "jti": "t1"})),
            [(Identifier::TokenId(Some("https://as"), "t1"), false)]
        );
        assert_eq!(
            targets(json!({"format": "complex",
                "user": {"format": "iss_sub", "iss": "https://as", "sub": "alice"},
                "session": {"format": "opaque", "id": "s1"}})),
            [
                (Identifier::Subject(Some("https://as"), "alice"), true),
                (Identifier::Session(Some("https://tr"), "s1"), false)
            ]
        );
        assert_eq!(
            targets(json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "a@example.com"},
                {"format": "opaque", "id": "alice"}]})),
            [
                (Identifier::Email("a@example.com"), false),
                (Identifier::Subject(Some("https://tr"), "alice"), false)
            ]
        );
        assert!(targets(json!({"format": "phone_number", "phone_number": "+1"})).is_empty());
    }

    #[test]
    fn malformed_subjects_are_errors() {
        for bad in [
            json!("alice"),
            json!({"sub": "alice"}),
            json!({"format": "iss_sub", "sub": "alice"}),
            json!({"format": "iss_sub", "iss": "", "sub": "alice"}),
            json!({"format": "jwt_id", "iss": "https://as", "jti": 7}),
            json!({"format": "complex", "user": "alice"}),
            json!({"format": "aliases"}),
        ] {
            assert!(Subject::parse(&bad).is_err(), "{bad}");
        }
        let mut deep = json!({"format": "opaque", "id": "x"});
        for _ in 0..10 {
            deep = json!({"format": "complex", "user": deep});
        }
        assert_eq!(
            Subject::parse(&deep),
            Err("subject identifiers nest too deeply")
        );
    }
}
