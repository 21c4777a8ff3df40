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
