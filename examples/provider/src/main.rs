//! `oauth-provider`: the reference authorization server binary.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use oauth_provider::cimd::CimdSettings;
use oauth_provider::limits::{Limits, WindowLimit};
use oauth_provider::model::UserChange;
use oauth_provider::{
    AccessTokenFormat, Config, DatabaseUrl, Lifetimes, NonceSecret, PostgresSettings, Server,
    StorageConfig,
};

/// Reference OAuth 2.1 authorization server (PKCE, refresh rotation, introspection, revocation,
/// dynamic registration) with memory, SQLite or PostgreSQL storage.
#[derive(Parser, Debug)]
#[command(name = "oauth-provider", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "OAUTH_BIND", default_value = "127.0.0.1:9000")]
    bind: SocketAddr,

    /// Issuer identifier; default `http://<bound address>`.
    #[arg(long, env = "OAUTH_ISSUER")]
    issuer: Option<String>,

    /// Storage backend.
    #[arg(long = "storage", env = "OAUTH_STORAGE_BACKEND", value_enum, default_value_t = Backend::Sqlite)]
    storage: Backend,

    /// SQLite database file (`:memory:` for a private in-memory database).
    #[arg(long, env = "OAUTH_SQLITE_PATH", default_value = "./data/oauth.db")]
    sqlite_path: PathBuf,

    /// PostgreSQL URL for `--storage postgres`:
    /// postgres://user:password@host:port/database (add `?sslmode=verify-full` for TLS).
    #[arg(long, env = "OAUTH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<DatabaseUrl>,

    /// PostgreSQL connections this instance keeps at most.
    #[arg(long, env = "OAUTH_DATABASE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), default_value_t = 10)]
    database_max_connections: u32,

    /// Seconds a request waits for a PostgreSQL connection before a 503 (1 to 60).
    #[arg(long, env = "OAUTH_DATABASE_ACQUIRE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=60), default_value_t = 5)]
    database_acquire_timeout: u64,

    /// Seconds one PostgreSQL statement may run (lock waits included) before it is cancelled.
    #[arg(long, env = "OAUTH_DATABASE_STATEMENT_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 5)]
    database_statement_timeout: u64,

    /// Users file (TOML, or JSON when it ends in .json).
    #[arg(long, env = "OAUTH_USERS_FILE")]
    users_file: Option<PathBuf>,

    /// Clients file (TOML, or JSON when it ends in .json): resource servers and other configured
    /// clients.
    #[arg(long, env = "OAUTH_CLIENTS_FILE")]
    clients_file: Option<PathBuf>,

    /// Seed the demo accounts and demo clients (never use in production).
    #[arg(long, env = "OAUTH_DEMO", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    demo: bool,

    /// Space-separated supported scopes (`ssf` authorizes SSF stream management and polling,
    /// `admin` the user administration endpoints).
    #[arg(long, env = "OAUTH_SCOPES", default_value = "read write admin ssf")]
    scopes: String,

    /// Authorization code lifetime in seconds.
    #[arg(long, env = "OAUTH_CODE_TTL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 600)]
    code_ttl: u64,

    /// Access token lifetime in seconds.
    #[arg(long, env = "OAUTH_ACCESS_TOKEN_TTL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 3600)]
    access_token_ttl: u64,

    /// Access token format: `opaque` (introspection only) or `jwt` (RFC 9068, ES256, keys at
    /// /jwks; still introspectable). Refresh tokens stay opaque.
    #[arg(long, env = "OAUTH_ACCESS_TOKEN_FORMAT", value_enum, default_value_t = TokenFormat::Opaque)]
    access_token_format: TokenFormat,

    /// Refresh token lifetime in seconds.
    #[arg(long, env = "OAUTH_REFRESH_TOKEN_TTL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 2_592_000)]
    refresh_token_ttl: u64,

    /// Time allowed for login and consent, in seconds.
    #[arg(long, env = "OAUTH_INTERACTION_TTL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 600)]
    interaction_ttl: u64,

    /// A resource (RFC 8707) tokens may be issued for; repeatable. The environment variable takes
    /// a comma-separated list. `--demo` adds http://127.0.0.1:8080/mcp.
    #[arg(long = "resource", env = "OAUTH_RESOURCES", value_delimiter = ',')]
    resources: Vec<String>,

    /// Space-separated scopes a registered client may obtain on its own authority
    /// (client_credentials); default: the supported scopes except admin (never registrable)
    /// and ssf (list it here to let registered clients manage SSF streams).
    #[arg(long, env = "OAUTH_REGISTRABLE_SCOPES")]
    registrable_scopes: Option<String>,

    /// Initial access token (RFC 7591 §3) required to register client_credentials clients
    /// (at least 16 characters); without it only configured clients may use that grant.
    #[arg(long, env = "OAUTH_REGISTRATION_TOKEN", hide_env_values = true)]
    registration_token: Option<String>,

    /// What a scope allows, in words, for the consent page: `scope=text`; repeatable. The
    /// environment variable takes a `;`-separated list.
    #[arg(long = "scope-description", env = "OAUTH_SCOPE_DESCRIPTIONS", value_delimiter = ';', value_parser = parse_scope_description)]
    scope_descriptions: Vec<(String, String)>,

    /// Secret DPoP server nonces are derived from (RFC 9449 §8), as hex or base64url: at least
    /// 32 random bytes, the same on every instance. With it the token endpoint requires proofs
    /// to carry a current nonce (refused with use_dpop_nonce and a DPoP-Nonce header otherwise);
    /// without it no nonce is required.
    #[arg(long, env = "OAUTH_DPOP_NONCE_SECRET", hide_env_values = true, value_parser = NonceSecret::parse)]
    dpop_nonce_secret: Option<NonceSecret>,

    /// Interval of the expired-row cleanup, in seconds.
    #[arg(long, env = "OAUTH_CLEANUP_INTERVAL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60)]
    cleanup_interval: u64,

    /// Seconds after a rotation during which the previous refresh token may be retried once its
    /// successor is unused (lost responses); 0 disables.
    #[arg(long, env = "OAUTH_REFRESH_REUSE_GRACE", default_value_t = 10)]
    refresh_reuse_grace: u64,

    /// Password verifications (argon2, ~19 MiB each) run at once; default: the number of cores.
    #[arg(long, env = "OAUTH_PASSWORD_HASHES_IN_FLIGHT", value_parser = clap::value_parser!(u64).range(1..))]
    password_hashes_in_flight: Option<u64>,

    /// Seconds a login waits for a hashing slot before a 503.
    #[arg(long, env = "OAUTH_PASSWORD_HASH_WAIT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 5)]
    password_hash_wait: u64,

    /// Failed logins per (account, address) pair within the window before that address is
    /// banned for that account; 0 disables.
    #[arg(long, env = "OAUTH_LOGIN_MAX_FAILURES_PER_PAIR", default_value_t = 10)]
    login_max_failures_per_pair: u32,

    /// Failed logins per account, all addresses together, within the window before the account
    /// is slowed (never locked) for the ban time; 0 disables.
    #[arg(
        long,
        env = "OAUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 100
    )]
    login_max_failures_per_account: u32,

    /// Seconds between two admitted attempts on a slowed account; 0 disables the slowing.
    #[arg(long, env = "OAUTH_LOGIN_ACCOUNT_COOLDOWN", default_value_t = 5)]
    login_account_cooldown: u64,

    /// Failed logins per client address within the window before a ban; 0 disables.
    #[arg(
        long,
        env = "OAUTH_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 30
    )]
    login_max_failures_per_address: u32,

    /// Window over which failed logins are counted, in seconds.
    #[arg(long, env = "OAUTH_LOGIN_FAILURE_WINDOW", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 900)]
    login_failure_window: u64,

    /// How long a banned pair or address is refused (and a slowed account slowed), in seconds.
    #[arg(long, env = "OAUTH_LOGIN_BAN", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 900)]
    login_ban: u64,

    /// Open registrations per client address per hour; 0 disables.
    #[arg(long, env = "OAUTH_REGISTRATIONS_PER_ADDRESS", default_value_t = 30)]
    registrations_per_address: u32,

    /// Most anonymously registered clients not used yet, server-wide.
    #[arg(long, env = "OAUTH_MAX_UNUSED_CLIENTS", default_value_t = 10_000)]
    max_unused_clients: u64,

    /// Seconds an anonymously registered client may stay unused before it is deleted.
    #[arg(long, env = "OAUTH_UNUSED_CLIENT_TTL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 86_400)]
    unused_client_ttl: u64,

    /// Unfinished sign-ins (pending authorizations) per client address.
    #[arg(long, env = "OAUTH_PENDING_PER_ADDRESS", default_value_t = 100)]
    pending_per_address: u64,

    /// Unfinished sign-ins (pending authorizations) server-wide.
    #[arg(long, env = "OAUTH_MAX_PENDING", default_value_t = 10_000)]
    max_pending: u64,

    /// Development only: fetch client metadata documents from loopback addresses.
    #[arg(long, env = "OAUTH_CIMD_ALLOW_LOOPBACK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    cimd_allow_loopback: bool,

    /// A PEM file of extra root certificates trusted for client metadata documents.
    #[arg(long, env = "OAUTH_CIMD_CA_FILE")]
    cimd_ca_file: Option<PathBuf>,

    /// Seconds one client metadata document fetch may take.
    #[arg(long, env = "OAUTH_CIMD_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=60), default_value_t = 5)]
    cimd_timeout: u64,

    /// Largest client metadata document in bytes.
    #[arg(long, env = "OAUTH_CIMD_MAX_BYTES", value_parser = clap::value_parser!(u64).range(256..=65_536), default_value_t = 5120)]
    cimd_max_bytes: u64,

    /// Shortest time (seconds) a client metadata document is cached (unless it says no-store).
    #[arg(long, env = "OAUTH_CIMD_MIN_TTL", default_value_t = 60)]
    cimd_min_ttl: u64,

    /// Longest time (seconds) a client metadata document is cached, whatever it says.
    #[arg(long, env = "OAUTH_CIMD_MAX_TTL", default_value_t = 3600)]
    cimd_max_ttl: u64,

    /// Most client metadata documents cached.
    #[arg(long, env = "OAUTH_CIMD_CACHE_ENTRIES", default_value_t = 1000)]
    cimd_cache_entries: usize,

    /// Most client metadata document fetches running at once (503 with Retry-After beyond).
    #[arg(long, env = "OAUTH_CIMD_MAX_FETCHES_IN_FLIGHT", value_parser = clap::value_parser!(u64).range(1..=1024), default_value_t = 16)]
    cimd_max_fetches_in_flight: u64,

    /// Development only: SSF push endpoints may be at a loopback host (127.0.0.0/8, ::1,
    /// localhost), over http:// too; otherwise only https:// to public addresses.
    #[arg(long, env = "OAUTH_SSF_ALLOW_HTTP_LOOPBACK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    ssf_allow_http_loopback: bool,

    /// SSF push endpoints may be at private, link-local or other non-public addresses (receivers
    /// on an internal network); proxies from the environment are then used. Otherwise pushes go
    /// to public addresses only (loopback too with --ssf-allow-http-loopback), checked when the
    /// endpoint's name is resolved, so a stream's owner cannot make this server POST into its
    /// own network.
    #[arg(long, env = "OAUTH_SSF_ALLOW_PRIVATE_ENDPOINTS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    ssf_allow_private_endpoints: bool,

    /// SSF streams one client may own.
    #[arg(long, env = "OAUTH_SSF_MAX_STREAMS_PER_CLIENT", value_parser = clap::value_parser!(u64).range(1..=1000), default_value_t = 10)]
    ssf_max_streams_per_client: u64,

    /// Pending SSF events one stream may hold; further events for it are dropped and logged.
    #[arg(long, env = "OAUTH_SSF_MAX_PENDING_PER_STREAM", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 10_000)]
    ssf_max_pending_per_stream: u64,

    /// Milliseconds before the first retry of a failed SSF push (doubled per attempt, with
    /// jitter).
    #[arg(long, env = "OAUTH_SSF_RETRY_INITIAL_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 1000)]
    ssf_retry_initial_ms: u64,

    /// Longest delay between two SSF push attempts, in seconds.
    #[arg(long, env = "OAUTH_SSF_RETRY_MAX", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60)]
    ssf_retry_max: u64,

    /// Seconds after which an undelivered SSF event is given up (marked failed).
    #[arg(long, env = "OAUTH_SSF_MAX_AGE", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 86_400)]
    ssf_max_age: u64,

    /// Milliseconds between two looks of the SSF deliverer for due events (other instances'
    /// events and retries; a local event wakes it at once).
    #[arg(long, env = "OAUTH_SSF_POLL_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(10..=60_000), default_value_t = 500)]
    ssf_poll_interval_ms: u64,

    /// SSF pushes in flight at once in this instance.
    #[arg(long, env = "OAUTH_SSF_PUSH_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..=256), default_value_t = 8)]
    ssf_push_concurrency: u64,

    /// Seconds a claimed SSF event stays reserved for the instance pushing it. An instance killed
    /// mid-push leaves its events to the others (or to itself after a restart) once this runs
    /// out. A push never runs longer than the lease, so no two instances push one event at once.
    #[arg(long, env = "OAUTH_SSF_LEASE", value_parser = clap::value_parser!(u64).range(1..=3600), default_value_t = 30)]
    ssf_lease: u64,

    /// Seconds a stream's owner must wait between two SSF verification requests (each makes this
    /// server push a SET to the stream's endpoint); 0 for no bound. Per instance.
    #[arg(long, env = "OAUTH_SSF_MIN_VERIFICATION_INTERVAL", value_parser = clap::value_parser!(u64).range(0..=3600), default_value_t = 5)]
    ssf_min_verification_interval: u64,

    /// Do not run an SSF push deliverer in this instance (others sharing the database deliver).
    #[arg(long, env = "OAUTH_SSF_NO_DELIVERER", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    ssf_no_deliverer: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a password from stdin (first line) and print its argon2id PHC string for the users file.
    HashPassword,
    /// Read a client secret from stdin (first line, at least 32 characters) and print its
    /// `secret_hash` for the clients file.
    HashClientSecret,
    /// Make a new access-token signing key in the configured storage (SQLite or PostgreSQL;
    /// give the storage flags before the command). Running instances sign with it from their
    /// next token on; the previous key stays in /jwks for one access-token lifetime
    /// (--access-token-ttl), until its last token has expired.
    RotateSigningKey,
    /// Disable a user of the users file in the configured storage (SQLite or PostgreSQL; give
    /// the storage flags, --issuer and --users-file or --demo before the command): no login, no
    /// refresh, every grant revoked, and an SSF account-disabled event queued, which running
    /// instances deliver.
    DisableUser {
        /// The user.
        username: String,
    },
    /// Let a disabled user log in again (no event).
    EnableUser {
        /// The user.
        username: String,
    },
    /// Read a new password from stdin (first line, 8 to 256 characters) for a user of the users
    /// file: every grant revoked and an SSF credential-change event queued.
    SetUserPassword {
        /// The user.
        username: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TokenFormat {
    Opaque,
    Jwt,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

impl Cli {
    fn config(&self) -> Result<Config, String> {
        Ok(Config {
            issuer: self.issuer.clone(),
            storage: self.storage()?,
            lifetimes: Lifetimes {
                authorization_code: Duration::from_secs(self.code_ttl),
                access_token: Duration::from_secs(self.access_token_ttl),
                refresh_token: Duration::from_secs(self.refresh_token_ttl),
                interaction: Duration::from_secs(self.interaction_ttl),
                refresh_reuse_grace: Duration::from_secs(self.refresh_reuse_grace),
            },
            scopes_supported: self.scopes.split_whitespace().map(String::from).collect(),
            users_file: self.users_file.clone(),
            clients_file: self.clients_file.clone(),
            demo: self.demo,
            cleanup_interval: Duration::from_secs(self.cleanup_interval),
            resources: self
                .resources
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
            registrable_scopes: self
                .registrable_scopes
                .as_deref()
                .map(|s| s.split_whitespace().map(String::from).collect()),
            registration_token: self.registration_token.clone().map(Into::into),
            access_token_format: match self.access_token_format {
                TokenFormat::Opaque => AccessTokenFormat::Opaque,
                TokenFormat::Jwt => AccessTokenFormat::Jwt,
            },
            scope_descriptions: self.scope_descriptions.iter().cloned().collect(),
            limits: self.limits(),
            dpop_nonce_secret: self.dpop_nonce_secret.clone(),
            cimd: CimdSettings {
                allow_loopback: self.cimd_allow_loopback,
                ca_file: self.cimd_ca_file.clone(),
                timeout: Duration::from_secs(self.cimd_timeout),
                max_bytes: usize::try_from(self.cimd_max_bytes).unwrap_or(5120),
                min_ttl: Duration::from_secs(self.cimd_min_ttl),
                max_ttl: Duration::from_secs(self.cimd_max_ttl),
                cache_entries: self.cimd_cache_entries,
                max_fetches_in_flight: usize::try_from(self.cimd_max_fetches_in_flight)
                    .unwrap_or(16),
            },
            ssf: oauth_provider::SsfSettings {
                allow_http_loopback: self.ssf_allow_http_loopback,
                allow_private_endpoints: self.ssf_allow_private_endpoints,
                max_streams_per_client: self.ssf_max_streams_per_client,
                max_pending_per_stream: self.ssf_max_pending_per_stream,
                deliver: !self.ssf_no_deliverer,
                retry_initial: Duration::from_millis(self.ssf_retry_initial_ms),
                retry_max: Duration::from_secs(self.ssf_retry_max),
                max_age: Duration::from_secs(self.ssf_max_age),
                poll_interval: Duration::from_millis(self.ssf_poll_interval_ms),
                push_concurrency: usize::try_from(self.ssf_push_concurrency).unwrap_or(8),
                lease: Duration::from_secs(self.ssf_lease),
                min_verification_interval: Duration::from_secs(self.ssf_min_verification_interval),
                ..oauth_provider::SsfSettings::default()
            },
            ..Config::default()
        })
    }

    fn storage(&self) -> Result<StorageConfig, String> {
        Ok(match self.storage {
            Backend::Memory => StorageConfig::Memory,
            Backend::Sqlite => StorageConfig::Sqlite {
                path: self.sqlite_path.clone(),
            },
            Backend::Postgres => {
                let url = self.database_url.clone().ok_or(
                    "--storage postgres needs --database-url (or OAUTH_DATABASE_URL)".to_owned(),
                )?;
                StorageConfig::Postgres(PostgresSettings {
                    max_connections: self.database_max_connections,
                    acquire_timeout: Duration::from_secs(self.database_acquire_timeout),
                    statement_timeout: Duration::from_secs(self.database_statement_timeout),
                    ..PostgresSettings::new(url)
                })
            }
        })
    }

    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        let login = |max| {
            WindowLimit::new(
                max,
                Duration::from_secs(self.login_failure_window),
                Duration::from_secs(self.login_ban),
            )
        };
        let hour = Duration::from_secs(3600);
        Limits {
            password_hashes_in_flight: self
                .password_hashes_in_flight
                .map_or(defaults.password_hashes_in_flight, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            password_hash_wait: Duration::from_secs(self.password_hash_wait),
            login_failures_per_pair: login(self.login_max_failures_per_pair),
            login_failures_per_account: login(self.login_max_failures_per_account),
            login_account_cooldown: Duration::from_secs(self.login_account_cooldown),
            login_failures_per_address: login(self.login_max_failures_per_address),
            registrations_per_address: WindowLimit::new(self.registrations_per_address, hour, hour),
            max_unused_clients: self.max_unused_clients,
            unused_client_ttl: Duration::from_secs(self.unused_client_ttl),
            pending_per_address: self.pending_per_address,
            max_pending: self.max_pending,
            ..defaults
        }
    }
}

/// `scope=text` → (scope, text).
fn parse_scope_description(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((scope, text)) if !scope.trim().is_empty() && !text.trim().is_empty() => {
            Ok((scope.trim().to_owned(), text.trim().to_owned()))
        }
        _ => Err("expected scope=description".to_owned()),
    }
}

/// Client secrets are stored as an unsalted SHA-256, which is safe only for high-entropy secrets.
const MIN_CLIENT_SECRET_LEN: usize = 32;

fn hash_client_secret() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("cannot read the secret from stdin");
        return ExitCode::FAILURE;
    }
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.len() < MIN_CLIENT_SECRET_LEN {
        eprintln!(
            "client secrets must have at least {MIN_CLIENT_SECRET_LEN} characters (use a random one)"
        );
        return ExitCode::FAILURE;
    }
    println!("{}", oauth_provider::tokens::hash_secret(secret));
    ExitCode::SUCCESS
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("cannot read the password from stdin");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("empty password");
        return ExitCode::FAILURE;
    }
    match oauth_provider::users::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hashing failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a new user password from stdin (first line) and hashes it.
fn read_new_password() -> Option<String> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("cannot read the password from stdin");
        return None;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if !oauth_provider::ssf::endpoints::PASSWORD_LENGTH.contains(&password.chars().count()) {
        eprintln!("passwords must have 8 to 256 characters");
        return None;
    }
    match oauth_provider::users::hash_password(password) {
        Ok(phc) => Some(phc),
        Err(e) => {
            eprintln!("hashing failed: {e}");
            None
        }
    }
}

async fn change_user(config: &Config, username: &str, change: UserChange) -> ExitCode {
    match oauth_provider::server::change_user(config, username, &change).await {
        Ok(fanout) => {
            println!(
                "user {username}: {}; {} SSF event(s) queued",
                match change {
                    UserChange::Password(_) => "password changed, grants revoked",
                    UserChange::Disable => "disabled, grants revoked",
                    UserChange::Enable => "enabled",
                },
                fanout.queued
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oauth-provider: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn rotate_signing_key(config: &Config) -> ExitCode {
    match oauth_provider::server::rotate_signing_key(config).await {
        Ok(rotated) => {
            println!("new signing key: {}", rotated.kid);
            if let Some(old) = &rotated.retired_kid {
                println!(
                    "previous key {old} stays published until {} (Unix time)",
                    rotated.retire_at
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oauth-provider: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::HashClientSecret) => return hash_client_secret(),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("oauth-provider: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &cli.command {
        Some(Command::RotateSigningKey) => return rotate_signing_key(&config).await,
        Some(Command::DisableUser { username }) => {
            return change_user(&config, username, UserChange::Disable).await;
        }
        Some(Command::EnableUser { username }) => {
            return change_user(&config, username, UserChange::Enable).await;
        }
        Some(Command::SetUserPassword { username }) => {
            let Some(hash) = read_new_password() else {
                return ExitCode::FAILURE;
            };
            return change_user(&config, username, UserChange::Password(hash)).await;
        }
        _ => {}
    }
    if config.demo {
        tracing::warn!("demo accounts and clients are enabled; never use --demo in production");
    }
    let server = match Server::bind(config, cli.bind).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oauth-provider: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A stable line on stdout so scripts and tests can find the (possibly ephemeral) port.
    println!(
        "oauth-provider listening on http://{} (issuer {})",
        server.addr(),
        server.issuer()
    );
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oauth-provider: {e}");
            ExitCode::FAILURE
        }
    }
}
