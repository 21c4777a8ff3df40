//! Shared state of the HTTP handlers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tower_introspect::dpop::{DEFAULT_NONCE_ROTATION, NonceSource, ProofChecker};
use url::Url;

use crate::cimd::CimdFetcher;
use crate::clock::Clock;
use crate::config::{AccessTokenFormat, Config, Lifetimes};
use crate::limits::{ClientAddr, Limits, LoginThrottle, PasswordGate, WindowCounter};
use crate::model::UnixTime;
use crate::storage::Storage;
use crate::users::UserDirectory;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    users: Arc<UserDirectory>,
    issuer: String,
    lifetimes: Lifetimes,
    scopes_supported: Vec<String>,
    max_body_bytes: usize,
    resources: Vec<String>,
    registrable_scopes: Vec<String>,
    registration_token_hash: Option<String>,
    scope_descriptions: BTreeMap<String, String>,
    limits: Limits,
    password_gate: PasswordGate,
    login_throttle: LoginThrottle,
    registrations: WindowCounter<ClientAddr>,
    cimd: CimdFetcher,
    access_token_format: AccessTokenFormat,
    clock: Clock,
    /// A monotonic instant and the clock's time at the same moment (see [`AppState::instant`]).
    instant_base: (std::time::Instant, UnixTime),
    /// Introspection requests received since start (what resource servers cost this server).
    introspection_requests: std::sync::atomic::AtomicU64,
    /// Checks the token endpoint's DPoP proofs; one per process (its replay store included).
    dpop: ProofChecker,
    /// The token endpoint's URL as the metadata advertises it: what a proof's `htu` must be.
    token_endpoint: Url,
    /// The SSF transmitter's settings.
    ssf: crate::ssf::SsfSettings,
    /// Wakes this instance's deliverer after a local enqueue.
    ssf_wake: Arc<tokio::sync::Notify>,
    /// SSF events dropped because their stream's queue was full.
    ssf_dropped: std::sync::atomic::AtomicU64,
    /// When each stream was last verified (its `min_verification_interval`).
    ssf_verifications: crate::ssf::pacing::VerificationPacing,
}

impl AppState {
    /// Builds the state. `issuer` must already be normalised (no trailing slash); see
    /// [`crate::server::normalise_issuer`].
    pub fn new(
        config: &Config,
        storage: Arc<dyn Storage>,
        users: UserDirectory,
        issuer: String,
        cimd: CimdFetcher,
    ) -> Self {
        let mut dpop = ProofChecker::builder();
        if let Some(secret) = &config.dpop_nonce_secret {
            dpop = dpop.nonces(
                NonceSource::new(secret.expose(), DEFAULT_NONCE_ROTATION)
                    .expect("a NonceSecret has at least 32 bytes and the rotation is not zero"),
            );
        }
        let dpop = dpop
            .build()
            .expect("the default proof checker settings are valid");
        let token_endpoint = Url::parse(&format!("{issuer}/token"))
            .expect("a normalised issuer followed by a path is a URL");
        Self {
            inner: Arc::new(Inner {
                storage,
                users: Arc::new(users),
                issuer,
                lifetimes: config.lifetimes,
                scopes_supported: config.scopes_supported.clone(),
                max_body_bytes: config.max_body_bytes,
                resources: config.known_resources(),
                registrable_scopes: config.effective_registrable_scopes(),
                registration_token_hash: config
                    .registration_token
                    .as_ref()
                    .map(|t| crate::tokens::hash_secret(t.expose())),
                scope_descriptions: config.effective_scope_descriptions(),
                limits: config.limits.clone(),
                password_gate: PasswordGate::new(
                    config.limits.password_hashes_in_flight,
                    config.limits.password_hash_wait,
                ),
                login_throttle: LoginThrottle::new(
                    config.limits.login_failures_per_pair,
                    config.limits.login_failures_per_address,
                    crate::limits::AccountPacing {
                        limit: config.limits.login_failures_per_account,
                        cooldown: config.limits.login_account_cooldown,
                    },
                    config.limits.tracked_keys,
                ),
                instant_base: (std::time::Instant::now(), config.clock.now()),
                registrations: WindowCounter::new(
                    config.limits.registrations_per_address,
                    config.limits.tracked_keys,
                ),
                cimd,
                access_token_format: config.access_token_format,
                clock: config.clock.clone(),
                introspection_requests: std::sync::atomic::AtomicU64::new(0),
                dpop,
                token_endpoint,
                ssf: config.ssf.clone(),
                ssf_wake: Arc::new(tokio::sync::Notify::new()),
                ssf_dropped: std::sync::atomic::AtomicU64::new(0),
                ssf_verifications: crate::ssf::pacing::VerificationPacing::new(
                    config.ssf.min_verification_interval,
                ),
            }),
        }
    }

    /// How many introspection requests this server has received since it started.
    pub fn introspection_requests(&self) -> u64 {
        self.inner
            .introspection_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts an introspection request.
    pub(crate) fn count_introspection_request(&self) {
        self.inner
            .introspection_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The token endpoint's DPoP proof checker.
    pub fn dpop(&self) -> &ProofChecker {
        &self.inner.dpop
    }

    /// The token endpoint's URL (the metadata's `token_endpoint`).
    pub fn token_endpoint(&self) -> &Url {
        &self.inner.token_endpoint
    }

    /// The current time as a [`SystemTime`], from the configured [`Clock`] (whole seconds).
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(self.now()).unwrap_or(0))
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// The user directory.
    pub fn users(&self) -> &UserDirectory {
        &self.inner.users
    }

    /// A shared handle to the user directory (for password checks on the blocking pool).
    pub fn users_shared(&self) -> Arc<UserDirectory> {
        self.inner.users.clone()
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// An absolute URL of an endpoint of this server.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.inner.issuer)
    }

    /// Credential lifetimes.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.inner.lifetimes
    }

    /// `scopes_supported`.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.scopes_supported
    }

    /// The RFC 8707 resources tokens may be issued for.
    pub fn resources(&self) -> &[String] {
        &self.inner.resources
    }

    /// Scopes a registered client may obtain on its own authority (`client_credentials`).
    pub fn registrable_scopes(&self) -> &[String] {
        &self.inner.registrable_scopes
    }

    /// True when `presented` is the configured initial access token (compared as hashes, in
    /// constant time); always false when none is configured.
    pub fn is_registration_token(&self, presented: &str) -> bool {
        self.inner
            .registration_token_hash
            .as_deref()
            .is_some_and(|hash| crate::tokens::verify_secret(presented, hash))
    }

    /// True when an initial access token is configured.
    pub fn has_registration_token(&self) -> bool {
        self.inner.registration_token_hash.is_some()
    }

    /// What `scope` allows, in words, if configured.
    pub fn scope_description(&self, scope: &str) -> Option<&str> {
        self.inner.scope_descriptions.get(scope).map(String::as_str)
    }

    /// Request body limit.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// The configured abuse bounds.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The gate every password verification passes through.
    pub fn password_gate(&self) -> &PasswordGate {
        &self.inner.password_gate
    }

    /// Failed-login counters.
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.inner.login_throttle
    }

    /// Open registrations per client address.
    pub fn registrations(&self) -> &WindowCounter<ClientAddr> {
        &self.inner.registrations
    }

    /// The client metadata document fetcher.
    pub fn cimd(&self) -> &CimdFetcher {
        &self.inner.cimd
    }

    /// What access tokens look like.
    pub fn access_token_format(&self) -> AccessTokenFormat {
        self.inner.access_token_format
    }

    /// The current time in Unix seconds, from the configured [`Clock`].
    pub fn now(&self) -> UnixTime {
        self.inner.clock.now()
    }

    /// The current instant for the in-memory limits: the system's monotonic clock; with a
    /// manual [`Clock`], the instant the server started plus as many seconds as the clock was
    /// advanced (real time does not move it), so tests drive the login limits without sleeping.
    pub fn instant(&self) -> std::time::Instant {
        let (base, at) = self.inner.instant_base;
        if !self.inner.clock.is_manual() {
            return std::time::Instant::now();
        }
        let moved = u64::try_from(self.now().saturating_sub(at)).unwrap_or(0);
        base + std::time::Duration::from_secs(moved)
    }

    /// The configured clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The SSF transmitter's settings.
    pub fn ssf(&self) -> &crate::ssf::SsfSettings {
        &self.inner.ssf
    }

    /// The pacing of verification requests per stream.
    pub fn ssf_verifications(&self) -> &crate::ssf::pacing::VerificationPacing {
        &self.inner.ssf_verifications
    }

    /// What wakes this instance's SSF deliverer.
    pub fn ssf_wake(&self) -> &Arc<tokio::sync::Notify> {
        &self.inner.ssf_wake
    }

    /// SSF events dropped since start because their stream's queue was full.
    pub fn ssf_dropped(&self) -> u64 {
        self.inner
            .ssf_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An announcement of `events` (and, with `token_revoked`, of the revoked access tokens)
    /// at the current time, within this server's bounds.
    pub fn announcement<'a>(
        &'a self,
        events: &'a [crate::model::SsfEvent],
        token_revoked: bool,
    ) -> crate::model::Announcement<'a> {
        crate::model::Announcement {
            events,
            token_revoked_by: token_revoked.then(|| self.issuer()),
            now: self.now(),
            now_ms: crate::ssf::now_ms(),
            max_pending_per_stream: self.inner.ssf.max_pending_per_stream,
        }
    }

    /// After an announcement was committed: wakes the deliverer if rows were queued, and logs
    /// and counts the dropped ones.
    pub fn announced(&self, fanout: crate::model::Fanout) {
        if fanout.queued > 0 {
            self.inner.ssf_wake.notify_one();
        }
        if fanout.dropped > 0 {
            self.inner
                .ssf_dropped
                .fetch_add(fanout.dropped, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                dropped = fanout.dropped,
                "SSF events dropped: a stream's queue of pending events is full"
            );
        }
    }

    /// How long a revoked family is remembered: longer than any token of it can live.
    pub fn revocation_memory(&self, now: UnixTime) -> UnixTime {
        now + secs(self.inner.lifetimes.refresh_token) + secs(self.inner.lifetimes.access_token)
    }
}

/// The current time in Unix seconds.
pub fn now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as UnixTime)
        .unwrap_or(0)
}

/// A lifetime in whole seconds (saturating).
pub fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}
