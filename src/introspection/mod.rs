//! The RFC 7662 token introspection client.
//!
//! [`Introspector`] asks the authorization server whether a token is active, validates the answer
//! (expiry, not-before, audience, issuer, token type) and turns it into a [`Principal`]. It does not
//! cache: wrap it in a [`CachedVerifier`](crate::cache::CachedVerifier) (as
//! [`BearerAuthLayer::introspect`](crate::BearerAuthLayer::introspect) does) so that the
//! authorization server sees one call per token per cache lifetime, not one per request.

mod client_auth;
mod lazy_discovery;
pub(crate) mod response;
pub(crate) mod validation;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

pub use self::client_auth::ClientAuth;
use self::lazy_discovery::LazyDiscovery;
pub use self::response::IntrospectionResponse;
use self::validation::Validation;
pub use crate::claims::DEFAULT_LEEWAY;
pub use crate::remote::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT,
};
use crate::{ConfigError, Principal, TokenVerifier, UnavailableCause, VerifyError};
use crate::{discovery, remote};

/// An RFC 7662 introspection client that validates what the server answers.
///
/// Cheap to clone (shared state behind an `Arc`).
///
/// ```no_run
/// # async fn example() -> Result<(), tower_introspect::ConfigError> {
/// use tower_introspect::Introspector;
///
/// let introspector = Introspector::builder()
///     .endpoint("https://auth.example.com/oauth/introspect")
///     .client_secret_basic("mcp-server", "s3cret")
///     .audience("https://mcp.example.com/mcp")
///     .issuer("https://auth.example.com")
///     .build()?;
///
/// // Or find the endpoint in the server's RFC 8414 metadata:
/// let introspector = Introspector::builder()
///     .client_secret_basic("mcp-server", "s3cret")
///     .audience("https://mcp.example.com/mcp")
///     .discover("https://auth.example.com")
///     .await?
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Introspector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    endpoint: Endpoint,
    auth: ClientAuth,
    request_timeout: Duration,
    max_response_bytes: usize,
    validation: Validation,
    /// Bounds the calls in flight, when configured.
    in_flight: Option<tokio::sync::Semaphore>,
    /// Longest wait a `429`'s `Retry-After` imposes.
    max_retry_after: Duration,
    /// No call before this instant: the authorization server answered `429` (on tokio's clock, so
    /// that tests can drive it).
    not_before: Mutex<Option<tokio::time::Instant>>,
    /// When the last call went through during a hold (see [`THROTTLE_PROBE_INTERVAL`]).
    last_probe: Mutex<Option<tokio::time::Instant>>,
}

/// Where introspection requests go.
#[derive(Debug)]
enum Endpoint {
    /// Configured, or discovered when the introspector was built.
    Known(Url),
    /// Discovered on first use ([`IntrospectorBuilder::discover_lazily`]).
    Lazy(LazyDiscovery),
}

impl Introspector {
    /// Starts configuring an introspector.
    pub fn builder() -> IntrospectorBuilder {
        IntrospectorBuilder::default()
    }

    /// The introspection endpoint in use (configured or discovered); `None` while a lazy discovery
    /// ([`discover_lazily`](IntrospectorBuilder::discover_lazily)) has not succeeded yet.
    pub fn endpoint(&self) -> Option<&Url> {
        match &self.inner.endpoint {
            Endpoint::Known(url) => Some(url),
            Endpoint::Lazy(discovery) => discovery.get(),
        }
    }

    /// The configured clock-skew allowance, which a cache in front of this introspector should also
    /// subtract from `exp`.
    pub fn leeway(&self) -> Duration {
        self.inner.validation.leeway
    }

    /// Asks the authorization server about `token` and returns its raw answer, without validation.
    ///
    /// Fails with [`VerifyError::Unavailable`] on any transport error, timeout, non-2xx status,
    /// oversized body or a body that is not an introspection response.
    ///
    /// After the server answered `429 Too Many Requests`, fails at once with
    /// [`VerifyError::Throttled`] until its `Retry-After` has passed (capped by
    /// [`max_retry_after`](IntrospectorBuilder::max_retry_after)), without calling it, except for
    /// one probe per [`THROTTLE_PROBE_INTERVAL`]: the first call after each interval goes through,
    /// and an answer ends the hold at once, so a server that recovers early is not left idle.
    pub async fn introspect(&self, token: &str) -> Result<IntrospectionResponse, VerifyError> {
        if let Some(wait) = self.throttled_for()
            && !self.claim_probe()
        {
            return Err(VerifyError::Throttled(wait));
        }
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        // One deadline for the whole call, waiting for a slot included: a caller is never held
        // longer than the request timeout, whatever the queue.
        let result =
            tokio::time::timeout(self.inner.request_timeout, self.introspect_unbounded(token))
                .await
                .unwrap_or_else(|_| {
                    Err(VerifyError::unavailable(
                        UnavailableCause::Timeout,
                        "introspection timed out (waiting for a slot included)",
                    ))
                });
        if result.is_ok() {
            // The server answered: whatever hold a 429 set is over.
            *self.not_before() = None;
        }
        #[cfg(feature = "metrics")]
        {
            // A discovery that has not succeeded sent no introspection request.
            let sent = !matches!(&result, Err(VerifyError::Unavailable(e)) if e.cause() == UnavailableCause::Discovery);
            if sent {
                crate::metrics::introspection_call(
                    crate::metrics::call_outcome(&result),
                    started.elapsed(),
                );
            }
        }
        result
    }

    /// [`introspect`](Self::introspect) without its deadline.
    async fn introspect_unbounded(
        &self,
        token: &str,
    ) -> Result<IntrospectionResponse, VerifyError> {
        let inner = &*self.inner;
        let endpoint = match &inner.endpoint {
            Endpoint::Known(url) => url,
            Endpoint::Lazy(discovery) => {
                discovery
                    .endpoint(
                        &inner.client,
                        inner.request_timeout,
                        inner.max_response_bytes,
                    )
                    .await?
            }
        };
        let _permit = match &inner.in_flight {
            None => None,
            Some(slots) => Some(slots.acquire().await.map_err(|_| {
                VerifyError::unavailable(UnavailableCause::Other, "introspector closed")
            })?),
        };
        let _in_flight = crate::metrics::InFlight::start();
        let mut form: Vec<(&'static str, &str)> =
            vec![("token", token), ("token_type_hint", "access_token")];
        let request = inner
            .client
            .post(endpoint.clone())
            .header(::http::header::ACCEPT, "application/json");
        let request = inner.auth.apply(request, &mut form).form(&form);
        let response = request.send().await.map_err(|e| {
            VerifyError::Unavailable(remote::request_failed("introspection request", e))
        })?;
        let status = response.status();
        if status == ::http::StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(response.headers())
                .unwrap_or(DEFAULT_THROTTLE)
                .min(inner.max_retry_after);
            self.throttle(wait);
            return Err(VerifyError::Throttled(wait));
        }
        if !status.is_success() {
            return Err(VerifyError::unavailable(
                UnavailableCause::Status,
                format!("introspection endpoint answered {status}"),
            ));
        }
        let body = remote::read_capped(response, inner.max_response_bytes)
            .await
            .map_err(|e| VerifyError::Unavailable(e.into()))?;
        serde_json::from_slice(&body).map_err(|e| {
            VerifyError::Unavailable(
                crate::Unavailable::new(
                    UnavailableCause::InvalidResponse,
                    format!("not an introspection response: {e}"),
                )
                .caused_by(e),
            )
        })
    }
}

impl Introspector {
    /// How long calls are still held back after a `429`, if they are.
    fn throttled_for(&self) -> Option<std::time::Duration> {
        let not_before = *self.not_before();
        let wait = not_before?.checked_duration_since(tokio::time::Instant::now())?;
        (!wait.is_zero()).then_some(wait)
    }

    /// Holds calls back for `wait` (never shortening a longer hold already in place).
    fn throttle(&self, wait: Duration) {
        let now = tokio::time::Instant::now();
        let until = now + wait;
        let mut not_before = self.not_before();
        if not_before.is_none_or(|current| current < until) {
            *not_before = Some(until);
        }
        // The first probe comes an interval after the `429`, not with the next request.
        *self
            .inner
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
    }

    /// Whether this call is the probe of the current interval (and marks it so).
    fn claim_probe(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self
            .inner
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|last| now < last + THROTTLE_PROBE_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn not_before(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.inner
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wait a `Retry-After` header asks for, in delta-seconds (RFC 9110 §10.2.3). An HTTP-date is
/// not read: the default wait applies, as for a `429` without the header.
fn retry_after(headers: &::http::HeaderMap) -> Option<Duration> {
    let seconds = headers.get(::http::header::RETRY_AFTER)?.to_str().ok()?;
    seconds.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// During a `429` hold, one call per this interval still goes through as a probe.
pub const THROTTLE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long calls are held back after a `429` without a usable `Retry-After`.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(5);
/// Default cap on the wait a `429`'s `Retry-After` imposes.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl TokenVerifier for Introspector {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let verdict = match self.introspect(token).await {
            Ok(response) => self
                .inner
                .validation
                .accept(response, unix_now())
                .map_err(VerifyError::from),
            Err(error) => Err(error),
        };
        crate::metrics::verification(crate::VerifierKind::Introspection, &verdict);
        verdict.map(Principal::new)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Configures an [`Introspector`]. Every setting has a safe default except the endpoint.
#[derive(Debug)]
#[must_use]
pub struct IntrospectorBuilder {
    endpoint: Option<String>,
    lazy_issuer: Option<String>,
    auth: ClientAuth,
    client: Option<reqwest::Client>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    validation: Validation,
    max_in_flight: Option<usize>,
    max_retry_after: Duration,
    allow_insecure_http: bool,
}

impl Default for IntrospectorBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            lazy_issuer: None,
            auth: ClientAuth::None,
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            validation: Validation::default(),
            max_in_flight: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            allow_insecure_http: false,
        }
    }
}

impl IntrospectorBuilder {
    /// The introspection endpoint URL (`https://…/introspect`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.lazy_issuer = None;
        self
    }

    /// Authenticates with HTTP Basic (`client_secret_basic`, the RFC 7662 default).
    pub fn client_secret_basic(
        self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.client_auth(ClientAuth::SecretBasic {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        })
    }

    /// Authenticates with credentials in the form body (`client_secret_post`).
    pub fn client_secret_post(
        self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.client_auth(ClientAuth::SecretPost {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        })
    }

    /// Authenticates with a static bearer credential.
    pub fn bearer_credential(self, credential: impl Into<String>) -> Self {
        self.client_auth(ClientAuth::Bearer(credential.into()))
    }

    /// Sets the client authentication directly.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Uses your own HTTP client (proxies, custom roots, mTLS, connection pool sharing).
    ///
    /// The request timeout below still applies to every introspection call; the connect timeout is
    /// then yours to set on the client.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Connect timeout of the default client (default [`DEFAULT_CONNECT_TIMEOUT`], 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one whole introspection call (default [`DEFAULT_REQUEST_TIMEOUT`], 5 s),
    /// waiting for a slot under [`max_concurrent_requests`](Self::max_concurrent_requests)
    /// included. A call that takes longer fails as unavailable (503) and is not cached.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// At most `calls` introspection calls in flight at once (default: unbounded).
    ///
    /// The cache coalesces requests for the *same* token and remembers bad ones, but a flood of
    /// *distinct* unknown tokens still costs one call each. This bound protects the authorization
    /// server from such a flood: further calls wait for a slot, and a call whose wait and request
    /// together exceed the request timeout fails as unavailable (503).
    pub fn max_concurrent_requests(mut self, calls: usize) -> Self {
        self.max_in_flight = Some(calls.max(1));
        self
    }

    /// Longest the authorization server can make us wait with `429 Too Many Requests` and a
    /// `Retry-After` (default [`DEFAULT_MAX_RETRY_AFTER`], 60 s).
    ///
    /// After a `429`, no introspection call is made until its `Retry-After` has passed (or
    /// [`DEFAULT_THROTTLE`], 5 s, without a delta-seconds value); requests that need one get 503
    /// with the remaining wait as their `Retry-After`. The cap keeps a wrong or hostile answer
    /// (`Retry-After: 86400`) from refusing every new token for a day.
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit;
        self
    }

    /// Largest response body accepted (default [`DEFAULT_MAX_RESPONSE_BYTES`], 64 KiB).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default [`DEFAULT_LEEWAY`], 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway;
        self
    }

    /// Requires `aud` to contain exactly this value, normally the resource's own URL (RFC 8707).
    ///
    /// Strongly recommended: without it, any active token of the same authorization server is
    /// accepted, including tokens minted for other APIs. A response without `aud` then fails.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.validation.audience = Some(audience.into());
        self
    }

    /// Requires `iss` to equal this value exactly. A response without `iss` then fails.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.validation.issuer = Some(issuer.into());
        self
    }

    /// Allows an `http` introspection endpoint (and discovery over `http`) on a host that is not
    /// loopback (default: refused).
    ///
    /// RFC 7662 §4 requires TLS: the token and the client's credentials travel in the request, and
    /// whoever can answer in the server's place decides which tokens are valid. Loopback
    /// (`127.0.0.0/8`, `::1`, `localhost`) is allowed without this, for development and sidecars.
    /// Call it before [`discover`](Self::discover), which applies the rule to the issuer it fetches
    /// and to the endpoint it finds.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Finds the introspection endpoint in the RFC 8414 metadata of `issuer` (falling back to the
    /// OpenID Connect discovery document), using this builder's client (or a default one with its
    /// connect timeout), request timeout and response size limit as they are when called.
    ///
    /// The issuer and the discovered endpoint must be `https` unless loopback or
    /// [`allow_insecure_http`](Self::allow_insecure_http). Settings changed afterwards apply to
    /// introspection: the default client is built by [`build`](Self::build), not here.
    pub async fn discover(mut self, issuer: &str) -> Result<Self, ConfigError> {
        let client = self.client_or_default()?;
        let endpoint = discovery::find_endpoint(
            discovery::Endpoint::Introspection,
            &client,
            issuer,
            self.request_timeout,
            self.max_response_bytes,
            self.allow_insecure_http,
        )
        .await?;
        self.endpoint = Some(endpoint.into());
        self.lazy_issuer = None;
        Ok(self)
    }

    /// Like [`discover`](Self::discover), but on first use instead of now, so that the service can
    /// start while the authorization server is down.
    ///
    /// Until discovery succeeds, requests that need an introspection get 503 (unavailable). A
    /// failed attempt is retried on demand after a capped exponential backoff (1 s, doubling, at
    /// most 60 s), one attempt at a time: the requests that arrive meanwhile wait for it or get
    /// 503 at once, and never start their own. The issuer must follow the `https` rule, checked by
    /// [`build`](Self::build); the endpoint found must too, checked when found.
    pub fn discover_lazily(mut self, issuer: impl Into<String>) -> Self {
        self.lazy_issuer = Some(issuer.into());
        self.endpoint = None;
        self
    }

    /// Builds the introspector. Fails when no endpoint was set, or it is not an `https` URL (nor
    /// `http` on loopback or with [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn build(mut self) -> Result<Introspector, ConfigError> {
        let endpoint = match (self.endpoint.take(), self.lazy_issuer.take()) {
            (None, Some(issuer)) => {
                let parsed = Url::parse(&issuer).map_err(|e| ConfigError::InvalidUrl {
                    url: issuer.clone(),
                    reason: e.to_string(),
                })?;
                remote::require_tls(&parsed, self.allow_insecure_http)?;
                Endpoint::Lazy(LazyDiscovery::new(issuer, self.allow_insecure_http))
            }
            (endpoint, _) => Endpoint::Known(self.parse_endpoint(endpoint)?),
        };
        let client = self.client_or_default()?;
        Ok(Introspector {
            inner: Arc::new(Inner {
                client,
                endpoint,
                auth: self.auth,
                request_timeout: self.request_timeout,
                max_response_bytes: self.max_response_bytes,
                validation: self.validation,
                in_flight: self.max_in_flight.map(tokio::sync::Semaphore::new),
                max_retry_after: self.max_retry_after,
                not_before: Mutex::new(None),
                last_probe: Mutex::new(None),
            }),
        })
    }

    /// The configured endpoint, checked.
    fn parse_endpoint(&self, endpoint: Option<String>) -> Result<Url, ConfigError> {
        let raw = endpoint.ok_or(ConfigError::Missing {
            setting: "endpoint",
            why: "no introspection endpoint configured: call endpoint(), discover() or \
                  discover_lazily()",
        })?;
        let endpoint = Url::parse(&raw).map_err(|e| ConfigError::InvalidUrl {
            url: raw.clone(),
            reason: e.to_string(),
        })?;
        remote::require_tls(&endpoint, self.allow_insecure_http)?;
        Ok(endpoint)
    }

    fn client_or_default(&self) -> Result<reqwest::Client, ConfigError> {
        match &self.client {
            Some(client) => Ok(client.clone()),
            None => remote::default_client(self.connect_timeout),
        }
    }
}
