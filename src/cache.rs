//! A verdict cache in front of any [`TokenVerifier`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::{InvalidToken, Principal, TokenVerifier, VerifyError};

/// The SHA-256 of a token: the only form in which a token is kept.
pub(crate) type TokenKey = [u8; 32];

/// Hashes a token into its cache key.
pub(crate) fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// A short, non-reversible label of a token for logs: the first 8 hex digits of its hash.
pub(crate) fn fingerprint(key: &TokenKey) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Default longest life of a positive entry.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// Default life of a negative entry.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Default bound on the number of entries.
pub const DEFAULT_MAX_CAPACITY: u64 = 100_000;

/// Settings of a [`CachedVerifier`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheConfig {
    max_ttl: Duration,
    negative_ttl: Duration,
    max_capacity: u64,
    weigh_bytes: bool,
    leeway: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_ttl: DEFAULT_MAX_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_capacity: DEFAULT_MAX_CAPACITY,
            weigh_bytes: false,
            leeway: crate::introspection::DEFAULT_LEEWAY,
        }
    }
}

impl CacheConfig {
    /// Longest time a positive verdict is reused (default 5 min). This bounds how long a token
    /// revoked at the server keeps working here.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// How long a negative verdict is reused (default 10 s). `Duration::ZERO` disables negative
    /// caching.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most entries kept (default 100,000); the least recently used are evicted beyond it.
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = entries;
        self.weigh_bytes = false;
        self
    }

    /// Bounds the cache by the approximate memory of its entries instead of their number: useful
    /// when principals carry large or varying claims. Each entry weighs its key, its bookkeeping
    /// and the bytes of its claims (see [`Principal::approximate_size`]).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_capacity = bytes;
        self.weigh_bytes = true;
        self
    }

    /// Subtracted from `exp` to end a positive entry early (default 60 s, like the introspector's
    /// leeway), so that a clock running behind the authorization server's never serves an expired
    /// token from the cache.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long a positive verdict for `principal` may be cached, seen at `now`.
    fn positive_ttl(&self, principal: &Principal, now: SystemTime) -> Duration {
        let until_expiry = match principal.expires_at() {
            None => return self.max_ttl,
            Some(exp) => exp
                .checked_sub(self.leeway)
                .and_then(|end| end.duration_since(now).ok())
                .unwrap_or(Duration::ZERO),
        };
        until_expiry.min(self.max_ttl)
    }
}

/// A cached verdict.
#[derive(Clone)]
enum Verdict {
    Valid(Principal),
    Invalid(InvalidToken),
}

/// Gives each entry its own lifetime, from its verdict.
struct VerdictExpiry(CacheConfig);

impl Expiry<TokenKey, Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        verdict: &Verdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            Verdict::Valid(principal) => self.0.positive_ttl(principal, SystemTime::now()),
            Verdict::Invalid(_) => self.0.negative_ttl,
        })
    }
}

/// Counters of a [`CachedVerifier`], read with [`CachedVerifier::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from a positive entry.
    pub hits: u64,
    /// Requests answered from a negative entry.
    pub negative_hits: u64,
    /// Requests that found no entry (each either started a call or waited for one in flight).
    pub misses: u64,
    /// Calls made to the inner verifier (introspection calls, for an [`Introspector`](crate::Introspector)).
    pub introspection_calls: u64,
    /// Of those calls, how many failed because the server was unavailable.
    pub server_errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    introspection_calls: AtomicU64,
    server_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Wraps a [`TokenVerifier`] with a verdict cache.
///
/// Without a cache, every request costs the authorization server an introspection call. With a
/// naive one, a revoked or expired token keeps working, raw tokens sit in memory as keys, and a
/// flood of garbage tokens still reaches the server. This cache:
///
/// - keys entries by the SHA-256 of the token, never the token itself;
/// - keeps a positive verdict until `min(exp − leeway, now + max_ttl)`, so never past the token's
///   expiry (RFC 7662 §4), and a token without `exp` at most `max_ttl`;
/// - keeps a negative verdict (inactive, wrong audience, …) for `negative_ttl`, so repeated bad
///   tokens cost the server one call each per `negative_ttl`;
/// - coalesces concurrent lookups of the same new token into one call (single flight);
/// - never caches a failure of the server itself (timeout, 5xx, garbage), so the next request asks
///   again;
/// - is bounded by `max_capacity` entries, or by approximate bytes with
///   [`CacheConfig::max_bytes`] (least recently used evicted first).
///
/// Revocation is the price of any cache: a token revoked at the server keeps working here until its
/// entry ends (at most `max_ttl`), unless you call [`CachedVerifier::invalidate`].
///
/// Clones share the cache and the counters: keep one as a handle to invalidate entries or read
/// statistics while the layer uses another.
pub struct CachedVerifier<V> {
    inner: Arc<V>,
    cache: Cache<TokenKey, Verdict>,
    counters: Arc<Counters>,
}

impl<V> Clone for CachedVerifier<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<V> fmt::Debug for CachedVerifier<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedVerifier")
            .field("entries", &self.cache.entry_count())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// Caches the verdicts of `inner` as configured.
    pub fn new(inner: V, config: CacheConfig) -> Self {
        let builder = Cache::builder().max_capacity(config.max_capacity);
        let builder = if config.weigh_bytes {
            builder.weigher(|_key: &TokenKey, verdict: &Verdict| verdict.weight())
        } else {
            builder
        };
        let cache = builder.expire_after(VerdictExpiry(config)).build();
        Self {
            inner: Arc::new(inner),
            cache,
            counters: Arc::default(),
        }
    }
}

impl<V> CachedVerifier<V> {
    /// The wrapped verifier.
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Forgets the verdict for `token` (e.g. after revoking it), so the next request asks again.
    pub async fn invalidate(&self, token: &str) {
        self.cache.invalidate(&token_key(token)).await;
    }

    /// Forgets every verdict.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Entries currently held (approximate until pending maintenance has run; see
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs the cache's pending maintenance (evictions, expirations) now. Useful in tests and
    /// before reading [`entry_count`](Self::entry_count).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &*self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            introspection_calls: c.introspection_calls.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
        }
    }
}

impl<V: TokenVerifier> TokenVerifier for CachedVerifier<V> {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let key = token_key(token);
        let counters = &*self.counters;
        if let Some(verdict) = self.cache.get(&key).await {
            let counter = match verdict {
                Verdict::Valid(_) => &counters.hits,
                Verdict::Invalid(_) => &counters.negative_hits,
            };
            bump(counter);
            return verdict.into_result();
        }
        bump(&counters.misses);
        // Boxed so that the hit path's future stays small: the miss path holds the whole
        // introspection call (kilobytes of HTTP client state), which hits should not carry.
        Box::pin(self.miss(key, token)).await
    }
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// Asks the inner verifier, coalescing concurrent misses of the same key into one call.
    async fn miss(&self, key: TokenKey, token: &str) -> Result<Principal, VerifyError> {
        let counters = &*self.counters;
        let call = async {
            bump(&counters.introspection_calls);
            match self.inner.verify(token).await {
                Ok(principal) => Ok(Verdict::Valid(principal)),
                Err(VerifyError::Invalid(reason)) => Ok(Verdict::Invalid(reason)),
                Err(VerifyError::Unavailable(reason)) => {
                    bump(&counters.server_errors);
                    tracing::warn!(token = %fingerprint(&key), %reason, "token verification unavailable");
                    Err(reason)
                }
            }
        };
        match self.cache.try_get_with(key, call).await {
            Ok(verdict) => verdict.into_result(),
            Err(reason) => Err(VerifyError::Unavailable((*reason).clone())),
        }
    }
}

/// Bytes an entry costs besides its claims: key, moka's bookkeeping, the verdict and the `Arc`.
const ENTRY_OVERHEAD_BYTES: usize = 160;

impl Verdict {
    /// The entry's approximate memory, for byte-bounded caches.
    fn weight(&self) -> u32 {
        let claims = match self {
            Verdict::Valid(principal) => principal.approximate_size(),
            Verdict::Invalid(_) => 0,
        };
        u32::try_from(ENTRY_OVERHEAD_BYTES + claims).unwrap_or(u32::MAX)
    }

    fn into_result(self) -> Result<Principal, VerifyError> {
        match self {
            Verdict::Valid(principal) => Ok(principal),
            Verdict::Invalid(reason) => Err(VerifyError::Invalid(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntrospectionResponse;

    fn principal_expiring(exp: Option<SystemTime>) -> Principal {
        Principal::new(IntrospectionResponse {
            active: true,
            exp: exp.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64),
            ..Default::default()
        })
    }

    #[test]
    fn positive_ttl_never_outlives_exp_minus_leeway() {
        let config = CacheConfig::default()
            .max_ttl(Duration::from_secs(300))
            .leeway(Duration::from_secs(60));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ttl = |exp_in: u64| {
            config.positive_ttl(
                &principal_expiring(Some(now + Duration::from_secs(exp_in))),
                now,
            )
        };
        assert_eq!(ttl(100), Duration::from_secs(40));
        assert_eq!(ttl(3600), Duration::from_secs(300));
        assert_eq!(ttl(30), Duration::ZERO);
        assert_eq!(
            config.positive_ttl(&principal_expiring(None), now),
            Duration::from_secs(300)
        );
        assert_eq!(
            config.positive_ttl(&principal_expiring(Some(SystemTime::UNIX_EPOCH)), now),
            Duration::ZERO
        );
    }

    #[test]
    fn keys_are_sha256_and_fingerprints_short() {
        let key = token_key("abc");
        assert_eq!(fingerprint(&key), "ba7816bf");
        assert_ne!(token_key("abc"), token_key("abd"));
    }
}
