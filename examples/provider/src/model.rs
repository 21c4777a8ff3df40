//! The records the authorization server keeps.
//!
//! Every secret-bearing value (client secret, authorization code, access and refresh token,
//! interaction id and CSRF token) is stored only as a hash (see [`crate::tokens::hash_secret`]),
//! so a leaked database yields nothing that can be presented to any endpoint.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch. All lifetimes and expiries are whole seconds.
pub type UnixTime = i64;

/// How a client authenticates at the token, introspection and revocation endpoints (RFC 7591 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Public client: identified by `client_id` only, must use PKCE.
    None,
    /// Confidential client: HTTP Basic with `client_id:client_secret`.
    ClientSecretBasic,
    /// Confidential client: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl AuthMethod {
    /// The RFC 7591 name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }

    /// Parses an RFC 7591 method name; unknown names are `None` (the caller refuses them).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(AuthMethod::None),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            _ => None,
        }
    }
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client identifier (random for dynamically registered clients).
    pub client_id: String,
    /// Hash of the client secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// Human-readable name shown on the login and consent pages.
    pub client_name: Option<String>,
    /// Registered redirect URIs, matched exactly (loopback ports excepted).
    pub redirect_uris: Vec<String>,
    /// Grant types the client may use (`authorization_code`, `refresh_token`, `client_credentials`).
    pub grant_types: Vec<String>,
    /// Space-separated scopes the client may request; also the default when none is requested.
    pub scope: String,
    /// How the client authenticates.
    pub auth_method: AuthMethod,
    /// When the client was registered.
    pub issued_at: UnixTime,
    /// True for clients configured as resource servers: they may introspect any token. Every
    /// other client only learns about its own tokens (RFC 7662 §4). Never set by registration.
    pub resource_server: bool,
    /// The RFC 8707 resources the client may obtain tokens for, a subset of the server's known
    /// resources; empty means every known resource. Never set by registration.
    pub resources: Vec<String>,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: the client always sends a DPoP proof to the
    /// token endpoint, which refuses its token requests without one.
    pub dpop_bound_access_tokens: bool,
}

impl Client {
    /// True for confidential clients (those holding a secret).
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    /// True when the client registered the given grant type.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Which step an interactive authorization is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InteractionStage {
    /// The login form was shown; waiting for username and password.
    Login,
    /// The user authenticated; waiting for approve/deny.
    Consent,
}

impl InteractionStage {
    /// Storage name of the stage.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionStage::Login => "login",
            InteractionStage::Consent => "consent",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(InteractionStage::Login),
            "consent" => Some(InteractionStage::Consent),
            _ => None,
        }
    }
}

/// A validated authorization request waiting for the user (login, then consent).
///
/// Created by `GET /authorize` after every parameter was checked, so the later steps never
/// re-validate anything the browser could change: the browser only carries the random `id`
/// and the CSRF token. It expires, and it is deleted atomically when the user decides
/// (single use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// Hash of the random interaction id carried by the forms.
    pub id_hash: String,
    /// Hash of the browser-binding cookie that was set when the request was created.
    pub browser_hash: String,
    /// Hash of the current CSRF token (rotated when the stage changes).
    pub csrf_hash: String,
    /// The requesting client.
    pub client_id: String,
    /// The redirect URI exactly as sent by the client (already validated).
    pub redirect_uri: String,
    /// Requested scope after defaulting (space separated).
    pub scope: String,
    /// The client's `state`, echoed back.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// RFC 8707 resource indicator, if any.
    pub resource: Option<String>,
    /// Current step.
    pub stage: InteractionStage,
    /// The authenticated user (set at the consent stage).
    pub subject: Option<String>,
    /// Scope that will be granted: requested ∩ the user's scopes (set at the consent stage).
    pub granted_scope: Option<String>,
    /// RFC 9449 §10 `dpop_jkt`: the thumbprint of the key the code must be redeemed with.
    pub dpop_jkt: Option<String>,
    /// Expiry.
    pub expires_at: UnixTime,
}

/// An issued authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// Hash of the code.
    pub code_hash: String,
    /// Client the code was issued to.
    pub client_id: String,
    /// Redirect URI used at the authorization endpoint; must be repeated at the token endpoint.
    pub redirect_uri: String,
    /// The user who approved.
    pub subject: String,
    /// Granted scope.
    pub scope: String,
    /// RFC 8707 resource the grant is bound to.
    pub resource: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// Grant family of every token issued from this code (revoked together on replay).
    pub family_id: String,
    /// Issue time.
    pub issued_at: UnixTime,
    /// Expiry.
    pub expires_at: UnixTime,
    /// True once redeemed.
    pub consumed: bool,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code must be redeemed with (the
    /// authorization request's `dpop_jkt`).
    pub dpop_jkt: Option<String>,
}

/// Access or refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Bearer access token.
    Access,
    /// Refresh token.
    Refresh,
}

impl TokenKind {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(TokenKind::Access),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// An issued access or refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hash of the token.
    pub token_hash: String,
    /// Access or refresh.
    pub kind: TokenKind,
    /// Grant family: every token descending from one authorization (or one client-credentials
    /// request). Revocation and replay detection act on the whole family.
    pub family_id: String,
    /// Client the token was issued to.
    pub client_id: String,
    /// The user, or `None` for client-credentials tokens.
    pub subject: Option<String>,
    /// Granted scope (space separated).
    pub scope: String,
    /// RFC 8707 resource (emitted as `aud`).
    pub resource: Option<String>,
    /// Random token identifier (`jti`), safe to log.
    pub jti: String,
    /// Issue time.
    pub issued_at: UnixTime,
    /// Expiry.
    pub expires_at: UnixTime,
    /// For refresh tokens: true once rotated (used). A second use revokes the family.
    pub consumed: bool,
    /// RFC 9449: the RFC 7638 thumbprint of the DPoP key the token is bound to. An access
    /// token's `cnf.jkt`; a refresh token bound to it (public clients only) is refreshed only
    /// with a proof signed by that key.
    pub dpop_jkt: Option<String>,
}

/// Row counts, including rows that are expired but not yet purged (used by tests and
/// operators to see what the cleanup task removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Registered clients.
    pub clients: u64,
    /// Anonymously registered clients not used yet (a subset of `clients`).
    pub unused_clients: u64,
    /// Pending interactive authorizations.
    pub pending: u64,
    /// Authorization codes (consumed or not).
    pub codes: u64,
    /// Access and refresh tokens (rotated refresh tokens included).
    pub tokens: u64,
    /// Revoked-family markers.
    pub revoked_families: u64,
}

/// The public half of a signing key: what `/jwks` publishes and what a resource server verifies
/// access tokens with. It holds no private material, so it may be logged and served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    /// Key id (`kid`): the RFC 7638 SHA-256 thumbprint of the public key, so it names the key
    /// itself and two keys cannot share one.
    pub kid: String,
    /// JWS algorithm (`ES256`).
    pub algorithm: String,
    /// The P-256 point's x coordinate, base64url.
    pub x: String,
    /// The P-256 point's y coordinate, base64url.
    pub y: String,
    /// When the key was made.
    pub created_at: UnixTime,
    /// `None` while the key signs new tokens. Set when a rotation replaced it: the time its last
    /// token expires (the rotation time plus the access-token lifetime), after which it is no
    /// longer published and may be purged.
    pub retire_at: Option<UnixTime>,
}

/// A private key in PKCS#8 PEM form. Its `Debug` output never shows it, and its memory is wiped
/// when it is dropped, so logging a [`SigningKey`] cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(zeroize::Zeroizing<String>);

impl PrivateKey {
    /// Wraps a PKCS#8 PEM document.
    pub fn new(pem: String) -> Self {
        Self(zeroize::Zeroizing::new(pem))
    }

    /// The PEM document itself (for the signer and the storage backend only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A key the server signs JWT access tokens with (RFC 9068), as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// The public half (published in `/jwks`).
    pub public: VerificationKey,
    /// The private half (never logged, never served).
    pub private: PrivateKey,
}

/// How an SSF stream delivers its events. Its `Debug` output never shows the push
/// `authorization_header`.
#[derive(Clone, PartialEq, Eq)]
pub enum Delivery {
    /// RFC 8935 push: the transmitter POSTs each SET to the receiver's endpoint.
    Push {
        /// The receiver's endpoint (https, or http to a loopback host when allowed).
        endpoint_url: String,
        /// The `Authorization` header value sent with every push, if the receiver gave one.
        /// Stored as given (it must be sent back), never logged and never returned.
        authorization_header: Option<String>,
    },
    /// RFC 8936 poll: the receiver fetches SETs from the stream's poll endpoint.
    Poll,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Push {
                endpoint_url,
                authorization_header,
            } => f
                .debug_struct("Push")
                .field("endpoint_url", endpoint_url)
                .field(
                    "authorization_header",
                    &authorization_header.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
            Delivery::Poll => f.write_str("Poll"),
        }
    }
}

impl Delivery {
    /// The stored method name.
    pub fn method_name(&self) -> &'static str {
        match self {
            Delivery::Push { .. } => "push",
            Delivery::Poll => "poll",
        }
    }
}

/// An SSF stream's status (SSF 1.0 §8.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    /// Events are queued and delivered.
    Enabled,
    /// Events are queued but not delivered until the stream is enabled again.
    Paused,
    /// Nothing is queued (and what was queued is dropped).
    Disabled,
}

impl StreamStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Enabled => "enabled",
            StreamStatus::Paused => "paused",
            StreamStatus::Disabled => "disabled",
        }
    }

    /// Parses a wire or storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enabled" => Some(StreamStatus::Enabled),
            "paused" => Some(StreamStatus::Paused),
            "disabled" => Some(StreamStatus::Disabled),
            _ => None,
        }
    }
}

/// An SSF event stream (SSF 1.0 §8) owned by one client, the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Random identifier.
    pub stream_id: String,
    /// The owning client; also the `aud` of every SET of the stream.
    pub client_id: String,
    /// Push or poll.
    pub delivery: Delivery,
    /// Event types the receiver asked for.
    pub events_requested: Vec<String>,
    /// Event types delivered: requested ∩ supported.
    pub events_delivered: Vec<String>,
    /// Free text from the receiver.
    pub description: Option<String>,
    /// Enabled, paused or disabled.
    pub status: StreamStatus,
    /// Creation time.
    pub created_at: UnixTime,
}

/// One security event before it is fanned out to streams: the claims of its SET except `aud`
/// and `jti`, which are the stream's and the outbox row's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsfEvent {
    /// The event type URI (the one key of `events`).
    pub event_type: String,
    /// `iss`, `iat`, `sub_id` and `events`.
    pub claims: serde_json::Value,
}

/// What to tell SSF receivers about a state change. The storage backend writes it to the outbox
/// in the same transaction as the change.
#[derive(Clone, Debug)]
pub struct Announcement<'a> {
    /// Events to fan out to every enabled or paused stream that delivers their type.
    pub events: &'a [SsfEvent],
    /// When set, also one `token-revoked` event (issued by this issuer) per unexpired access
    /// token of the revoked families, read inside the transaction.
    pub token_revoked_by: Option<&'a str>,
    /// The events' `iat` and `event_timestamp`.
    pub now: UnixTime,
    /// The outbox clock (Unix milliseconds): rows are due from this moment.
    pub now_ms: i64,
    /// Pending rows a stream may hold; events beyond it are dropped and counted.
    pub max_pending_per_stream: u64,
}

impl Announcement<'_> {
    /// Announces nothing.
    pub const NOTHING: Announcement<'static> = Announcement {
        events: &[],
        token_revoked_by: None,
        now: 0,
        now_ms: 0,
        max_pending_per_stream: 0,
    };

    /// True when nothing can be written.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.token_revoked_by.is_none()
    }
}

/// What writing an [`Announcement`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Outbox rows written.
    pub queued: u64,
    /// Rows not written because their stream held its maximum of pending rows.
    pub dropped: u64,
}

/// An event queued for one stream (an outbox row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Row id (insertion order).
    pub id: i64,
    /// The stream it goes to.
    pub stream_id: String,
    /// The SET's `jti` (stable across retries: receivers deduplicate by it).
    pub jti: String,
    /// The event type URI.
    pub event_type: String,
    /// The SET claims except `aud` and `jti` (JSON).
    pub claims: serde_json::Value,
    /// Delivery attempts started so far (this one included, for a claimed row).
    pub attempts: i64,
    /// When it was queued (Unix milliseconds).
    pub created_at_ms: i64,
}

/// Runtime state of a user of the users file, kept in storage and applied over the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserOverride {
    /// The user.
    pub username: String,
    /// Argon2 PHC string replacing the file's password hash, if the password was changed.
    pub password_hash: Option<String>,
    /// A disabled user cannot log in, refresh, or redeem codes, and has no active tokens.
    pub disabled: bool,
}

/// A runtime change of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserChange {
    /// A new password (its argon2 PHC string).
    Password(String),
    /// Disable the account.
    Disable,
    /// Enable the account again.
    Enable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_push_authorization_header() {
        let delivery = Delivery::Push {
            endpoint_url: "https://receiver.example/ssf".to_owned(),
            authorization_header: Some("Bearer s3cr3t".to_owned()),
        };
        let printed = format!("{delivery:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("<redacted>") && printed.contains("receiver.example"));
    }
}
