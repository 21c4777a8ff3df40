//! Server configuration. The binary fills it from CLI flags and `OAUTH_*` environment variables;
//! tests and the demo build it in code, usually from [`Config::demo`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cimd::CimdSettings;
use crate::clock::Clock;
use crate::limits::Limits;

/// What access tokens look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessTokenFormat {
    /// Random strings that mean nothing outside the server: resource servers introspect them
    /// (RFC 7662). The default.
    #[default]
    Opaque,
    /// RFC 9068 JWTs signed with the server's ES256 key (`typ: at+jwt`, published at `/jwks`):
    /// resource servers may verify them locally, and they still introspect like opaque tokens.
    /// Refresh tokens stay opaque.
    Jwt,
}

/// Where the state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// Volatile in-process maps.
    Memory,
    /// A SQLite database file (`:memory:` for a private in-memory database).
    Sqlite {
        /// Database file path; its parent directory is created if missing.
        path: PathBuf,
    },
    /// A PostgreSQL database, which several server instances may share.
    Postgres(PostgresSettings),
}

/// How the PostgreSQL backend connects. Every instance opens its own pool of
/// `max_connections`, so the database must accept instances × `max_connections` connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database[?sslmode=…]`.
    pub url: DatabaseUrl,
    /// Connections one instance keeps at most (default 10). Every request needs one for the
    /// duration of its storage calls; requests beyond it wait up to `acquire_timeout`.
    pub max_connections: u32,
    /// How long a request waits for a free connection (or for a new one to be established)
    /// before it is answered `503 temporarily_unavailable` with `Retry-After` (default 5 s;
    /// keep it short, it is how long a request waits when the database is down).
    pub acquire_timeout: Duration,
    /// Longest a single statement may run, lock waits included, before the database cancels it
    /// (default 5 s). Also bounds how long a transaction may sit idle, so that a stalled
    /// instance cannot hold row or advisory locks that the other instances wait for.
    pub statement_timeout: Duration,
}

impl PostgresSettings {
    /// The defaults for a database at `url`.
    pub fn new(url: impl Into<DatabaseUrl>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// A database URL. It usually carries a password, so its `Debug` and `Display` forms redact the
/// password (and any `password` query parameter): logging a [`Config`] or an error that
/// mentions the URL cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included (for the driver only).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password and password-like query parameters replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        const REDACTED: &str = "<redacted>";
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return "<unparseable database URL>".to_owned();
        };
        if url.password().is_some() {
            // Cannot fail for URLs that already have a password.
            let _ = url.set_password(Some(REDACTED));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let hidden = k.to_ascii_lowercase().contains("password");
                    let v = if hidden {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Credential lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Authorization code lifetime (default 10 minutes, the maximum OAuth 2.1 recommends).
    pub authorization_code: Duration,
    /// Access token lifetime (default 1 hour).
    pub access_token: Duration,
    /// Refresh token lifetime (default 30 days). Each rotation issues a refresh token with a full
    /// lifetime, so an actively used grant stays alive; an idle one expires.
    pub refresh_token: Duration,
    /// How long a user has to log in and consent (default 10 minutes).
    pub interaction: Duration,
    /// How long after a rotation the previous refresh token may still be presented once more,
    /// as long as its successor was never used (default 10 s). This lets a client whose refresh
    /// response was lost retry; the retry gets a fresh pair and the unused successor is
    /// revoked. Any other reuse revokes the whole grant (RFC 9700 §4.14.2). Zero disables it.
    pub refresh_reuse_grace: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            authorization_code: Duration::from_secs(600),
            access_token: Duration::from_secs(3600),
            refresh_token: Duration::from_secs(30 * 24 * 3600),
            interaction: Duration::from_secs(600),
            refresh_reuse_grace: Duration::from_secs(10),
        }
    }
}

/// The demo resource server's client id (seeded by `--demo`; used to call `/introspect`).
pub const DEMO_RESOURCE_SERVER_ID: &str = "mcp-resource-server";
/// The demo resource server's client secret.
pub const DEMO_RESOURCE_SERVER_SECRET: &str = "resource-server-secret";
/// A public demo client (seeded by `--demo`) with loopback redirect URIs
/// `http://127.0.0.1/callback` and `http://localhost/callback` (any port).
pub const DEMO_PUBLIC_CLIENT_ID: &str = "demo-client";

/// The resource `--demo` adds to the known resources: the `mcp_server` example's default URL.
pub const DEMO_RESOURCE: &str = "http://127.0.0.1:8080/mcp";

/// The scope that is never registrable: no client obtains it on its own authority.
pub const PRIVILEGED_SCOPE: &str = "admin";

/// The scope that authorizes SSF stream management and poll delivery.
pub const SSF_SCOPE: &str = "ssf";

/// The demo confidential client that may manage SSF streams (`client_credentials`, scope
/// `ssf`), seeded with `--demo`.
pub const DEMO_SSF_RECEIVER_ID: &str = "ssf-receiver";
/// Its secret.
pub const DEMO_SSF_RECEIVER_SECRET: &str = "ssf-receiver-secret";
/// The demo confidential client that may administer users (`client_credentials`, scope
/// `admin`), seeded with `--demo`.
pub const DEMO_ADMIN_CLIENT_ID: &str = "admin-console";
/// Its secret.
pub const DEMO_ADMIN_CLIENT_SECRET: &str = "admin-console-secret";

/// The consent page's descriptions of the demo scopes (`--demo` uses them unless configured).
pub const DEMO_SCOPE_DESCRIPTIONS: [(&str, &str); 4] = [
    ("read", "Read data and documents"),
    ("write", "Create and modify data"),
    ("admin", "System administration, user management"),
    ("ssf", "Receive security events (Shared Signals streams)"),
];

/// A secret from the configuration; its `Debug` output never shows it, so logging a [`Config`]
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The secret DPoP server nonces are derived from (see [`Config::dpop_nonce_secret`]): at least
/// [`tower_introspect::dpop::MIN_NONCE_SECRET_LENGTH`] bytes. Its `Debug` output never shows
/// it, and its memory is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceSecret(zeroize::Zeroizing<Vec<u8>>);

impl NonceSecret {
    /// The secret from its text form: hex (an even number of hex digits) or base64url (padding
    /// optional). Text that is both is read as hex. At least 32 bytes once decoded.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let text = text.trim();
        let hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if hex {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "the DPoP nonce secret is not valid hex".to_owned())?
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| "the DPoP nonce secret is neither hex nor base64url".to_owned())?
        };
        Self::from_bytes(bytes)
    }

    /// The secret from raw bytes (at least 32).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        let min = tower_introspect::dpop::MIN_NONCE_SECRET_LENGTH;
        if bytes.len() < min {
            return Err(format!(
                "the DPoP nonce secret has {} bytes: at least {min} random bytes are needed",
                bytes.len()
            ));
        }
        Ok(Self(zeroize::Zeroizing::new(bytes)))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSecret(<redacted>)")
    }
}

/// Everything the server needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The issuer identifier (RFC 8414). `None` derives `http://<bound address>`. Must be an
    /// `http`/`https` URL without query or fragment; a trailing slash is removed.
    pub issuer: Option<String>,
    /// Storage backend.
    pub storage: StorageConfig,
    /// Credential lifetimes.
    pub lifetimes: Lifetimes,
    /// Scopes the server knows (`scopes_supported`); default `read write admin`.
    pub scopes_supported: Vec<String>,
    /// A users file to load (see [`crate::users`]).
    pub users_file: Option<PathBuf>,
    /// A clients file to load (see [`crate::clients`]): resource servers and other configured
    /// clients, stored at every start.
    pub clients_file: Option<PathBuf>,
    /// Seed the demo accounts and demo clients. Never enabled implicitly.
    pub demo: bool,
    /// How often expired rows are purged (default 60 s). On PostgreSQL every instance runs the
    /// task and one at a time does the work (the others skip that round).
    pub cleanup_interval: Duration,
    /// Largest accepted request body in bytes (default 16 KiB).
    pub max_body_bytes: usize,
    /// The RFC 8707 resources tokens may be issued for (default none; `demo` adds
    /// [`DEMO_RESOURCE`]). Any other `resource` is `invalid_target`; compared as strings.
    pub resources: Vec<String>,
    /// Scopes a dynamically registered client may obtain on its own authority (the
    /// `client_credentials` grant). `None` (the default) means every supported scope except
    /// [`PRIVILEGED_SCOPE`], which is refused here in any case, and [`SSF_SCOPE`], which
    /// receives security events about every user and so must be listed here to be registrable.
    pub registrable_scopes: Option<Vec<String>>,
    /// The initial access token (RFC 7591 §3) that allows registering `client_credentials`
    /// clients. `None` (the default): only configured clients may use that grant.
    pub registration_token: Option<Secret>,
    /// What each scope allows, in words, for the consent page (default none; `demo` adds
    /// [`DEMO_SCOPE_DESCRIPTIONS`] for scopes not described here).
    pub scope_descriptions: BTreeMap<String, String>,
    /// Bounds on password hashing, login attempts and anonymous writes.
    pub limits: Limits,
    /// How client metadata documents are fetched and kept (see [`crate::cimd`]).
    pub cimd: CimdSettings,
    /// What access tokens look like (default [`AccessTokenFormat::Opaque`]). Whatever it is,
    /// the signing key exists and `/jwks` publishes it, so switching formats needs no other
    /// step and keys of tokens issued before a switch stay findable.
    pub access_token_format: AccessTokenFormat,
    /// Where the current time comes from (default the system clock; tests use
    /// [`Clock::manual`] to move time without sleeping).
    pub clock: Clock,
    /// With a secret, the token endpoint requires DPoP proofs to carry a server nonce (RFC 9449
    /// §8), derived from it and rotated every
    /// [`tower_introspect::dpop::DEFAULT_NONCE_ROTATION`]; instances sharing the secret accept
    /// each other's nonces. `None` (the default): no nonce is required.
    pub dpop_nonce_secret: Option<NonceSecret>,
    /// The SSF transmitter's bounds and timings.
    pub ssf: crate::ssf::SsfSettings,
}

impl Default for Config {
    /// Memory storage, default lifetimes and scopes, no users, issuer derived from the address.
    fn default() -> Self {
        Self {
            issuer: None,
            storage: StorageConfig::Memory,
            lifetimes: Lifetimes::default(),
            scopes_supported: ["read", "write", "admin", SSF_SCOPE]
                .map(String::from)
                .to_vec(),
            users_file: None,
            clients_file: None,
            demo: false,
            cleanup_interval: Duration::from_secs(60),
            max_body_bytes: 16 * 1024,
            resources: Vec::new(),
            registrable_scopes: None,
            registration_token: None,
            scope_descriptions: BTreeMap::new(),
            limits: Limits::default(),
            cimd: CimdSettings::default(),
            access_token_format: AccessTokenFormat::Opaque,
            clock: Clock::system(),
            dpop_nonce_secret: None,
            ssf: crate::ssf::SsfSettings::default(),
        }
    }
}

impl Config {
    /// The default configuration with the demo accounts and clients, in memory.
    pub fn demo() -> Self {
        Self {
            demo: true,
            ..Self::default()
        }
    }

    /// Same configuration with `resource` added to the known resources.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// The known resources: the configured ones, and [`DEMO_RESOURCE`] with `demo`.
    pub fn known_resources(&self) -> Vec<String> {
        let mut resources = self.resources.clone();
        if self.demo && !resources.iter().any(|r| r == DEMO_RESOURCE) {
            resources.push(DEMO_RESOURCE.to_owned());
        }
        resources
    }

    /// The registrable scopes after defaulting (see [`Config::registrable_scopes`]).
    pub fn effective_registrable_scopes(&self) -> Vec<String> {
        match &self.registrable_scopes {
            Some(scopes) => scopes.clone(),
            None => self
                .scopes_supported
                .iter()
                .filter(|s| *s != PRIVILEGED_SCOPE && *s != SSF_SCOPE)
                .cloned()
                .collect(),
        }
    }

    /// The consent page's scope descriptions after defaulting (see
    /// [`Config::scope_descriptions`]).
    pub fn effective_scope_descriptions(&self) -> BTreeMap<String, String> {
        let mut descriptions = self.scope_descriptions.clone();
        if self.demo {
            for (scope, text) in DEMO_SCOPE_DESCRIPTIONS {
                descriptions
                    .entry(scope.to_owned())
                    .or_insert_with(|| text.to_owned());
            }
        }
        descriptions
    }

    /// Same configuration issuing access tokens in `format` (e.g. [`AccessTokenFormat::Jwt`]).
    pub fn with_access_token_format(mut self, format: AccessTokenFormat) -> Self {
        self.access_token_format = format;
        self
    }

    /// Same configuration with another storage backend.
    pub fn with_storage(mut self, storage: StorageConfig) -> Self {
        self.storage = storage;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_registration_token() {
        let config = Config {
            registration_token: Some("initial-access-token-0123456789".into()),
            ..Config::demo()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("initial-access-token"), "{printed}");
        assert!(printed.contains("Secret(<redacted>)"));
    }

    #[test]
    fn nonce_secrets_parse_from_hex_or_base64url_and_must_be_long_enough() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert_eq!(NonceSecret::parse(hex).unwrap().expose().len(), 32);
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // 0..=31
        let secret = NonceSecret::parse(b64).unwrap();
        assert_eq!(secret.expose(), (0u8..32).collect::<Vec<_>>());
        assert!(NonceSecret::parse("00112233").is_err());
        assert!(NonceSecret::parse("not a secret!").is_err());
        let config = Config {
            dpop_nonce_secret: Some(secret),
            ..Config::default()
        };
        assert!(format!("{config:?}").contains("NonceSecret(<redacted>)"));
    }

    #[test]
    fn database_password_never_appears_in_debug_or_display() {
        let url = "postgres://oauth:hunter2-db-pass@db.internal:5432/oauth?sslmode=require&password=hunter3";
        let config =
            Config::default().with_storage(StorageConfig::Postgres(PostgresSettings::new(url)));
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(
            printed.contains("postgres://oauth:%3Credacted%3E@db.internal:5432/oauth?sslmode=require&password=%3Credacted%3E"),
            "{printed}"
        );
        let StorageConfig::Postgres(settings) = &config.storage else {
            unreachable!()
        };
        assert!(!settings.url.to_string().contains("hunter"));
        assert_eq!(settings.url.expose(), url);
        assert_eq!(
            DatabaseUrl::from("not a url :pass@").to_string(),
            "<unparseable database URL>"
        );
    }
}
