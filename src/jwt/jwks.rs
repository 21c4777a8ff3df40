//! An issuer's key set as the verifier sees it: fetched from `jwks_uri` (configured or found by
//! discovery), refreshed on a schedule, refetched for an unknown `kid` at most once per interval,
//! and kept when a fetch fails. Or fixed keys given at build time.
//!
//! Every fetch is bounded (time, bytes, keys) and single-flight: one fetch at a time per issuer,
//! and callers that waited for it use its result instead of fetching again. Time is tokio's clock,
//! so that tests can drive it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::algorithm::JwsAlgorithm;
use super::keys::{KeySet, VerificationKey, parse_jwks};
use crate::discovery;
pub(crate) use crate::discovery::Endpoint;
use crate::remote::{read_capped, request_failed, require_tls};
use crate::{ConfigError, InvalidToken, UnavailableCause, VerifyError};

/// Shortest time a fetched key set is used before it is refreshed, whatever its `max-age`.
pub const MIN_KEYS_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Longest time a fetched key set is used before it is refreshed, whatever its `max-age`.
pub const MAX_KEYS_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a key set without a usable `Cache-Control: max-age` is used before it is refreshed.
pub const DEFAULT_KEYS_REFRESH: Duration = Duration::from_secs(60 * 60);
/// Default least time between two fetches caused by tokens with an unknown `kid`.
pub const DEFAULT_UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
/// Wait after a first failed fetch while no keys are known; doubled after each further failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two fetches while no keys are known.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Where the keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys given at build time: never fetched.
    Fixed(Arc<KeySet>),
    /// A key set fetched over HTTP.
    Remote(Box<RemoteKeys>),
}

impl KeySource {
    /// The key for a token's `kid` and `alg`.
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Arc<VerificationKey>, VerifyError> {
        match self {
            Self::Fixed(keys) => keys
                .find(kid, alg)
                .cloned()
                .ok_or(InvalidToken::UnknownKey.into()),
            Self::Remote(remote) => remote.key(kid, alg).await,
        }
    }
}

/// The key source a builder describes: fixed keys, a key set URL, or else discovery of `issuer`'s
/// metadata document for `endpoint`. `limits` is called only for keys that are fetched.
pub(crate) fn key_source(
    fixed: Option<Result<KeySet, ConfigError>>,
    jwks_uri: Option<String>,
    (issuer, endpoint): (&str, Endpoint),
    limits: impl FnOnce() -> Result<FetchLimits, ConfigError>,
) -> Result<KeySource, ConfigError> {
    let invalid_url = |url: &str, e: url::ParseError| ConfigError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    match (fixed, jwks_uri) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            setting: "jwks_uri",
            reason: "fixed keys and a key set URL exclude each other".into(),
        }),
        (Some(fixed), None) => Ok(KeySource::Fixed(Arc::new(fixed?))),
        (None, location) => {
            let limits = limits()?;
            let location = match location {
                Some(url) => Location::Known(Url::parse(&url).map_err(|e| invalid_url(&url, e))?),
                None => {
                    // Whoever answers discovery picks the keys we trust.
                    let parsed = Url::parse(issuer).map_err(|e| invalid_url(issuer, e))?;
                    require_tls(&parsed, limits.allow_http)?;
                    Location::Discover(issuer.to_owned(), endpoint, OnceLock::new())
                }
            };
            Ok(KeySource::Remote(Box::new(RemoteKeys::new(
                location, limits,
            )?)))
        }
    }
}

/// Where the key set is published.
#[derive(Debug)]
pub(crate) enum Location {
    Known(Url),
    /// Found on first use in the issuer's metadata document that names `jwks_uri` for this
    /// [`Endpoint`] (RFC 8414 / OpenID discovery, or an SSF transmitter's configuration).
    Discover(String, Endpoint, OnceLock<Url>),
}

/// What every fetch is bounded by.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) max_keys: usize,
    pub(crate) allow_http: bool,
    pub(crate) unknown_kid_refetch: Duration,
}

/// A key set fetched over HTTP, and the bookkeeping of its fetches.
#[derive(Debug)]
pub(crate) struct RemoteKeys {
    location: Location,
    limits: FetchLimits,
    current: RwLock<Option<Arc<Loaded>>>,
    /// Incremented by each successful fetch: a caller that waited for the fetch lock and sees a
    /// newer generation than when it looked uses that fetch's keys instead of fetching again.
    generation: AtomicU64,
    /// Held by the one fetch under way.
    fetching: tokio::sync::Mutex<FetchLog>,
}

#[derive(Debug)]
struct Loaded {
    keys: KeySet,
    /// Refresh due from then on (the keys keep serving until a refresh succeeds).
    refresh_at: Instant,
}

#[derive(Debug, Default)]
struct FetchLog {
    /// When the last fetch started, whatever its outcome.
    last_attempt: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    /// No fetch before this instant (after a failure).
    not_before: Option<Instant>,
}

/// Why a fetch was made, which decides whether it may be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No keys are known yet.
    Initial,
    /// A token names a `kid` the set does not have.
    UnknownKid,
    /// The set's refresh time has come.
    Scheduled,
}

impl RemoteKeys {
    pub(crate) fn new(location: Location, limits: FetchLimits) -> Result<Self, ConfigError> {
        if let Location::Known(url) = &location {
            require_tls(url, limits.allow_http)?;
        }
        Ok(Self {
            location,
            limits,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(FetchLog::default()),
        })
    }

    fn loaded(&self) -> Option<Arc<Loaded>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The kids currently known (for logs and tests).
    #[cfg(test)]
    fn kids(&self) -> Vec<String> {
        self.loaded()
            .map(|l| l.keys.kids().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    async fn key(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Arc<VerificationKey>, VerifyError> {
        let seen = self.generation.load(Ordering::Acquire);
        let Some(loaded) = self.loaded() else {
            self.fetch(Reason::Initial, seen).await?;
            return self.find_now(kid, alg);
        };
        let seen = if Instant::now() >= loaded.refresh_at {
            // A refresh that succeeds here decides at once, so a removed key stops verifying.
            self.refresh_if_idle().await;
            self.generation.load(Ordering::Acquire)
        } else {
            seen
        };
        if let Ok(key) = self.find_now(kid, alg) {
            return Ok(key);
        }
        self.fetch(Reason::UnknownKid, seen).await?;
        self.find_now(kid, alg)
    }

    fn find_now(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Arc<VerificationKey>, VerifyError> {
        self.loaded()
            .and_then(|l| l.keys.find(kid, alg).cloned())
            .ok_or(InvalidToken::UnknownKey.into())
    }

    /// The scheduled refresh, by whichever request notices it is due while no fetch is under
    /// way; the others go on with the keys they have.
    async fn refresh_if_idle(&self) {
        let Ok(log) = self.fetching.try_lock() else {
            return;
        };
        let seen = self.generation.load(Ordering::Acquire);
        let _ = self.fetch_locked(Reason::Scheduled, seen, log).await;
    }

    /// Fetches unless the log says not to; `Ok` when keys are (now) known.
    async fn fetch(&self, reason: Reason, seen: u64) -> Result<(), VerifyError> {
        let log = self.fetching.lock().await;
        self.fetch_locked(reason, seen, log).await
    }

    async fn fetch_locked(
        &self,
        reason: Reason,
        seen: u64,
        mut log: tokio::sync::MutexGuard<'_, FetchLog>,
    ) -> Result<(), VerifyError> {
        // Another caller fetched while this one waited: use that.
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(not_before) = log.not_before.filter(|t| *t > now) {
            return match reason {
                Reason::Initial => Err(VerifyError::unavailable(
                    UnavailableCause::Keys,
                    format!(
                        "the issuer's keys could not be fetched; next attempt in {:?}",
                        not_before - now
                    ),
                )),
                _ => Err(InvalidToken::UnknownKey.into()),
            };
        }
        if reason == Reason::UnknownKid
            && log
                .last_attempt
                .is_some_and(|last| now < last + self.limits.unknown_kid_refetch)
        {
            return Err(InvalidToken::UnknownKey.into());
        }
        log.last_attempt = Some(now);
        let outcome = self.fetch_now().await;
        crate::metrics::keys_fetch(outcome.as_ref().map(drop).map_err(|e| e.cause()));
        match outcome {
            Ok((keys, max_age)) => {
                tracing::info!(
                    keys = keys.len(),
                    refresh_in = ?max_age,
                    "issuer key set fetched"
                );
                log.failures = 0;
                log.not_before = None;
                let loaded = Loaded {
                    keys,
                    refresh_at: Instant::now() + max_age,
                };
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(loaded));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                let wait = match reason {
                    Reason::Initial => FIRST_RETRY
                        .saturating_mul(1_u32 << log.failures.min(16))
                        .min(MAX_RETRY),
                    // Known keys keep serving; try again after the refetch interval.
                    _ => self.limits.unknown_kid_refetch,
                };
                log.failures = log.failures.saturating_add(1);
                log.not_before = Some(Instant::now() + wait);
                tracing::warn!(
                    error = %error.detail(),
                    retry_in = ?wait,
                    "fetching the issuer's key set failed; known keys keep serving"
                );
                Err(VerifyError::Unavailable(error))
            }
        }
    }

    /// One bounded fetch of the key set, and how long to use it.
    async fn fetch_now(&self) -> Result<(KeySet, Duration), crate::Unavailable> {
        let unavailable = |cause, detail: String| crate::Unavailable::new(cause, detail);
        let url = match &self.location {
            Location::Known(url) => url.clone(),
            Location::Discover(issuer, endpoint, found) => match found.get() {
                Some(url) => url.clone(),
                None => {
                    let url = discovery::find_endpoint(
                        *endpoint,
                        &self.limits.client,
                        issuer,
                        self.limits.timeout,
                        self.limits.max_bytes,
                        self.limits.allow_http,
                    )
                    .await
                    .map_err(|e| {
                        unavailable(UnavailableCause::Discovery, e.to_string()).caused_by(e)
                    })?;
                    found.get_or_init(|| url).clone()
                }
            },
        };
        let response = self
            .limits
            .client
            .get(url)
            .header(
                ::http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .timeout(self.limits.timeout)
            .send()
            .await
            .map_err(|e| request_failed("key set request", e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(
                UnavailableCause::Status,
                format!("the key set endpoint answered {status}"),
            ));
        }
        let max_age = refresh_after(response.headers());
        let body = tokio::time::timeout(
            self.limits.timeout,
            read_capped(response, self.limits.max_bytes),
        )
        .await
        .map_err(|_| {
            unavailable(
                UnavailableCause::Timeout,
                "reading the key set timed out".into(),
            )
        })?
        .map_err(crate::Unavailable::from)?;
        let keys = parse_jwks(&body, self.limits.max_keys)
            .map_err(|reason| unavailable(UnavailableCause::InvalidResponse, reason))?;
        Ok((keys, max_age))
    }
}

/// How long a fetched key set is used: its `Cache-Control: max-age`, clamped to
/// [[`MIN_KEYS_REFRESH`], [`MAX_KEYS_REFRESH`]]; [`DEFAULT_KEYS_REFRESH`] without one.
fn refresh_after(headers: &::http::HeaderMap) -> Duration {
    let max_age = headers
        .get_all(::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
        });
    max_age.map_or(DEFAULT_KEYS_REFRESH, |secs| {
        Duration::from_secs(secs).clamp(MIN_KEYS_REFRESH, MAX_KEYS_REFRESH)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> ::http::HeaderMap {
        let mut h = ::http::HeaderMap::new();
        h.insert(::http::header::CACHE_CONTROL, value.parse().unwrap());
        h
    }

    #[test]
    fn max_age_is_clamped() {
        assert_eq!(
            refresh_after(&::http::HeaderMap::new()),
            DEFAULT_KEYS_REFRESH
        );
        assert_eq!(
            refresh_after(&headers("public, max-age=3600")),
            Duration::from_secs(3600)
        );
        assert_eq!(refresh_after(&headers("max-age=0")), MIN_KEYS_REFRESH);
        assert_eq!(refresh_after(&headers("no-store")), DEFAULT_KEYS_REFRESH);
        assert_eq!(
            refresh_after(&headers("max-age=99999999")),
            MAX_KEYS_REFRESH
        );
        assert_eq!(
            refresh_after(&headers("Max-Age = \"600\"")),
            Duration::from_secs(600)
        );
        assert_eq!(refresh_after(&headers("max-age=-5")), DEFAULT_KEYS_REFRESH);
    }

    #[test]
    fn an_http_key_set_off_loopback_is_refused() {
        let limits = FetchLimits {
            client: crate::remote::default_client(Duration::from_secs(1)).unwrap(),
            timeout: Duration::from_secs(1),
            max_bytes: 1024,
            max_keys: 4,
            allow_http: false,
            unknown_kid_refetch: DEFAULT_UNKNOWN_KID_REFETCH,
        };
        let url = Url::parse("http://as.example/jwks").unwrap();
        assert!(RemoteKeys::new(Location::Known(url), limits.clone()).is_err());
        let url = Url::parse("http://127.0.0.1:9/jwks").unwrap();
        let keys = RemoteKeys::new(Location::Known(url), limits).unwrap();
        assert!(keys.kids().is_empty());
    }
}
