//! Revocation pushed by the authorization server: an OpenID Shared Signals Framework 1.0 receiver
//! (feature `ssf`).
//!
//! A verdict cache trades revocation for speed: a token revoked at the authorization server keeps
//! working here until its verdict ends (up to [`CacheConfig::max_ttl`](crate::cache::CacheConfig::max_ttl)),
//! and a JWT access token until it expires. A transmitter that speaks SSF 1.0 closes that window:
//! it sends a signed Security Event Token (RFC 8417) to each receiver as soon as a token, a session
//! or an account is revoked, and the receiver forgets the verdicts the event names, so the next
//! request asks again and is refused. This module is that receiver.
//!
//! - [`SsfReceiver::push_endpoint`] is a tower service to mount (e.g. at `/ssf/events`) for RFC
//!   8935 push delivery: the transmitter POSTs each SET with the stream's `Authorization` header,
//!   and gets `202 Accepted`, or `400` with an RFC 8935 error object (`401` without the stream's
//!   authorization, `503` with `Retry-After` when the SET cannot be checked now).
//! - [`SsfReceiver::poller`] fetches SETs instead (RFC 8936 poll delivery), for servers that
//!   cannot take inbound calls.
//! - [`SsfReceiver::receive`] checks and applies one SET, for other transports.
//!
//! # What is checked
//!
//! The SET's signature with the transmitter's published keys (its JWKS, found through
//! `/.well-known/ssf-configuration` or given), an asymmetric `alg` from the allow-list, `typ:
//! secevent+jwt`, `iss` and `aud` compared exactly, `iat` within [`SsfReceiverBuilder::max_age`],
//! and a `jti` never received before (a bounded replay store, keyed by a hash). Nothing in a SET
//! is acted on before all of it passes, and a refused SET changes nothing.
//!
//! # What each event does
//!
//! | event | effect on every cache given to [`SsfReceiverBuilder::invalidates`] |
//! |---|---|
//! | OAuth `token-revoked` | revokes the token (a `jwt_id` subject: `iss` + `jti`) |
//! | CAEP `session-revoked` | revokes the session's tokens (a `complex` subject with `session`), or the subject's |
//! | RISC `account-disabled`, `account-purged` | revokes the subject's tokens |
//! | CAEP `credential-change`, `token-claims-change` | forgets the subject's verdicts, so they are checked again |
//! | SSF `verification`, `stream-updated` | acknowledged |
//! | anything else | acknowledged and counted as `unknown`, never an error |
//!
//! *Revoking* forgets the cached verdicts the subject names, so the next request asks the
//! authorization server again and is refused, and remembers the revocation for
//! [`remember_revocations`](SsfReceiverBuilder::remember_revocations): a JWT access token, whose
//! signature stays valid after it is revoked, would otherwise be verified and cached again at
//! once. A remembered token revocation refuses that token; a subject or session revocation
//! refuses their tokens issued (`iat`) at or before it, not later logins. *Forgetting* only drops
//! the verdicts: the tokens are checked again and, if still valid, accepted with their new
//! claims.
//!
//! Subjects (RFC 9493): `iss_sub` and `opaque` (read as `sub`) reach the verdicts of that
//! subject, `email` those whose `email` claim matches, `jwt_id` one token, `complex` its `user`
//! and `session` (an opaque session id is matched to the `sid` claim; the user's verdicts that
//! name no session go too, since they may belong to it), and `aliases` each of its identifiers.
//! The cache keeps an index of its verdicts by these identifiers, so an event costs what its
//! verdicts cost, never a walk of the cache. Other formats are acknowledged and counted as
//! `unmatched`.
//!
//! ```
//! use tower_introspect::ssf::SsfReceiver;
//! use tower_introspect::{BearerAuthLayer, Introspector};
//!
//! # fn main() -> Result<(), tower_introspect::ConfigError> {
//! let introspector = Introspector::builder()
//!     .endpoint("https://auth.example.com/introspect")
//!     .client_secret_basic("api-client-id", "api-secret")
//!     .audience("https://api.example.com/mcp")
//!     .build()?;
//! let layer = BearerAuthLayer::introspect(introspector);
//! // The stream was created at the transmitter with this server's push URL and this header;
//! // its `aud` is the audience given here.
//! let receiver = SsfReceiver::builder("https://auth.example.com", "api-client-id")
//!     .push_authorization("Bearer stream-secret")
//!     .invalidates(layer.verifier())
//!     .build()?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/mcp", axum::routing::post(|| async { "ok" }))
//!     .layer(layer)
//!     // Outside the bearer layer: the transmitter authenticates with the stream's header.
//!     .route_service("/ssf/events", receiver.push_endpoint()?);
//! # let _ = app;
//! # Ok(()) }
//! ```

mod error;
pub mod event;
mod poll;
mod push;
mod set;
mod subject;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

pub use self::error::SetError;
use self::event::{Effect, EventType};
pub use self::poll::{
    DEFAULT_POLL_INTERVAL, MAX_POLL_BACKOFF, MIN_POLL_INTERVAL, PollOutcome, Poller, PollerBuilder,
};
pub use self::push::PushEndpoint;
use self::set::SetChecks;
use self::subject::{Subject, Target};
use crate::cache::{CachedVerifier, Identifier, Reach};
use crate::introspection::unix_now;
use crate::jwt::JwsAlgorithm;
use crate::jwt::jwks::{Endpoint, FetchLimits, key_source};
use crate::jwt::keys::{KeySet, parse_jwks};
use crate::jwt::{DEFAULT_MAX_KEYS, DEFAULT_UNKNOWN_KID_REFETCH};
use crate::remote::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, default_client,
};
use crate::{ConfigError, TokenVerifier};

/// Default oldest `iat` accepted, and how long each `jti` is remembered: long enough for a
/// transmitter's retries through a receiver outage of most of an hour.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// Default bound on remembered SET identifiers: with the default hour, 50 events a second.
pub const DEFAULT_SET_REPLAY_CAPACITY: usize = 180_000;
/// Default time a revocation is remembered against locally verified tokens: longer than the
/// access token lifetimes of common issuers (minutes to a few hours).
pub const DEFAULT_REMEMBER_REVOCATIONS: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cap on a pushed body (a SET is typically under 1 KiB).
pub const DEFAULT_MAX_SET_BYTES: usize = 16 * 1024;

/// A Shared Signals receiver for one transmitter and one stream: checks its Security Event
/// Tokens and forgets the cached verdicts they name. See the [module documentation](self).
///
/// Cloning is cheap; clones share the replay store, the keys and the counters.
#[derive(Clone)]
pub struct SsfReceiver {
    inner: Arc<Receiver>,
}

struct Receiver {
    checks: SetChecks,
    targets: Vec<Arc<dyn Revocable>>,
    push_authorization: Option<String>,
    max_body: usize,
    http: HttpSettings,
    counters: Counters,
    remember_revocations: Duration,
}

/// How the receiver reaches the transmitter (keys, polling).
#[derive(Clone, Debug)]
struct HttpSettings {
    client: OnceLock<reqwest::Client>,
    given: Option<reqwest::Client>,
    allow_http: bool,
}

impl HttpSettings {
    fn client(&self) -> Result<reqwest::Client, ConfigError> {
        if let Some(client) = &self.given {
            return Ok(client.clone());
        }
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = default_client(DEFAULT_CONNECT_TIMEOUT)?;
        Ok(self.client.get_or_init(|| client).clone())
    }
}

impl fmt::Debug for SsfReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiver")
            .field("issuer", &self.inner.checks.issuer)
            .field("audience", &self.inner.checks.audience)
            .field("caches", &self.inner.targets.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What the receiver has done, read with [`SsfReceiver::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SsfStats {
    /// SETs that passed every check.
    pub accepted: u64,
    /// SETs refused (forged, replayed, for another audience, malformed, …), each answered with
    /// an error and acting on nothing.
    pub refused: u64,
    /// SETs that could not be checked now (keys unavailable, replay store full).
    pub unavailable: u64,
    /// Events of an accepted SET that revoked something (whether or not a verdict was cached).
    pub revocations: u64,
    /// Events of a type this receiver does not know: acknowledged.
    pub unknown_events: u64,
    /// Revocation events whose subject format is not matched to principals: acknowledged.
    pub unmatched_subjects: u64,
    /// Cached verdicts forgotten because of events, over every cache.
    pub verdicts_forgotten: u64,
    /// Pushes refused before a SET was read (not in `refused`): without the stream's
    /// `Authorization`, not `POST`, another content type, a body too large or not text.
    pub pushes_refused: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    unavailable: AtomicU64,
    revocations: AtomicU64,
    unknown_events: AtomicU64,
    unmatched_subjects: AtomicU64,
    verdicts_forgotten: AtomicU64,
    pushes_refused: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What one accepted SET did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The SET's identifier, to acknowledge it (poll delivery).
    pub jti: String,
    /// Cached verdicts it made every cache forget.
    pub verdicts_forgotten: usize,
}

/// A verdict cache an event can act on.
trait Revocable: Send + Sync {
    /// Forgets the verdicts `target` names; with `remember`, also remembers the revocation that
    /// long against fresh verdicts.
    fn revoke(&self, target: Target<'_>, remember: Option<Duration>) -> usize;
}

impl<V: TokenVerifier> Revocable for CachedVerifier<V> {
    fn revoke(&self, target: Target<'_>, remember: Option<Duration>) -> usize {
        match remember {
            None => self.invalidate_identified(target.identifier, target.only_without_session),
            Some(remember) => {
                let reach = match target.identifier {
                    Identifier::TokenId(..) => Reach::Always,
                    _ => Reach::IssuedBy(unix_now()),
                };
                self.revoke_identified(
                    target.identifier,
                    reach,
                    target.only_without_session,
                    remember,
                )
            }
        }
    }
}

impl SsfReceiver {
    /// Configures a receiver of the SETs that `issuer` (the transmitter's `iss`, exactly) sends to
    /// `audience` (this receiver's `aud` in the stream's configuration, exactly).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> SsfReceiverBuilder {
        SsfReceiverBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_uri: None,
            fixed: None,
            algorithms: JwsAlgorithm::DEFAULT_ALLOWED.to_vec(),
            max_age: DEFAULT_MAX_AGE,
            leeway: crate::claims::DEFAULT_LEEWAY,
            replay_capacity: DEFAULT_SET_REPLAY_CAPACITY,
            targets: Vec::new(),
            push_authorization: None,
            max_body: DEFAULT_MAX_SET_BYTES,
            client: None,
            allow_http: false,
            remember_revocations: DEFAULT_REMEMBER_REVOCATIONS,
        }
    }

    /// Checks `set` (a compact JWS) and, when it passes, forgets the verdicts its events name.
    /// A refused SET acts on nothing.
    pub async fn receive(&self, set: &str) -> Result<Receipt, SetError> {
        let inner = &*self.inner;
        let verified = match inner.checks.verify(set, unix_now()).await {
            Ok(verified) => verified,
            Err(error) => {
                let counter = if error.is_transient() {
                    &inner.counters.unavailable
                } else {
                    &inner.counters.refused
                };
                add(counter, 1);
                crate::metrics::ssf_event("none", error.label());
                tracing::warn!(reason = %error, "security event token refused");
                return Err(error);
            }
        };
        add(&inner.counters.accepted, 1);
        let mut forgotten = 0;
        for (uri, payload) in &verified.events {
            let event = EventType::of(uri);
            let outcome = match event.effect {
                Effect::Control => "acknowledged",
                Effect::Unknown => {
                    add(&inner.counters.unknown_events, 1);
                    "acknowledged"
                }
                Effect::Revoke | Effect::Refresh => {
                    let remember =
                        (event.effect == Effect::Revoke).then_some(inner.remember_revocations);
                    // CAEP drafts put the subject in the event; SSF 1.0 at the top level.
                    let subject = payload.get("subject").or(verified.sub_id.as_ref());
                    match subject.map(Subject::parse) {
                        Some(Ok(subject)) => {
                            add(&inner.counters.revocations, 1);
                            let targets = subject.targets(&inner.checks.issuer);
                            if targets.is_empty() {
                                add(&inner.counters.unmatched_subjects, 1);
                                "unmatched"
                            } else {
                                let n: usize = targets
                                    .iter()
                                    .flat_map(|target| {
                                        inner
                                            .targets
                                            .iter()
                                            .map(|cache| cache.revoke(*target, remember))
                                    })
                                    .sum();
                                forgotten += n;
                                "applied"
                            }
                        }
                        // Signed by the transmitter but unusable: acknowledged (sending it
                        // again would not help), counted, and logged without its content.
                        Some(Err(why)) => {
                            add(&inner.counters.unmatched_subjects, 1);
                            tracing::warn!(
                                event = event.label,
                                reason = why,
                                "event subject not understood"
                            );
                            "unmatched"
                        }
                        None => {
                            add(&inner.counters.unmatched_subjects, 1);
                            tracing::warn!(event = event.label, "event names no subject");
                            "unmatched"
                        }
                    }
                }
            };
            crate::metrics::ssf_event(event.label, outcome);
            tracing::info!(event = event.label, outcome, jti = %verified.jti, "security event received");
        }
        add(&inner.counters.verdicts_forgotten, forgotten as u64);
        Ok(Receipt {
            jti: verified.jti,
            verdicts_forgotten: forgotten,
        })
    }

    /// The tower service for RFC 8935 push delivery. Fails when no
    /// [`push_authorization`](SsfReceiverBuilder::push_authorization) was configured: an
    /// endpoint anyone may post to is not offered.
    pub fn push_endpoint(&self) -> Result<PushEndpoint, ConfigError> {
        PushEndpoint::new(self.clone())
    }

    /// Configures a poller of the transmitter's RFC 8936 endpoint `endpoint_url` (the stream's
    /// `delivery.endpoint_url`), sending `authorization` as its `Authorization` header.
    pub fn poller(
        &self,
        endpoint_url: impl Into<String>,
        authorization: impl Into<String>,
    ) -> PollerBuilder {
        PollerBuilder::new(self.clone(), endpoint_url.into(), authorization.into())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SsfStats {
        let c = &self.inner.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SsfStats {
            accepted: read(&c.accepted),
            refused: read(&c.refused),
            unavailable: read(&c.unavailable),
            revocations: read(&c.revocations),
            unknown_events: read(&c.unknown_events),
            unmatched_subjects: read(&c.unmatched_subjects),
            verdicts_forgotten: read(&c.verdicts_forgotten),
            pushes_refused: read(&c.pushes_refused),
        }
    }

    /// The transmitter's `iss`.
    pub fn issuer(&self) -> &str {
        &self.inner.checks.issuer
    }

    /// Counts a push refused before its SET was read.
    fn push_refused(&self) {
        add(&self.inner.counters.pushes_refused, 1);
    }

    fn inner(&self) -> &Receiver {
        &self.inner
    }
}

/// Configures an [`SsfReceiver`]. The transmitter and audience are given to
/// [`SsfReceiver::builder`]; everything else has a default except the caches, which a receiver
/// without is refused.
#[must_use]
pub struct SsfReceiverBuilder {
    issuer: String,
    audience: String,
    jwks_uri: Option<String>,
    fixed: Option<Result<KeySet, ConfigError>>,
    algorithms: Vec<JwsAlgorithm>,
    max_age: Duration,
    leeway: Duration,
    replay_capacity: usize,
    targets: Vec<Arc<dyn Revocable>>,
    push_authorization: Option<String>,
    max_body: usize,
    client: Option<reqwest::Client>,
    allow_http: bool,
    remember_revocations: Duration,
}

impl fmt::Debug for SsfReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiverBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("caches", &self.targets.len())
            .finish_non_exhaustive()
    }
}

impl SsfReceiverBuilder {
    /// A verdict cache the events act on (a clone of the handle: the layer's
    /// [`BearerAuthLayer::verifier`](crate::BearerAuthLayer::verifier), for instance). May be
    /// called for several caches.
    ///
    /// From then on the cache keeps an index of its verdicts by subject, email, token id and
    /// session, so that an event costs no walk of the cache (about 60–120 bytes per identifier of
    /// each entry; see [`CacheConfig::max_bytes`](crate::cache::CacheConfig::max_bytes)).
    pub fn invalidates<V: TokenVerifier>(mut self, cache: &CachedVerifier<V>) -> Self {
        cache.index_identifiers();
        self.targets.push(Arc::new(cache.clone()));
        self
    }

    /// The `Authorization` header value the transmitter sends with each push (the stream's
    /// `delivery.authorization_header`). Compared in constant time. Required for
    /// [`SsfReceiver::push_endpoint`].
    pub fn push_authorization(mut self, value: impl Into<String>) -> Self {
        self.push_authorization = Some(value.into());
        self
    }

    /// Where the transmitter publishes its keys. By default, `jwks_uri` of its SSF configuration
    /// (`/.well-known/ssf-configuration` of the issuer), found on first use.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Fixed keys from a JWK Set document: nothing is fetched.
    pub fn jwks(mut self, document: &str) -> Self {
        self.fixed = Some(
            parse_jwks(document.as_bytes(), usize::MAX).map_err(|reason| ConfigError::Invalid {
                setting: "jwks",
                reason,
            }),
        );
        self
    }

    /// The signature algorithms accepted (default [`JwsAlgorithm::DEFAULT_ALLOWED`]; asymmetric
    /// only).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The oldest `iat` accepted, which is also how long each `jti` is remembered (default
    /// [`DEFAULT_MAX_AGE`]). Set it at least to how long the transmitter retries a delivery.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future `iat` may be, for clock skew (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How many SET identifiers the replay store holds (default [`DEFAULT_SET_REPLAY_CAPACITY`]).
    /// When it is full of identifiers still within `max_age`, new SETs get 503 (the transmitter
    /// retries) rather than an identifier being forgotten early.
    pub fn replay_capacity(mut self, entries: usize) -> Self {
        self.replay_capacity = entries;
        self
    }

    /// Largest pushed body read (default [`DEFAULT_MAX_SET_BYTES`]); a longer one is refused
    /// unread.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long each cache remembers a revocation (default [`DEFAULT_REMEMBER_REVOCATIONS`]), so
    /// that a token it names, verified again locally (a JWT, whose signature stays valid), is
    /// refused. Set it to at least the longest access token lifetime of the issuer; after it, a
    /// revoked JWT would be accepted again until its `exp`.
    pub fn remember_revocations(mut self, duration: Duration) -> Self {
        self.remember_revocations = duration;
        self
    }

    /// The HTTP client for keys, discovery and polling (default: rustls, no redirects, a connect
    /// timeout; every request has its own timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Allows `http` URLs off loopback for the transmitter (default: only `https`, or `http` to
    /// loopback). For tests behind a trusted network only.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Checks the settings and builds the receiver. Nothing is fetched here.
    pub fn build(self) -> Result<SsfReceiver, ConfigError> {
        Url::parse(&self.issuer).map_err(|e| ConfigError::InvalidUrl {
            url: self.issuer.clone(),
            reason: e.to_string(),
        })?;
        if self.audience.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "audience",
                reason: "the receiver's audience cannot be empty".into(),
            });
        }
        if self.targets.is_empty() {
            return Err(ConfigError::Missing {
                setting: "invalidates",
                why: "a receiver that acts on no cache would acknowledge revocations and do nothing",
            });
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "algorithms",
                reason: "at least one algorithm must be allowed".into(),
            });
        }
        if self.max_age.is_zero() || self.replay_capacity == 0 || self.max_body == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_age",
                reason: "max_age, replay_capacity and max_body_bytes must be above zero".into(),
            });
        }
        if let Some(value) = &self.push_authorization
            && (value.is_empty() || http::HeaderValue::from_str(value).is_err())
        {
            return Err(ConfigError::Invalid {
                setting: "push_authorization",
                reason: "not a usable header value".into(),
            });
        }
        let http = HttpSettings {
            client: OnceLock::new(),
            given: self.client,
            allow_http: self.allow_http,
        };
        let keys = key_source(
            self.fixed,
            self.jwks_uri,
            (&self.issuer, Endpoint::TransmitterJwks),
            || {
                Ok(FetchLimits {
                    client: http.client()?,
                    timeout: DEFAULT_REQUEST_TIMEOUT,
                    max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                    max_keys: DEFAULT_MAX_KEYS,
                    allow_http: self.allow_http,
                    unknown_kid_refetch: DEFAULT_UNKNOWN_KID_REFETCH,
                })
            },
        )?;
        Ok(SsfReceiver {
            inner: Arc::new(Receiver {
                checks: SetChecks {
                    issuer: self.issuer,
                    audience: self.audience,
                    algorithms: self.algorithms,
                    keys,
                    max_age: self.max_age,
                    leeway: self.leeway,
                    replay: crate::replay::ReplayCache::new(self.replay_capacity),
                },
                targets: self.targets,
                push_authorization: self.push_authorization,
                max_body: self.max_body,
                http,
                counters: Counters::default(),
                remember_revocations: self.remember_revocations,
            }),
        })
    }
}
