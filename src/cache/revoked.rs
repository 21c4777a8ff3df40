//! What revocation events said, remembered so that a verifier that cannot see revocation (a JWT
//! checked locally) does not accept a revoked token again once its verdict is forgotten.
//!
//! Forgetting a verdict is enough for introspection: the next call asks the authorization server,
//! which knows. A JWT's signature stays valid until `exp`, so a local check would cache it again
//! at once. The cache therefore remembers, for a bounded time, each revoked token (`iss` + `jti`)
//! and each revoked subject or session with the time of its revocation, and refuses a freshly
//! verified principal that one of them names: a revoked token always, a token of a revoked
//! subject or session when it was issued at or before the revocation (or names no `iat`). A
//! revocation may reach only the tokens that name no session (`sid`): the user part of a revoked
//! session, whose other sessions stay valid, while tokens that name no session may belong to it.
//!
//! Bounded in entries; each is kept for the configured memory (it only matters while a token
//! issued before it can still be unexpired). When full, the oldest entry goes first, counted and
//! logged.

// Recorded only by the `ssf` receiver; consulted always (empty without it).
#![cfg_attr(not(feature = "ssf"), allow(dead_code))]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::index::{Identifier, IdentifierHash};
use crate::Principal;

/// Default bound on remembered revocations.
pub const DEFAULT_REVOCATION_CAPACITY: usize = 100_000;

/// What a revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every token the identifier names (a token identifier: one token).
    Always,
    /// Tokens issued at or before this Unix second (a subject or a session: later logins are
    /// new grants).
    IssuedBy(i64),
}

#[derive(Debug)]
pub(crate) struct Revocations {
    state: Mutex<State>,
    capacity: usize,
    /// Set by the first record: until then, a miss checks nothing and takes no lock.
    used: AtomicBool,
}

/// What a remembered revocation is keyed by: the identifier, and whether it reaches only the
/// tokens that name no session.
type Key = (IdentifierHash, Sessions);

/// Which of the tokens an identifier names a revocation reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Sessions {
    /// Every one.
    All,
    /// Only those that name no session (`sid`).
    OnlyUnnamed,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, (Reach, i64)>,
    /// (forget at, key), in the order they were recorded.
    order: VecDeque<(i64, Key)>,
    evicted_early: u64,
}

impl Revocations {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            capacity: capacity.max(1),
            used: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that the tokens of `identifier` (of them, those `sessions` says) were revoked
    /// with `reach`, until the Unix second `forget_at`.
    pub(crate) fn record(
        &self,
        identifier: Identifier<'_>,
        sessions: Sessions,
        reach: Reach,
        now: i64,
        forget_at: i64,
    ) {
        let mut state = self.state();
        self.used.store(true, Ordering::Release);
        state.expire(now);
        for hash in identifier.lookups().map(|hash| (hash, sessions)) {
            if state.entries.len() >= self.capacity
                && !state.entries.contains_key(&hash)
                && let Some((_, oldest)) = state.order.pop_front()
            {
                state.entries.remove(&oldest);
                state.evicted_early += 1;
                tracing::error!(
                    capacity = self.capacity,
                    "revocation memory full: the oldest revocation is forgotten early"
                );
            }
            let merged = match state.entries.get(&hash) {
                // The wider reach and the later forgetting win.
                Some((old, until)) => (wider(*old, reach), (*until).max(forget_at)),
                None => (reach, forget_at),
            };
            state.entries.insert(hash, merged);
            state.order.push_back((forget_at, hash));
        }
    }

    /// Whether a revocation remembered at `now` covers `principal`.
    pub(crate) fn covers(&self, principal: &Principal, now: i64) -> bool {
        // A cache no receiver acts on never records anything: its misses skip the lock.
        if !self.used.load(Ordering::Acquire) {
            return false;
        }
        let mut state = self.state();
        state.expire(now);
        if state.entries.is_empty() {
            return false;
        }
        let issued_at = principal
            .issued_at()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let names_a_session = principal.claim("sid").is_some();
        Identifier::of(principal)
            .map(IdentifierHash::of)
            .flat_map(|hash| {
                let unnamed = (!names_a_session).then_some((hash, Sessions::OnlyUnnamed));
                [Some((hash, Sessions::All)), unnamed]
            })
            .flatten()
            .filter_map(|key| state.entries.get(&key))
            .any(|(reach, _)| match reach {
                Reach::Always => true,
                Reach::IssuedBy(at) => issued_at.is_none_or(|iat| iat <= *at),
            })
    }

    /// Revocations forgotten before their time because the memory was full.
    pub(crate) fn evicted_early(&self) -> u64 {
        self.state().evicted_early
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().entries.len()
    }
}

impl State {
    fn expire(&mut self, now: i64) {
        while let Some(&(forget_at, key)) = self.order.front() {
            if forget_at > now {
                break;
            }
            self.order.pop_front();
            // A later record of the same identifier extends it.
            if self
                .entries
                .get(&key)
                .is_some_and(|(_, until)| *until <= now)
            {
                self.entries.remove(&key);
            }
        }
    }
}

fn wider(a: Reach, b: Reach) -> Reach {
    match (a, b) {
        (Reach::Always, _) | (_, Reach::Always) => Reach::Always,
        (Reach::IssuedBy(x), Reach::IssuedBy(y)) => Reach::IssuedBy(x.max(y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenClaims;

    fn principal(sub: &str, jti: &str, iat: i64) -> Principal {
        Principal::new(TokenClaims {
            issuer: Some("https://as".into()),
            subject: Some(sub.into()),
            token_id: Some(jti.into()),
            issued_at: Some(iat),
            ..TokenClaims::default()
        })
    }

    #[test]
    fn a_revoked_token_is_covered_and_a_subjects_later_tokens_are_not() {
        let revoked = Revocations::new(100);
        revoked.record(
            Identifier::TokenId(Some("https://as"), "t1"),
            Sessions::All,
            Reach::Always,
            1000,
            2000,
        );
        revoked.record(
            Identifier::Subject(Some("https://as"), "bob"),
            Sessions::All,
            Reach::IssuedBy(1000),
            1000,
            2000,
        );
        assert!(revoked.covers(&principal("alice", "t1", 900), 1001));
        assert!(!revoked.covers(&principal("alice", "t2", 900), 1001));
        assert!(revoked.covers(&principal("bob", "t3", 1000), 1001));
        assert!(
            !revoked.covers(&principal("bob", "t4", 1001), 1002),
            "a later login"
        );
        // Forgotten after its time.
        assert!(!revoked.covers(&principal("alice", "t1", 900), 2000));
        assert_eq!(revoked.len(), 0);
    }

    fn in_session(sub: &str, jti: &str, iat: i64, sid: &str) -> Principal {
        let mut claims = TokenClaims {
            issuer: Some("https://as".into()),
            subject: Some(sub.into()),
            token_id: Some(jti.into()),
            issued_at: Some(iat),
            ..TokenClaims::default()
        };
        claims.extra.insert("sid".into(), sid.into());
        Principal::new(claims)
    }

    #[test]
    fn a_revocation_of_the_sessionless_tokens_spares_the_tokens_of_other_sessions() {
        let revoked = Revocations::new(100);
        // A revoked session of carol's: session s1, and her tokens that name no session.
        revoked.record(
            Identifier::Session(Some("https://as"), "s1"),
            Sessions::All,
            Reach::IssuedBy(1000),
            1000,
            2000,
        );
        revoked.record(
            Identifier::Subject(Some("https://as"), "carol"),
            Sessions::OnlyUnnamed,
            Reach::IssuedBy(1000),
            1000,
            2000,
        );
        let no_session = principal("carol", "t1", 900);
        assert!(revoked.covers(&no_session, 1001), "may belong to s1");
        assert!(revoked.covers(&in_session("carol", "t2", 900, "s1"), 1001));
        assert!(
            !revoked.covers(&in_session("carol", "t3", 900, "s2"), 1001),
            "another session of carol's"
        );
        assert!(
            !revoked.covers(&principal("carol", "t4", 1001), 1002),
            "a later login"
        );
        assert!(!revoked.covers(&principal("dave", "t5", 900), 1001));
        // The whole subject revoked as well: every session goes.
        revoked.record(
            Identifier::Subject(Some("https://as"), "carol"),
            Sessions::All,
            Reach::IssuedBy(1000),
            1000,
            2000,
        );
        assert!(revoked.covers(&in_session("carol", "t3", 900, "s2"), 1001));
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest_first() {
        let revoked = Revocations::new(10);
        for n in 0..20 {
            let jti = format!("t{n}");
            revoked.record(
                Identifier::TokenId(Some("https://as"), &jti),
                Sessions::All,
                Reach::Always,
                0,
                100,
            );
        }
        assert_eq!(revoked.len(), 10);
        assert!(revoked.evicted_early() > 0);
        assert!(revoked.covers(&principal("a", "t19", 0), 1));
        assert!(!revoked.covers(&principal("a", "t0", 0), 1));
    }
}
