//! A verdict cache in front of any [`TokenVerifier`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{Shared, WeakShared};
use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

pub(crate) use self::index::Identifier;
use self::index::SubjectIndex;
pub use self::revoked::DEFAULT_REVOCATION_CAPACITY;
pub(crate) use self::revoked::Reach;
use self::revoked::{Revocations, Sessions};
use crate::metrics::{self, Lookup};
use crate::{InvalidToken, Principal, TokenVerifier, VerifyError};

mod index;
mod revoked;

/// The SHA-256 of a token: the only form in which a token is kept.
pub(crate) type TokenKey = [u8; 32];

/// Hashes a token into its cache key.
pub(crate) fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Hashes cache keys for the cache's table.
///
/// The keys are SHA-256 digests, spread uniformly whatever the tokens: folding them 8 bytes at a
/// time through a 64×64→128-bit multiply with two random seeds spreads them as well as the
/// default SipHash does, for a fraction of its cost on every request. The seeds are secret and
/// per cache, so an attacker who grinds tokens until their digests share bits cannot predict which
/// of them land in one bucket.
#[derive(Clone)]
struct KeyHashing {
    seeds: [u64; 2],
}

impl KeyHashing {
    fn new() -> Self {
        // The standard library's per-instance random keys, read through hashes of constants.
        let random = std::collections::hash_map::RandomState::new();
        Self {
            seeds: [random.hash_one(0_u8) | 1, random.hash_one(1_u8)],
        }
    }
}

impl BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seeds: self.seeds,
            hash: self.seeds[1],
        }
    }
}

struct KeyHasher {
    seeds: [u64; 2],
    hash: u64,
}

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.hash ^ word) * u128::from(self.seeds[0]);
        self.hash = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let mut tail = [0_u8; 8];
        let rest = words.remainder();
        if !rest.is_empty() {
            tail[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(tail) ^ rest.len() as u64);
        }
    }

    fn finish(&self) -> u64 {
        self.hash
    }
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
    stale_if_error: Duration,
    revocation_capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_ttl: DEFAULT_MAX_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_capacity: DEFAULT_MAX_CAPACITY,
            weigh_bytes: false,
            leeway: crate::introspection::DEFAULT_LEEWAY,
            stale_if_error: Duration::ZERO,
            revocation_capacity: DEFAULT_REVOCATION_CAPACITY,
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
    /// when principals carry large or varying claims. Each entry weighs its key and bookkeeping
    /// (about 320 bytes), its slots in the revocation index when an event receiver made one (64
    /// bytes per subject or email, 120 per token id or session) and what its parsed claims occupy
    /// in memory (see
    /// [`Principal::approximate_size`]), within a small factor of the real heap use: a response
    /// of many tiny JSON values weighs several times its wire size, as it costs.
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

    /// Serves a positive verdict up to `grace` after its entry ended while the authorization server
    /// is unavailable (default `Duration::ZERO`: off). Opt-in: see the trade-off below.
    ///
    /// When a request's verdict has ended and the call that should renew it fails because the
    /// server is unavailable (unreachable, 5xx, timeout, `429`), the ended verdict is served
    /// instead of a 503 if it ended less than `grace` ago and the token's `exp` has not passed;
    /// each such request is counted in [`CacheStats::stale_serves`]. Otherwise the request gets
    /// 503 as without this setting. Invalidated verdicts are gone and never served.
    ///
    /// The price is revocation: during an outage, a token revoked at the server keeps working here
    /// up to `max_ttl + grace` after it was last checked (instead of `max_ttl`), since nobody can
    /// tell us it was revoked. Entries are kept `grace` longer, so the cache holds more of them
    /// for the same traffic.
    pub fn stale_if_error(mut self, grace: Duration) -> Self {
        self.stale_if_error = grace;
        self
    }

    /// How many revocations pushed by the authorization server (see `ssf`) the cache remembers
    /// so that a locally verified JWT they name is not accepted again (default
    /// [`DEFAULT_REVOCATION_CAPACITY`], about 100 bytes each). When full, the oldest is forgotten
    /// first, logged and counted.
    pub fn revocation_capacity(mut self, entries: usize) -> Self {
        self.revocation_capacity = entries;
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
    /// With when it stops being fresh when stale-if-error is on (the entry then lives
    /// `stale_if_error` longer, to be served only while the server is unavailable); `None` when
    /// the entry's end is the verdict's.
    Valid(Principal, Option<FreshUntil>),
    Invalid(InvalidToken),
}

/// When a positive verdict stops being fresh: whole seconds since the cache's epoch, rounded down
/// (never later than its true end), plus one. Four bytes, so that an entry costs no more with
/// stale-if-error than without.
#[derive(Clone, Copy)]
struct FreshUntil(NonZeroU32);

impl FreshUntil {
    fn new(epoch: Instant, end: Instant) -> Self {
        let seconds = end.saturating_duration_since(epoch).as_secs();
        let encoded = u32::try_from(seconds).unwrap_or(u32::MAX - 1) + 1;
        Self(NonZeroU32::new(encoded).expect("plus one"))
    }

    fn instant(self, epoch: Instant) -> Instant {
        epoch + Duration::from_secs(u64::from(self.0.get() - 1))
    }
}

/// Gives each entry its own lifetime, from its verdict.
struct VerdictExpiry(CacheConfig, Instant);

impl Expiry<TokenKey, Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        verdict: &Verdict,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            Verdict::Valid(_, Some(fresh_until)) => {
                fresh_until
                    .instant(self.1)
                    .saturating_duration_since(created_at)
                    + self.0.stale_if_error
            }
            Verdict::Valid(principal, None) => self.0.positive_ttl(principal, SystemTime::now()),
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
    /// Of those misses, how many waited for a call already in flight for the same token instead
    /// of starting one (single flight).
    pub coalesced: u64,
    /// Calls made to the inner verifier (introspection calls, for an [`Introspector`](crate::Introspector)).
    pub introspection_calls: u64,
    /// Of those calls, how many failed because the server was unavailable (or throttled us).
    pub server_errors: u64,
    /// Requests answered from an ended positive verdict because the server was unavailable
    /// ([`CacheConfig::stale_if_error`]).
    pub stale_serves: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    introspection_calls: AtomicU64,
    server_errors: AtomicU64,
    stale_serves: AtomicU64,
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
/// entry ends (at most `max_ttl`), unless you call [`CachedVerifier::invalidate`] (or
/// [`invalidate_subject`](CachedVerifier::invalidate_subject),
/// [`invalidate_client`](CachedVerifier::invalidate_client)). An invalidation
/// wins over a call already in flight for that token: its answer, which may predate the revocation,
/// is handed to the requests that were already waiting for it but is never cached, and requests
/// arriving after the invalidation start a new call.
///
/// Clones share the cache and the counters: keep one as a handle to invalidate entries or read
/// statistics while the layer uses another.
pub struct CachedVerifier<V> {
    state: Arc<State<V>>,
}

/// What every clone of a [`CachedVerifier`] shares.
struct State<V> {
    inner: V,
    cache: Cache<TokenKey, Verdict, KeyHashing>,
    /// The calls in flight, by token key: where concurrent misses of one token meet (single
    /// flight), and what an invalidation cancels. Publishing a result and invalidating both happen
    /// under this lock, so one always sees the other. Never held across an `.await`; bounded by the
    /// number of distinct tokens being verified at once.
    flights: Mutex<HashMap<TokenKey, Flight>>,
    next_flight: AtomicU64,
    counters: Counters,
    /// The settings: the lifetime of new positive verdicts, and the stale-if-error grace.
    config: CacheConfig,
    /// What [`FreshUntil`] counts from.
    epoch: Instant,
    /// The positive verdicts by subject, email, token id and session, for revocation events: made
    /// when an event receiver first acts on this cache (see `index_identifiers`), absent before
    /// (invalidations then walk the cache, and entries cost nothing more).
    index: OnceLock<SubjectIndex>,
    /// Whether `index` exists, for the weigher of byte-bounded caches.
    indexed: Arc<AtomicBool>,
    /// Revocations pushed by the authorization server, held against fresh verdicts.
    revocations: Revocations,
}

/// The outcome of a call, shared by every request waiting for it: a verdict, or the reason the
/// server could not give one (never [`VerifyError::Invalid`], which is a verdict).
type FlightOutcome = Result<Verdict, VerifyError>;

/// A call of the inner verifier, shareable by every request that misses the same key meanwhile.
type Call = Shared<Pin<Box<dyn Future<Output = FlightOutcome> + Send>>>;

/// One call to the inner verifier, awaited by every request that missed the same key meanwhile.
struct Flight {
    /// Tells this call from a later one for the same key.
    id: u64,
    /// Weak, so that the table never keeps a call alive: when every waiting request is gone (the
    /// clients hung up), the call is dropped and its guard removes this entry.
    call: WeakShared<Pin<Box<dyn Future<Output = FlightOutcome> + Send>>>,
}

impl<V> State<V> {
    fn flights(&self) -> MutexGuard<'_, HashMap<TokenKey, Flight>> {
        // The map stays consistent even if a holder panicked: every critical section is one
        // insert or remove.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a flight from the table when its call ends or is abandoned (every waiter gone), unless an
/// invalidation or a newer call replaced it.
struct FlightGuard<V> {
    state: Arc<State<V>>,
    key: TokenKey,
    id: u64,
}

impl<V> Drop for FlightGuard<V> {
    fn drop(&mut self) {
        let mut flights = self.state.flights();
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

impl<V> Clone for CachedVerifier<V> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<V> fmt::Debug for CachedVerifier<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedVerifier")
            .field("entries", &self.state.cache.entry_count())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// Caches the verdicts of `inner` as configured.
    pub fn new(inner: V, config: CacheConfig) -> Self {
        let builder = Cache::builder().max_capacity(config.max_capacity);
        let indexed = Arc::new(AtomicBool::new(false));
        let builder = if config.weigh_bytes {
            let indexed = indexed.clone();
            builder.weigher(move |_key: &TokenKey, verdict: &Verdict| {
                verdict.weight(indexed.load(Ordering::Relaxed))
            })
        } else {
            builder
        };
        let epoch = Instant::now();
        let cache = builder
            .expire_after(VerdictExpiry(config.clone(), epoch))
            .build_with_hasher(KeyHashing::new());
        Self {
            state: Arc::new(State {
                inner,
                cache,
                flights: Mutex::default(),
                next_flight: AtomicU64::new(0),
                counters: Counters::default(),
                epoch,
                index: OnceLock::new(),
                indexed,
                revocations: Revocations::new(config.revocation_capacity),
                config,
            }),
        }
    }
}

impl<V> CachedVerifier<V> {
    /// The wrapped verifier.
    pub fn inner(&self) -> &V {
        &self.state.inner
    }

    /// Forgets the verdict for `token` (e.g. after revoking it), so the next request asks again.
    ///
    /// A call for `token` already in flight is not cached when it ends, and requests from now on
    /// do not wait for it: they start a new call.
    pub fn invalidate(&self, token: &str) {
        let key = token_key(token);
        let state = &*self.state;
        let mut flights = state.flights();
        flights.remove(&key);
        state.cache.invalidate(&key);
    }

    /// Forgets every verdict, and every call in flight (as [`invalidate`](Self::invalidate) does
    /// for one token).
    pub fn invalidate_all(&self) {
        let state = &*self.state;
        let mut flights = state.flights();
        flights.clear();
        state.cache.invalidate_all();
        if let Some(index) = state.index.get() {
            index.clear();
        }
    }

    /// Forgets every positive verdict for the subject `sub` of the issuer `iss` (e.g. when that
    /// user is disabled), so their next requests ask the authorization server again. Returns how
    /// many verdicts were forgotten.
    ///
    /// A verdict without an `iss` claim is forgotten when its subject matches: when in doubt, an
    /// invalidation removes more, never less. Like [`invalidate_all`](Self::invalidate_all), it
    /// wins over every call in flight (whose subject is not known before it answers): their
    /// answers reach the requests already waiting but are not cached, and later requests ask
    /// again. Negative verdicts grant nothing and stay.
    ///
    /// When it returns, no matching verdict is served any more. It walks every entry once
    /// (milliseconds for 100,000), which suits revocation events and adds nothing to lookups;
    /// once an event receiver (`ssf::SsfReceiver`) acts on this cache, the cache keeps an index by
    /// subject, email, token id and session instead, and this costs what the matching verdicts
    /// cost.
    pub fn invalidate_subject(&self, iss: &str, sub: &str) -> usize {
        self.invalidate_identified(Identifier::Subject(Some(iss), sub), false)
    }

    /// Forgets every positive verdict for tokens issued to the client `client_id` (e.g. when that
    /// client is compromised), with the guarantees of
    /// [`invalidate_subject`](Self::invalidate_subject). Returns how many verdicts were forgotten.
    ///
    /// Clients are not indexed (one client's tokens are often most of the cache, and clients are
    /// rarely revoked): this walks every entry once, milliseconds for 100,000 entries, and adds
    /// nothing to lookups.
    pub fn invalidate_client(&self, client_id: &str) -> usize {
        let state = &*self.state;
        // As in `invalidate_identified`: once the table is cleared, no call that started before
        // can cache its verdict, so the walk sees every verdict that could match.
        state.flights().clear();
        let mut forgotten = 0;
        for (key, verdict) in &state.cache {
            if let Verdict::Valid(principal, _) = &verdict
                && principal.client_id() == Some(client_id)
            {
                state.cache.invalidate(&*key);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Forgets the positive verdict for the token whose `jti` is `jti` as issued by `iss` (e.g. a
    /// revocation event naming the token), with the guarantees and costs of
    /// [`invalidate_subject`](Self::invalidate_subject). Introspection responses and JWT access
    /// tokens both carry `jti` when the authorization server assigns one.
    pub fn invalidate_token_id(&self, iss: &str, jti: &str) -> usize {
        self.invalidate_identified(Identifier::TokenId(Some(iss), jti), false)
    }

    /// Forgets every positive verdict whose `sid` claim (the authorization server's session, or
    /// grant) is `sid` as issued by `iss`, with the guarantees and costs of
    /// [`invalidate_subject`](Self::invalidate_subject).
    pub fn invalidate_session(&self, iss: &str, sid: &str) -> usize {
        self.invalidate_identified(Identifier::Session(Some(iss), sid), false)
    }

    /// Forgets every positive verdict whose `email` claim is `email` (compared without regard to
    /// ASCII case, so that no spelling of an address escapes), whatever its issuer, with the
    /// guarantees and costs of [`invalidate_subject`](Self::invalidate_subject).
    pub fn invalidate_email(&self, email: &str) -> usize {
        self.invalidate_identified(Identifier::Email(email), false)
    }

    #[cfg_attr(not(feature = "ssf"), allow(dead_code))]
    /// Remembers that the authorization server revoked what `identifier` names (with `reach`)
    /// for `remember`, so that a freshly verified principal it covers is refused; then forgets
    /// the cached verdicts it names, as [`invalidate_identified`](Self::invalidate_identified).
    pub(crate) fn revoke_identified(
        &self,
        identifier: Identifier<'_>,
        reach: Reach,
        only_without_session: bool,
        remember: Duration,
    ) -> usize {
        let now = crate::introspection::unix_now();
        let forget_at = now.saturating_add(i64::try_from(remember.as_secs()).unwrap_or(i64::MAX));
        // Before the verdicts go: a call that ends in between is refused by this, or started
        // before it and is cancelled below.
        let sessions = if only_without_session {
            Sessions::OnlyUnnamed
        } else {
            Sessions::All
        };
        self.state
            .revocations
            .record(identifier, sessions, reach, now, forget_at);
        self.invalidate_identified(identifier, only_without_session)
    }

    /// Revocations forgotten before their time because the cache's revocation memory was full
    /// ([`CacheConfig::revocation_capacity`]).
    pub fn revocations_forgotten_early(&self) -> u64 {
        self.state.revocations.evicted_early()
    }

    /// Forgets the positive verdicts `identifier` names (only those whose principal names no
    /// session, `sid`, when `only_without_session`), and every call in flight.
    pub(crate) fn invalidate_identified(
        &self,
        identifier: Identifier<'_>,
        only_without_session: bool,
    ) -> usize {
        let state = &*self.state;
        let spared =
            |principal: &Principal| only_without_session && principal.claim("sid").is_some();
        // Verdicts enter the cache (and then the index) only from a current flight, under this
        // lock. Once the table is cleared, every call that started before this point is no
        // longer current and never caches its verdict, so the lookup or walk below sees every
        // verdict that could match.
        state.flights().clear();
        let Some(index) = state.index.get() else {
            let mut forgotten = 0;
            for (key, verdict) in &state.cache {
                if let Verdict::Valid(principal, _) = &verdict
                    && identifier.names(principal)
                    && !spared(principal)
                {
                    state.cache.invalidate(&*key);
                    forgotten += 1;
                }
            }
            return forgotten;
        };
        index
            .keys(identifier)
            .into_iter()
            .filter(|key| {
                if let Some(Verdict::Valid(principal, _)) = state.cache.get(key)
                    && spared(&principal)
                {
                    return false;
                }
                matches!(state.cache.remove(key), Some(Verdict::Valid(..)))
            })
            .count()
    }

    /// Keeps an index of the positive verdicts by subject, email, token id and session from now
    /// on (built from what the cache holds), so that invalidations by those identifiers cost no
    /// walk: for event receivers, which may invalidate often. It costs about 60–120 bytes per
    /// identifier of each entry, weighed by [`CacheConfig::max_bytes`].
    #[cfg_attr(not(feature = "ssf"), allow(dead_code))]
    pub(crate) fn index_identifiers(&self) {
        let state = &*self.state;
        // Verdicts enter the cache only under this lock: none is missed while the index is built.
        let _flights = state.flights();
        state.index.get_or_init(|| {
            let index = SubjectIndex::default();
            index.rebuild(Self::valid_entries(state));
            state.indexed.store(true, Ordering::Relaxed);
            index
        });
    }

    /// The positive verdicts held, with their keys.
    fn valid_entries(state: &State<V>) -> Box<dyn Iterator<Item = (TokenKey, Principal)> + '_> {
        Box::new(
            state
                .cache
                .iter()
                .filter_map(|(key, verdict)| match verdict {
                    Verdict::Valid(principal, _) => Some((*key, principal)),
                    Verdict::Invalid(_) => None,
                }),
        )
    }

    /// Entries currently held (approximate until pending maintenance has run; see
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.state.cache.entry_count()
    }

    /// Runs the cache's pending maintenance (evictions, expirations) now. Useful in tests and
    /// before reading [`entry_count`](Self::entry_count).
    pub fn run_pending_tasks(&self) {
        self.state.cache.run_pending_tasks();
    }

    /// The approximate memory the entries hold, in the unit of [`CacheConfig::max_bytes`] (or the
    /// entry count when the cache is bounded by entries). Approximate until pending maintenance has
    /// run.
    pub fn weighted_size(&self) -> u64 {
        self.state.cache.weighted_size()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.state.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            introspection_calls: c.introspection_calls.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            stale_serves: c.stale_serves.load(Ordering::Relaxed),
        }
    }
}

impl<V: TokenVerifier> TokenVerifier for CachedVerifier<V> {
    /// A hit, without a future: the warm path of [`BearerAuth`](crate::layer::BearerAuth).
    fn verify_cached(&self, token: &str) -> Option<Result<Principal, VerifyError>> {
        self.hit(&token_key(token)).map(Verdict::into_result)
    }

    fn would_call(&self, token: &str) -> bool {
        let key = token_key(token);
        self.hit(&key).is_none()
            && self
                .state
                .flights()
                .get(&key)
                .and_then(|flight| flight.call.upgrade())
                .is_none()
    }

    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let key = token_key(token);
        let state = &*self.state;
        if let Some(verdict) = self.hit(&key) {
            return verdict.into_result();
        }
        let call = {
            let mut flights = state.flights();
            // A call may have ended between the lookup above and the lock.
            if let Some(verdict) = self.hit(&key) {
                return verdict.into_result();
            }
            bump(&state.counters.misses);
            match flights.get(&key).and_then(|flight| flight.call.upgrade()) {
                Some(call) => {
                    bump(&state.counters.coalesced);
                    metrics::cache_lookup(Lookup::Coalesced);
                    call
                }
                None => {
                    metrics::cache_lookup(Lookup::Miss);
                    let (flight, call) = self.start_flight(key, token);
                    flights.insert(key, flight);
                    call
                }
            }
        };
        match call.await {
            Ok(verdict) => verdict.into_result(),
            Err(unavailable) => self.stale(&key).ok_or(unavailable),
        }
    }
}

impl<V: TokenVerifier> CachedVerifier<V> {
    /// The cached verdict for `key`, counted; not an ended one kept for stale-if-error.
    fn hit(&self, key: &TokenKey) -> Option<Verdict> {
        let verdict = self.state.cache.get(key)?;
        let counters = &self.state.counters;
        match &verdict {
            Verdict::Valid(_, Some(fresh_until))
                if Instant::now() >= fresh_until.instant(self.state.epoch) =>
            {
                return None;
            }
            Verdict::Valid(..) => {
                bump(&counters.hits);
                metrics::cache_lookup(Lookup::Hit);
            }
            Verdict::Invalid(_) => {
                bump(&counters.negative_hits);
                metrics::cache_lookup(Lookup::NegativeHit);
            }
        }
        Some(verdict)
    }

    /// The ended positive verdict for `key` that stale-if-error may serve while the server is
    /// unavailable: ended less than the grace ago, and its token not expired. Counted.
    fn stale(&self, key: &TokenKey) -> Option<Principal> {
        let state = &*self.state;
        if state.config.stale_if_error.is_zero() {
            return None;
        }
        let Some(Verdict::Valid(principal, Some(fresh_until))) = state.cache.get(key) else {
            return None;
        };
        let within_grace =
            Instant::now() < fresh_until.instant(state.epoch) + state.config.stale_if_error;
        let unexpired = principal
            .expires_at()
            .is_none_or(|exp| exp > SystemTime::now());
        if !(within_grace && unexpired) {
            return None;
        }
        bump(&state.counters.stale_serves);
        metrics::stale_serve();
        tracing::warn!(
            token = %fingerprint(key),
            "authorization server unavailable: serving an ended verdict (stale-if-error)"
        );
        Some(principal)
    }

    /// A call of the inner verifier for `token` that caches its verdict when it ends, unless its
    /// flight was invalidated meanwhile; and its entry for the flight table.
    fn start_flight(&self, key: TokenKey, token: &str) -> (Flight, Call) {
        let state = self.state.clone();
        let id = state.next_flight.fetch_add(1, Ordering::Relaxed);
        // The token lives only as long as the call needs it; the cache keeps its hash.
        let token = token.to_owned();
        let call = async move {
            let guard = FlightGuard { state, key, id };
            let state = &*guard.state;
            bump(&state.counters.introspection_calls);
            let outcome = match state.inner.verify(&token).await {
                // A revocation pushed by the authorization server names it: what a local check
                // (a JWT's signature) cannot see.
                Ok(principal)
                    if state
                        .revocations
                        .covers(&principal, crate::introspection::unix_now()) =>
                {
                    tracing::info!(token = %fingerprint(&key), "token refused: revoked by a security event");
                    Ok(Verdict::Invalid(InvalidToken::Inactive))
                }
                // The key rides along, so that a hit hands out a principal ready for the request.
                Ok(principal) => {
                    let fresh_until = (!state.config.stale_if_error.is_zero()).then(|| {
                        let ttl = state.config.positive_ttl(&principal, SystemTime::now());
                        FreshUntil::new(state.epoch, Instant::now() + ttl)
                    });
                    Ok(Verdict::Valid(principal.with_token_key(key), fresh_until))
                }
                Err(VerifyError::Invalid(reason)) => Ok(Verdict::Invalid(reason)),
                Err(unavailable) => {
                    bump(&state.counters.server_errors);
                    tracing::warn!(token = %fingerprint(&key), reason = %unavailable, "token verification unavailable");
                    Err(unavailable)
                }
            };
            let mut flights = state.flights();
            // Still the current flight: no invalidation since it started, so the verdict may be
            // cached. (The guard then finds nothing left to remove.)
            if flights.get(&key).is_some_and(|f| f.id == id) {
                flights.remove(&key);
                if let Ok(verdict) = &outcome {
                    state.cache.insert(key, verdict.clone());
                    if let Verdict::Valid(principal, _) = verdict
                        && let Some(index) = state.index.get()
                    {
                        index.enter(key, principal, state.cache.entry_count(), || {
                            Self::valid_entries(state)
                        });
                    }
                }
            }
            outcome
        };
        let call: Pin<Box<dyn Future<Output = FlightOutcome> + Send>> = Box::pin(call);
        let call = call.shared();
        let weak = call
            .downgrade()
            .expect("a call that was never polled has not completed");
        (Flight { id, call: weak }, call)
    }
}

/// Bytes an entry costs besides its claims: the key, moka's bookkeeping (entry, access and write
/// order nodes, timer wheel node, hash table slot) and the verdict. Measured with a counting
/// allocator (`tests/cache_weight.rs`): about 310 bytes for a small principal's entry.
const ENTRY_OVERHEAD_BYTES: usize = 320;

impl Verdict {
    /// The entry's approximate memory, for byte-bounded caches, with its slots in the index when
    /// the cache keeps one.
    fn weight(&self, indexed: bool) -> u32 {
        let claims = match self {
            Verdict::Valid(principal, _) => {
                principal.approximate_size() + if indexed { index::weight(principal) } else { 0 }
            }
            Verdict::Invalid(_) => 0,
        };
        u32::try_from(ENTRY_OVERHEAD_BYTES + claims).unwrap_or(u32::MAX)
    }

    fn into_result(self) -> Result<Principal, VerifyError> {
        match self {
            Verdict::Valid(principal, _) => Ok(principal),
            Verdict::Invalid(reason) => Err(VerifyError::Invalid(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenClaims;

    fn principal_expiring(exp: Option<SystemTime>) -> Principal {
        Principal::new(TokenClaims {
            expires_at: exp
                .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64),
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
    fn key_hashes_depend_on_every_byte_and_on_the_cache() {
        let hashing = KeyHashing::new();
        let key = token_key("abc");
        let base = hashing.hash_one(key);
        assert_eq!(hashing.hash_one(key), base, "deterministic within a cache");
        for byte in 0..32 {
            let mut changed = key;
            changed[byte] ^= 1;
            assert_ne!(hashing.hash_one(changed), base, "byte {byte} is ignored");
        }
        assert_ne!(KeyHashing::new().hash_one(key), base, "seeds are per cache");
    }

    #[test]
    fn keys_are_sha256_and_fingerprints_short() {
        let key = token_key("abc");
        assert_eq!(fingerprint(&key), "ba7816bf");
        assert_ne!(token_key("abc"), token_key("abd"));
    }
}
