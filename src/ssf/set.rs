//! Checking a Security Event Token (RFC 8417) from the one transmitter a receiver trusts.
//!
//! Everything is checked before anything is acted on, in an order that spends nothing on a forgery:
//! the JWS shape and header (as strictly as for access tokens: `crit`, `b64`, JWE members
//! refused, keys named in the header never followed), an asymmetric `alg` from the allow-list,
//! `typ: secevent+jwt`, the signature with the transmitter's key, then `iss` and `aud` compared
//! exactly, `iat` within the window, `exp` (if any) not past, a `jti` and an `events` object. The
//! `jti` is recorded last, so that a SET refused for another reason does not use up its
//! identifier, and a forger cannot fill the replay store.

use std::time::Duration;

use serde_json::{Map, Value};

use super::SetError;
use crate::jwt::JwsAlgorithm;
use crate::jwt::compact;
use crate::jwt::jwks::KeySource;
use crate::replay::{RecordError, ReplayCache};
use crate::{InvalidToken, UnavailableCause, VerifyError};

/// Longest `jti` accepted.
const MAX_JTI_LENGTH: usize = 256;
/// Most events one SET may carry (RFC 8417 allows several; transmitters send one).
const MAX_EVENTS: usize = 16;

/// What a SET must satisfy, and the transmitter's keys.
#[derive(Debug)]
pub(crate) struct SetChecks {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) algorithms: Vec<JwsAlgorithm>,
    pub(crate) keys: KeySource,
    /// How old `iat` may be; also how long a `jti` is remembered.
    pub(crate) max_age: Duration,
    /// How far in the future `iat` may be (clock skew).
    pub(crate) leeway: Duration,
    pub(crate) replay: ReplayCache,
}

/// A SET that passed every check: what the receiver acts on.
#[derive(Debug)]
pub(crate) struct VerifiedSet {
    pub(crate) jti: String,
    /// SSF 1.0's top-level subject, for events that carry none of their own.
    pub(crate) sub_id: Option<Value>,
    /// Event type URI → payload.
    pub(crate) events: Map<String, Value>,
}

impl SetChecks {
    /// Checks `set` at `now` (seconds since the Unix epoch) and records its `jti`.
    pub(crate) async fn verify(&self, set: &str, now: i64) -> Result<VerifiedSet, SetError> {
        let jwt = compact::parse(set)
            .map_err(|_| SetError::InvalidRequest("the body is not a compact JWS"))?;
        let alg = JwsAlgorithm::from_name(&jwt.header.alg)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(SetError::InvalidKey("the SET's alg is not accepted"))?;
        if !is_secevent_typ(jwt.header.typ.as_deref()) {
            return Err(SetError::InvalidRequest(
                "the SET's typ is not secevent+jwt",
            ));
        }
        let key = self
            .keys
            .key(jwt.header.kid.as_deref(), alg)
            .await
            .map_err(|error| match error {
                VerifyError::Invalid(InvalidToken::UnknownKey) => {
                    SetError::InvalidKey("the SET names no key of the transmitter")
                }
                VerifyError::Invalid(_) => SetError::InvalidKey("the SET's key is not usable"),
                VerifyError::Unavailable(cause) => SetError::Unavailable(cause),
                VerifyError::Throttled(_) => SetError::Unavailable(crate::Unavailable::new(
                    UnavailableCause::Keys,
                    "the transmitter's keys are being refetched",
                )),
            })?;
        if !key.verify(jwt.signing_input, jwt.signature, alg) {
            return Err(SetError::InvalidKey("the SET's signature does not verify"));
        }
        let mut claims = jwt.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(SetError::InvalidIssuer);
        }
        if !names_audience(claims.get("aud"), &self.audience) {
            return Err(SetError::InvalidAudience);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(SetError::InvalidRequest("the SET has no iat"))?;
        let max_age = seconds(self.max_age);
        let leeway = seconds(self.leeway);
        if iat < now.saturating_sub(max_age) {
            return Err(SetError::InvalidRequest(
                "the SET's iat is older than this receiver accepts",
            ));
        }
        if iat > now.saturating_add(leeway) {
            return Err(SetError::InvalidRequest("the SET's iat is in the future"));
        }
        match claims.get("exp") {
            None => {}
            Some(exp) => match exp.as_i64() {
                Some(exp) if exp.saturating_add(leeway) >= now => {}
                Some(_) => return Err(SetError::InvalidRequest("the SET has expired")),
                None => return Err(SetError::InvalidRequest("the SET's exp is not a number")),
            },
        }
        let jti = match claims.remove("jti") {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_LENGTH => jti,
            _ => return Err(SetError::InvalidRequest("the SET has no usable jti")),
        };
        let events = match claims.remove("events") {
            Some(Value::Object(events)) if !events.is_empty() && events.len() <= MAX_EVENTS => {
                events
            }
            _ => {
                return Err(SetError::InvalidRequest(
                    "the SET has no usable events claim",
                ));
            }
        };
        if events.values().any(|payload| !payload.is_object()) {
            return Err(SetError::InvalidRequest(
                "each event's payload is a JSON object",
            ));
        }
        // Remembered as long as a SET with this iat could be accepted, and then some.
        let forget_at =
            u64::try_from(iat.saturating_add(max_age).saturating_add(leeway)).unwrap_or(0);
        let now_seconds = u64::try_from(now).unwrap_or(0);
        self.replay
            .record(&self.issuer, &jti, forget_at, now_seconds)
            .map_err(|error| match error {
                RecordError::Replayed => {
                    SetError::InvalidRequest("a SET with this jti was already received")
                }
                RecordError::Full => SetError::Unavailable(crate::Unavailable::new(
                    UnavailableCause::Other,
                    "the SET replay store is full",
                )),
            })?;
        Ok(VerifiedSet {
            jti,
            sub_id: claims.remove("sub_id"),
            events,
        })
    }
}

/// RFC 8417 §2.3: `typ` is `secevent+jwt`, or the full media type; media types compare without
/// regard to case.
fn is_secevent_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ
            .get(..12)
            .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
            .map_or(typ, |_| &typ[12..]);
        typ.eq_ignore_ascii_case("secevent+jwt")
    })
}

/// `aud` is this receiver, or an array that contains it. Compared exactly.
fn names_audience(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        _ => false,
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_the_secevent_media_type() {
        assert!(is_secevent_typ(Some("secevent+jwt")));
        assert!(is_secevent_typ(Some("application/SecEvent+JWT")));
        assert!(!is_secevent_typ(Some("JWT")));
        assert!(!is_secevent_typ(Some("at+jwt")));
        assert!(!is_secevent_typ(Some("application/secevent+jwt; x")));
        assert!(!is_secevent_typ(None));
    }

    #[test]
    fn audience_is_compared_exactly() {
        let aud = |v: Value| names_audience(Some(&v), "rs-1");
        assert!(aud(Value::from("rs-1")));
        assert!(aud(serde_json::json!(["x", "rs-1"])));
        assert!(!aud(Value::from("RS-1")));
        assert!(!aud(Value::from("rs-1 ")));
        assert!(!aud(serde_json::json!([["rs-1"]])));
        assert!(!names_audience(None, "rs-1"));
    }
}
