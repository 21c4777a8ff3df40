//! The bounded store of one-time identifiers (`jti`) seen while their messages are still fresh:
//! DPoP proofs (RFC 9449 §11.1) and Security Event Tokens (RFC 8417 §4.1.2).
//!
//! A message is fresh while its `iat` is within the checker's window of now, so an identifier must
//! be remembered until `iat + window` and may be forgotten after. The store never forgets one
//! earlier: when it is full of identifiers that are all still fresh, a new message is refused
//! (503, "try again") rather than an old identifier evicted, because an evicted identifier is a
//! replay that would pass.
//!
//! Identifiers live in namespaces (a DPoP key's thumbprint, a SET issuer): the same `jti` in two
//! namespaces is two entries. Each entry is a 128-bit hash of the namespace and the `jti` plus its
//! expiry second, so
//! the bound in entries is a bound in bytes whatever the identifiers' length (see
//! [`ReplayCache::max_bytes`]). Entries sit in shards, each under its own lock, and in per-second
//! expiry buckets, so expiring them costs no scan.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Default bound on remembered DPoP proofs. With the default ±5 min window an identifier is kept
/// about 5 minutes, so this sustains about 1,600 new proofs per second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 500_000;

/// Memory per entry, a generous estimate: the 16-byte hash and 8-byte expiry in the table (with
/// its control byte and load factor), and the hash again in its expiry bucket.
const BYTES_PER_ENTRY: usize = 64;

const SHARDS: usize = 16;

/// Why a proof identifier could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// Seen before, and its proof is still fresh.
    Replayed,
    /// Every slot holds an identifier whose proof is still fresh.
    Full,
}

/// The replay store: shards of hashed identifiers with per-second expiry.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    expiries: HashMap<u128, u64>,
    /// `buckets[i]` holds the entries that expire at second `first + i`.
    buckets: VecDeque<Vec<u128>>,
    first: u64,
}

impl ReplayCache {
    /// A store of at most `capacity` identifiers (rounded up to a multiple of the shard count).
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard,
        }
    }

    /// How many identifiers fit.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// An upper bound on the memory the store can take.
    pub(crate) fn max_bytes(&self) -> usize {
        self.capacity() * BYTES_PER_ENTRY
    }

    /// Identifiers currently remembered (expired ones included until their second is swept).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).expiries.len())
            .sum()
    }

    /// Records that `jti` was used in `namespace` (a DPoP key's thumbprint, a SET issuer), to be
    /// remembered until the Unix second `expires` (after `now`).
    pub(crate) fn record(
        &self,
        namespace: &str,
        jti: &str,
        expires: u64,
        now: u64,
    ) -> Result<(), RecordError> {
        let key = entry_key(namespace, jti);
        let shard = &self.shards[(key as usize) % SHARDS];
        // A panic while holding the lock leaves the shard consistent (every mutation below is
        // completed before anything can panic), so a poisoned lock is still usable.
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.expire(now);
        if let Some(&until) = shard.expiries.get(&key)
            && until >= now
        {
            return Err(RecordError::Replayed);
        }
        if shard.expiries.len() >= self.per_shard {
            return Err(RecordError::Full);
        }
        shard.insert(key, expires.max(now));
        Ok(())
    }
}

impl Shard {
    /// Forgets every entry whose second has passed.
    fn expire(&mut self, now: u64) {
        while self.first < now {
            match self.buckets.pop_front() {
                Some(bucket) => {
                    for key in bucket {
                        // A key re-recorded later (after it expired) lives in a later bucket.
                        if self.expiries.get(&key).is_some_and(|&until| until < now) {
                            self.expiries.remove(&key);
                        }
                    }
                    self.first += 1;
                }
                None => {
                    self.first = now;
                    return;
                }
            }
        }
    }

    fn insert(&mut self, key: u128, expires: u64) {
        if self.buckets.is_empty() {
            self.first = expires;
        }
        // Buckets before the first one are added in front. Expiry is bounded by the checker's
        // window, so the deque is too.
        while expires < self.first {
            self.buckets.push_front(Vec::new());
            self.first -= 1;
        }
        let index = usize::try_from(expires - self.first).unwrap_or(usize::MAX);
        if index >= self.buckets.len() {
            self.buckets.resize_with(index + 1, Vec::new);
        }
        self.buckets[index].push(key);
        self.expiries.insert(key, expires);
    }
}

/// The entry for (`namespace`, `jti`): 128 bits of SHA-256 over both, length-prefixed so that no
/// two pairs share an encoding.
fn entry_key(namespace: &str, jti: &str) -> u128 {
    let mut hash = Sha256::new();
    hash.update((namespace.len() as u64).to_be_bytes());
    hash.update(namespace.as_bytes());
    hash.update(jti.as_bytes());
    let digest = hash.finalize();
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_replay_is_refused_until_the_proof_expires() {
        let cache = ReplayCache::new(64);
        cache.record("k", "a", NOW + 300, NOW).unwrap();
        assert_eq!(
            cache.record("k", "a", NOW + 300, NOW),
            Err(RecordError::Replayed)
        );
        assert_eq!(
            cache.record("k", "a", NOW + 300, NOW + 300),
            Err(RecordError::Replayed),
            "still fresh at its last second"
        );
        // Another key may use the same jti.
        cache.record("other", "a", NOW + 300, NOW).unwrap();
        // Expired: forgotten, and may be recorded again.
        cache.record("k", "a", NOW + 700, NOW + 301).unwrap();
        assert_eq!(
            cache.record("k", "a", NOW + 700, NOW + 650),
            Err(RecordError::Replayed)
        );
    }

    #[test]
    fn a_full_store_refuses_rather_than_forgets_and_frees_space_as_proofs_expire() {
        let cache = ReplayCache::new(16 * 4);
        let mut recorded = Vec::new();
        let mut full = 0;
        for i in 0..10_000 {
            let jti = format!("jti-{i}");
            match cache.record("k", &jti, NOW + 300, NOW) {
                Ok(()) => recorded.push(jti),
                Err(RecordError::Full) => full += 1,
                Err(RecordError::Replayed) => panic!("{jti} was never used"),
            }
        }
        assert_eq!(recorded.len(), cache.capacity());
        assert_eq!(full, 10_000 - cache.capacity());
        assert!(cache.len() <= cache.capacity());
        // Nothing recorded was forgotten.
        for jti in &recorded {
            assert_eq!(
                cache.record("k", jti, NOW + 300, NOW + 10),
                Err(RecordError::Replayed)
            );
        }
        // Once the proofs expire, there is room again (each shard sweeps when next touched).
        let again = (0..10_000)
            .filter(|i| {
                cache
                    .record("k", &format!("late-{i}"), NOW + 900, NOW + 301)
                    .is_ok()
            })
            .count();
        assert_eq!(again, cache.capacity());
    }

    #[test]
    fn bounds_are_reported() {
        let cache = ReplayCache::new(1000);
        assert_eq!(cache.capacity(), 1008);
        assert_eq!(cache.max_bytes(), 1008 * BYTES_PER_ENTRY);
    }

    #[test]
    fn entry_keys_do_not_collide_across_the_boundary() {
        assert_ne!(entry_key("ab", "c"), entry_key("a", "bc"));
    }
}
