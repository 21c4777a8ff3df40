//! The security events the provider emits, as SET claims (RFC 8417) with RFC 9493 subject
//! identifiers: one event per SET.

use serde_json::{Value, json};

use crate::model::{SsfEvent, UnixTime};

/// The event types sent: token-revoked (OAuth), session-revoked and credential-change (CAEP:
/// here a refresh-token family, and the password), account-disabled (RISC), and stream
/// verification (SSF). The URIs are the receiver's, so both sides name events alike.
pub use tower_introspect::ssf::event::{
    ACCOUNT_DISABLED, CREDENTIAL_CHANGE, SESSION_REVOKED, TOKEN_REVOKED, VERIFICATION,
};

/// The event types a stream may request (`events_supported`). Verification events are not
/// listed: they are always delivered to the stream they verify.
pub const SUPPORTED: [&str; 4] = [
    TOKEN_REVOKED,
    SESSION_REVOKED,
    CREDENTIAL_CHANGE,
    ACCOUNT_DISABLED,
];

fn event(issuer: &str, now: UnixTime, sub_id: Value, event_type: &str, payload: Value) -> SsfEvent {
    SsfEvent {
        event_type: event_type.to_owned(),
        claims: json!({
            "iss": issuer,
            "iat": now,
            "sub_id": sub_id,
            "events": { event_type: payload },
        }),
    }
}

fn iss_sub(issuer: &str, username: &str) -> Value {
    json!({ "format": "iss_sub", "iss": issuer, "sub": username })
}

/// An access token (named by its `jti`) was revoked.
pub fn token_revoked(issuer: &str, jti: &str, now: UnixTime) -> SsfEvent {
    event(
        issuer,
        now,
        json!({ "format": "jwt_id", "iss": issuer, "jti": jti }),
        TOKEN_REVOKED,
        json!({ "event_timestamp": now }),
    )
}

/// A refresh-token family (`sid` of its tokens) was revoked because a rotated refresh token
/// was presented again.
pub fn session_revoked(issuer: &str, username: &str, family_id: &str, now: UnixTime) -> SsfEvent {
    event(
        issuer,
        now,
        json!({
            "format": "complex",
            "user": iss_sub(issuer, username),
            "session": { "format": "opaque", "id": family_id },
        }),
        SESSION_REVOKED,
        json!({
            "event_timestamp": now,
            "initiating_entity": "policy",
            "reason_admin": { "en": "refresh token reuse" },
        }),
    )
}

/// A user's password was changed.
pub fn credential_change(issuer: &str, username: &str, now: UnixTime) -> SsfEvent {
    event(
        issuer,
        now,
        iss_sub(issuer, username),
        CREDENTIAL_CHANGE,
        json!({
            "credential_type": "password",
            "change_type": "update",
            "event_timestamp": now,
        }),
    )
}

/// A user was disabled.
pub fn account_disabled(issuer: &str, username: &str, now: UnixTime) -> SsfEvent {
    event(
        issuer,
        now,
        iss_sub(issuer, username),
        ACCOUNT_DISABLED,
        json!({ "event_timestamp": now }),
    )
}

/// A stream verification requested by its receiver, echoing its `state` when it sent one.
pub fn verification(issuer: &str, stream_id: &str, state: Option<&str>, now: UnixTime) -> SsfEvent {
    let payload = match state {
        Some(state) => json!({ "state": state }),
        None => json!({}),
    };
    event(
        issuer,
        now,
        json!({ "format": "opaque", "id": stream_id }),
        VERIFICATION,
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_has_one_type_and_the_contract_subject() {
        let e = token_revoked("https://as", "j1", 5);
        assert_eq!(
            e.claims,
            json!({"iss":"https://as","iat":5,"sub_id":{"format":"jwt_id","iss":"https://as","jti":"j1"},
                   "events":{TOKEN_REVOKED:{"event_timestamp":5}}})
        );
        let e = session_revoked("https://as", "alice", "fam", 7);
        assert_eq!(
            e.claims["sub_id"]["session"],
            json!({"format":"opaque","id":"fam"})
        );
        assert_eq!(
            e.claims["events"][SESSION_REVOKED]["reason_admin"],
            json!({"en":"refresh token reuse"})
        );
        let e = verification("https://as", "s1", None, 1);
        assert_eq!(e.claims["events"][VERIFICATION], json!({}));
        let e = verification("https://as", "s1", Some("xyz"), 1);
        assert_eq!(e.claims["events"][VERIFICATION], json!({"state":"xyz"}));
    }
}
