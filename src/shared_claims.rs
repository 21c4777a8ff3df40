//! The claims that many tokens share (issuer, audiences, client, token type, scopes), interned so
//! that a cache of 100,000 principals holds each distinct combination once.
//!
//! Tokens of one client at one authorization server differ in their subject, id and times, and
//! repeat everything else: interning that part saves a few hundred bytes and several allocations
//! per cached principal. The table is bounded (entries and bytes), so a server answering with
//! ever-changing values cannot grow it: when it is full, unused entries are dropped, and if it is
//! still full the value is simply owned by its principal, as if it were not interned (and the
//! next scan waits for [`PRUNE_BACKOFF`] more such values).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::Scopes;

/// Most distinct combinations the table holds.
const MAX_ENTRIES: usize = 1024;
/// After a pruning that freed nothing, how many values are owned before the table is scanned
/// again: with more combinations in use than the table holds, a scan on every new principal
/// would cost each one a walk of the whole table under its lock.
const PRUNE_BACKOFF: u32 = (MAX_ENTRIES / 4) as u32;
/// Largest combination (bytes of text) worth interning; larger ones are owned by their principal,
/// so the table holds at most `MAX_ENTRIES × MAX_ENTRY_TEXT` bytes of text.
const MAX_ENTRY_TEXT: usize = 1024;

/// The shared part of a principal's claims.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SharedClaims {
    pub(crate) iss: Option<Box<str>>,
    pub(crate) client_id: Option<Box<str>>,
    pub(crate) token_type: Option<Box<str>>,
    pub(crate) scope: Scopes,
    pub(crate) aud: Box<[String]>,
}

impl SharedClaims {
    /// Bytes of text held (the strings' lengths).
    fn text_bytes(&self) -> usize {
        let text = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
        text(&self.iss)
            + text(&self.client_id)
            + text(&self.token_type)
            + self.scope.heap_bytes()
            + self.aud.iter().map(String::len).sum::<usize>()
    }

    /// Approximate heap bytes of one copy: the `Arc` allocation, its strings and the audience
    /// slice.
    pub(crate) fn heap_bytes(&self) -> usize {
        2 * size_of::<usize>()
            + size_of::<Self>()
            + self.text_bytes()
            + self.aud.len() * size_of::<String>()
    }

    /// The interned copy of `self`, or `self` in a new `Arc` when it is too large or the table is
    /// full of values still in use.
    pub(crate) fn intern(self) -> Arc<Self> {
        static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);
        if self.text_bytes() > MAX_ENTRY_TEXT {
            return Arc::new(self);
        }
        // Every critical section leaves the set consistent, so a panic elsewhere cannot corrupt it.
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(interned) = table.entries.get(&self) {
            return interned.clone();
        }
        if table.entries.len() >= MAX_ENTRIES {
            if table.owned_until_prune > 0 {
                table.owned_until_prune -= 1;
                return Arc::new(self);
            }
            // Only the table holds these: no principal uses them any more.
            table.entries.retain(|entry| Arc::strong_count(entry) > 1);
            if table.entries.len() >= MAX_ENTRIES {
                table.owned_until_prune = PRUNE_BACKOFF;
                return Arc::new(self);
            }
        }
        let interned = Arc::new(self);
        table.entries.insert(interned.clone());
        interned
    }
}

/// The interning table.
#[derive(Default)]
struct Table {
    entries: HashSet<Arc<SharedClaims>>,
    /// Values still to own, without scanning, before the next pruning (see [`PRUNE_BACKOFF`]).
    owned_until_prune: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(client: &str) -> SharedClaims {
        SharedClaims {
            iss: Some("https://as.example".into()),
            client_id: Some(client.into()),
            token_type: Some("Bearer".into()),
            scope: Scopes::parse("read write"),
            aud: vec!["https://rs.example".to_owned()].into(),
        }
    }

    #[test]
    fn equal_claims_share_one_allocation() {
        let a = claims("interned-once").intern();
        let b = claims("interned-once").intern();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &claims("another-client").intern()));
    }

    #[test]
    fn oversized_claims_are_owned_not_interned() {
        let big = claims(&"c".repeat(MAX_ENTRY_TEXT + 1));
        let a = big.clone().intern();
        let b = big.intern();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a, b);
    }

    #[test]
    fn a_full_table_drops_unused_entries_and_never_grows_past_its_bound() {
        // Values in use keep their entries; past the bound, new values are owned, still correct.
        let held: Vec<_> = (0..MAX_ENTRIES + 10)
            .map(|i| claims(&format!("bounded-{i}")).intern())
            .collect();
        let again = claims(&format!("bounded-{}", MAX_ENTRIES + 5)).intern();
        assert_eq!(*again, *held[MAX_ENTRIES + 5]);
        drop(held);
        // Once unused, the entries make room again: after at most the back-off, new values are
        // interned.
        let resumed = (0..=PRUNE_BACKOFF + 1).any(|i| {
            let value = claims(&format!("after-pruning-{i}"));
            Arc::ptr_eq(&value.clone().intern(), &value.intern())
        });
        assert!(resumed, "interning never resumed");
    }
}
