//! The event types the receiver acts on, and what each one does to the verdict caches.

/// CAEP 1.0: the subject's sessions (or one session) were ended.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0: a credential of the subject was created, changed or revoked.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP 1.0: claims of the subject's tokens changed (roles, groups, …).
pub const TOKEN_CLAIMS_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change";
/// RISC 1.0: the account was disabled.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC 1.0: the account was deleted.
pub const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// OAuth event types: one token was revoked (its subject names the token, e.g. `jwt_id`).
pub const TOKEN_REVOKED: &str =
    "https://schemas.openid.net/secevent/oauth/event-type/token-revoked";
/// SSF 1.0: the transmitter checks that the stream works.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// SSF 1.0: the transmitter changed the stream's status.
pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";

/// The event types this receiver understands, and so may request of a transmitter.
pub const SUPPORTED_EVENTS: [&str; 8] = [
    SESSION_REVOKED,
    CREDENTIAL_CHANGE,
    TOKEN_CLAIMS_CHANGE,
    ACCOUNT_DISABLED,
    ACCOUNT_PURGED,
    TOKEN_REVOKED,
    VERIFICATION,
    STREAM_UPDATED,
];

/// What an event type does here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Ends what its subject names: the verdicts are forgotten, and the revocation remembered so
    /// that a token it covers is not accepted again by a local check (a JWT).
    Revoke,
    /// Forgets the verdicts its subject reaches, so that they are checked again (the tokens
    /// themselves stay valid: new claims, a changed credential).
    Refresh,
    /// A stream-management event: acknowledged, nothing to act on.
    Control,
    /// Not an event type this receiver knows: acknowledged and counted, never fatal.
    Unknown,
}

/// An event type, named by a short label fit for metrics (never the URI a transmitter chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventType {
    pub(crate) label: &'static str,
    pub(crate) effect: Effect,
}

impl EventType {
    pub(crate) fn of(uri: &str) -> Self {
        let (label, effect) = match uri {
            SESSION_REVOKED => ("session-revoked", Effect::Revoke),
            CREDENTIAL_CHANGE => ("credential-change", Effect::Refresh),
            TOKEN_CLAIMS_CHANGE => ("token-claims-change", Effect::Refresh),
            ACCOUNT_DISABLED => ("account-disabled", Effect::Revoke),
            ACCOUNT_PURGED => ("account-purged", Effect::Revoke),
            TOKEN_REVOKED => ("token-revoked", Effect::Revoke),
            VERIFICATION => ("verification", Effect::Control),
            STREAM_UPDATED => ("stream-updated", Effect::Control),
            _ => ("unknown", Effect::Unknown),
        };
        Self { label, effect }
    }
}
