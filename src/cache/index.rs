//! Which cached verdicts belong to a subject, an email address, a token identifier or a session:
//! the lookup that lets a revocation event reach its verdicts without walking the cache.
//!
//! Every positive verdict is entered under each identifier its principal carries when it is
//! cached. An entry is never removed when its verdict leaves the cache (moka's removal order is not
//! ours to rely on); instead the whole index is rebuilt from the cache once it holds twice as
//! many references as the cache has entries, so it stays bounded by the cache and costs, amortized,
//! a constant per miss. A stale reference costs nothing but an invalidation of a key that is no
//! longer there.
//!
//! Identifiers are kept as 128-bit hashes (with their kind and length-prefixed fields), so the
//! index holds no claim text and an entry weighs the same whatever the identifier's length.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

use super::TokenKey;
use crate::Principal;

/// References the index may hold beyond twice the cache's entries before it is rebuilt, so that a
/// nearly empty cache is not rebuilt on every miss.
const REBUILD_SLACK: usize = 1024;

/// One identifier a revocation can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identifier<'a> {
    /// `sub` as issued by `iss` (`None`: a verdict whose principal names no issuer).
    Subject(Option<&'a str>, &'a str),
    /// The `email` claim, compared without regard to ASCII case.
    Email(&'a str),
    /// The token's `jti` as issued by `iss`.
    TokenId(Option<&'a str>, &'a str),
    /// The `sid` claim (the authorization server's session, or grant) as issued by `iss`.
    Session(Option<&'a str>, &'a str),
}

impl Identifier<'_> {
    /// The identifiers `principal` is entered under.
    pub(crate) fn of(principal: &Principal) -> impl Iterator<Item = Identifier<'_>> {
        let iss = principal.issuer();
        let text = |name| principal.claim(name).and_then(serde_json::Value::as_str);
        [
            principal.subject().map(|sub| Identifier::Subject(iss, sub)),
            text("email").map(Identifier::Email),
            principal
                .token_id()
                .map(|jti| Identifier::TokenId(iss, jti)),
            text("sid").map(|sid| Identifier::Session(iss, sid)),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether a revocation naming `self` reaches `principal`: what the index finds, read from
    /// the principal itself (for caches that keep no index).
    pub(crate) fn names(self, principal: &Principal) -> bool {
        let issuer_fits = |iss: Option<&str>| {
            iss.is_none_or(|iss| principal.issuer().is_none_or(|own| own == iss))
        };
        let text = |name| principal.claim(name).and_then(serde_json::Value::as_str);
        match self {
            Identifier::Subject(iss, sub) => principal.subject() == Some(sub) && issuer_fits(iss),
            Identifier::Email(email) => {
                text("email").is_some_and(|own| own.eq_ignore_ascii_case(email))
            }
            Identifier::TokenId(iss, jti) => principal.token_id() == Some(jti) && issuer_fits(iss),
            Identifier::Session(iss, sid) => text("sid") == Some(sid) && issuer_fits(iss),
        }
    }

    /// The hashes to look up for a revocation naming `self`: an identifier issued by a given
    /// issuer also reaches principals that name no issuer (when in doubt, a revocation removes
    /// more, never less).
    pub(crate) fn lookups(self) -> impl Iterator<Item = IdentifierHash> {
        let without_issuer = match self {
            Identifier::Subject(Some(_), sub) => Some(Identifier::Subject(None, sub)),
            Identifier::TokenId(Some(_), jti) => Some(Identifier::TokenId(None, jti)),
            Identifier::Session(Some(_), sid) => Some(Identifier::Session(None, sid)),
            _ => None,
        };
        [
            Some(IdentifierHash::of(self)),
            without_issuer.map(IdentifierHash::of),
        ]
        .into_iter()
        .flatten()
    }
}

/// An identifier reduced to its hash: what the index is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct IdentifierHash(u128);

impl IdentifierHash {
    pub(crate) fn of(identifier: Identifier<'_>) -> Self {
        fn field(hash: &mut Sha256, text: &str) {
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
        let mut hash = Sha256::new();
        let (kind, issuer, value) = match identifier {
            Identifier::Subject(iss, sub) => ("sub", iss, sub),
            Identifier::Email(email) => ("email", None, email),
            Identifier::TokenId(iss, jti) => ("jti", iss, jti),
            Identifier::Session(iss, sid) => ("sid", iss, sid),
        };
        field(&mut hash, kind);
        match issuer {
            Some(iss) => field(&mut hash, iss),
            // No issuer is not the empty issuer.
            None => hash.update([0xff]),
        }
        if let Identifier::Email(email) = identifier {
            field(&mut hash, &email.to_ascii_lowercase());
        } else {
            field(&mut hash, value);
        }
        let digest = hash.finalize();
        Self(u128::from_be_bytes(
            digest[..16].try_into().expect("16 bytes"),
        ))
    }
}

/// The index: identifier hashes to the keys of the verdicts cached under them.
#[derive(Debug, Default)]
pub(crate) struct SubjectIndex {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    keys: HashMap<IdentifierHash, Keys>,
    /// Sum of the sets' lengths.
    references: usize,
}

/// The keys under one identifier. Most identifiers (a token id, a session) name one token: it is
/// kept inline, with no allocation of its own.
#[derive(Debug)]
enum Keys {
    One(TokenKey),
    Many(HashSet<TokenKey>),
}

impl Keys {
    /// Adds `key`; false when it was there.
    fn insert(&mut self, key: TokenKey) -> bool {
        match self {
            Keys::One(one) if *one == key => false,
            Keys::One(one) => {
                *self = Keys::Many(HashSet::from([*one, key]));
                true
            }
            Keys::Many(many) => many.insert(key),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &TokenKey> {
        let (one, many) = match self {
            Keys::One(one) => (Some(one), None),
            Keys::Many(many) => (None, Some(many.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl Table {
    fn enter(&mut self, key: TokenKey, principal: &Principal) {
        for identifier in Identifier::of(principal) {
            let added = match self.keys.entry(IdentifierHash::of(identifier)) {
                std::collections::hash_map::Entry::Occupied(mut keys) => keys.get_mut().insert(key),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Keys::One(key));
                    true
                }
            };
            if added {
                self.references += 1;
            }
        }
    }
}

impl SubjectIndex {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every critical section leaves the table consistent before anything can panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters the verdict just cached under `key` for `principal`. `entries` and `cached` are the
    /// cache's entry count and its contents, read only when the index must be rebuilt.
    ///
    /// Call it after the verdict is in the cache: a rebuild racing with it then sees the verdict
    /// in the cache, in the index, or both, never neither.
    pub(crate) fn enter<'c>(
        &self,
        key: TokenKey,
        principal: &Principal,
        entries: u64,
        cached: impl FnOnce() -> Box<dyn Iterator<Item = (TokenKey, Principal)> + 'c>,
    ) {
        let mut table = self.table();
        table.enter(key, principal);
        let bound = usize::try_from(entries)
            .unwrap_or(usize::MAX)
            .saturating_mul(2 * MAX_IDENTIFIERS)
            .saturating_add(REBUILD_SLACK);
        if table.references > bound {
            let mut rebuilt = Table::default();
            for (key, principal) in cached() {
                rebuilt.enter(key, &principal);
            }
            *table = rebuilt;
        }
    }

    /// Replaces the table with one built from `cached` (what the cache holds).
    pub(crate) fn rebuild(&self, cached: impl Iterator<Item = (TokenKey, Principal)>) {
        let mut rebuilt = Table::default();
        for (key, principal) in cached {
            rebuilt.enter(key, &principal);
        }
        *self.table() = rebuilt;
    }

    /// The keys of the verdicts cached under `identifier` (and possibly of a few that have left
    /// the cache since).
    pub(crate) fn keys(&self, identifier: Identifier<'_>) -> Vec<TokenKey> {
        let table = self.table();
        identifier
            .lookups()
            .filter_map(|hash| table.keys.get(&hash))
            .flat_map(Keys::iter)
            .copied()
            .collect()
    }

    /// Forgets everything (the cache was emptied).
    pub(crate) fn clear(&self) {
        *self.table() = Table::default();
    }

    /// References held, for tests of the bound.
    #[cfg(test)]
    pub(crate) fn references(&self) -> usize {
        self.table().references
    }
}

/// Most identifiers one principal is entered under (subject, email, token id, session).
const MAX_IDENTIFIERS: usize = 4;

/// Heap bytes the index holds for `principal`'s verdict, for byte-bounded caches: an identifier
/// that usually names one token (its id, its session) takes a table slot of its own; one that
/// names many (a subject, an email) mostly a slot in a shared set. Measured with a counting
/// allocator (`tests/cache_weight.rs`).
pub(crate) fn weight(principal: &Principal) -> usize {
    Identifier::of(principal)
        .map(|identifier| match identifier {
            Identifier::TokenId(..) | Identifier::Session(..) => 120,
            _ => 64,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenClaims;

    fn principal(iss: Option<&str>, sub: &str, extra: serde_json::Value) -> Principal {
        let serde_json::Value::Object(mut extra) = extra else {
            panic!("claims are an object")
        };
        let text = |v: serde_json::Value| v.as_str().map(str::to_owned);
        let claims = TokenClaims {
            issuer: iss.map(Into::into),
            subject: Some(sub.into()),
            token_id: extra.remove("jti").and_then(text),
            client_id: extra.remove("client_id").and_then(text),
            extra,
            ..TokenClaims::default()
        };
        Principal::new(claims)
    }

    fn key(n: u8) -> TokenKey {
        [n; 32]
    }

    fn enter(index: &SubjectIndex, key: TokenKey, principal: &Principal) {
        index.enter(key, principal, 1_000_000, || unreachable!("no rebuild"));
    }

    #[test]
    fn each_identifier_finds_its_verdicts_and_no_other() {
        let index = SubjectIndex::default();
        let alice = principal(
            Some("https://as"),
            "alice",
            serde_json::json!({"jti": "t1", "sid": "s1", "email": "Alice@Example.com", "client_id": "c1"}),
        );
        let bob = principal(Some("https://as"), "bob", serde_json::json!({"jti": "t2"}));
        enter(&index, key(1), &alice);
        enter(&index, key(2), &bob);
        let found = |identifier| index.keys(identifier);
        assert_eq!(
            found(Identifier::Subject(Some("https://as"), "alice")),
            [key(1)]
        );
        assert!(found(Identifier::Subject(Some("https://other"), "alice")).is_empty());
        assert_eq!(
            found(Identifier::TokenId(Some("https://as"), "t2")),
            [key(2)]
        );
        assert_eq!(
            found(Identifier::Session(Some("https://as"), "s1")),
            [key(1)]
        );
        assert_eq!(found(Identifier::Email("alice@EXAMPLE.com")), [key(1)]);
        // Fields do not run into each other.
        assert!(found(Identifier::Subject(Some("https://asalice"), "")).is_empty());
    }

    #[test]
    fn a_principal_without_an_issuer_is_reached_by_every_issuer() {
        let index = SubjectIndex::default();
        enter(
            &index,
            key(3),
            &principal(None, "carol", serde_json::json!({})),
        );
        assert_eq!(
            index.keys(Identifier::Subject(Some("https://any"), "carol")),
            [key(3)]
        );
    }

    #[test]
    fn the_index_is_rebuilt_from_the_cache_once_it_outgrows_it() {
        let index = SubjectIndex::default();
        let live = principal(Some("https://as"), "live", serde_json::json!({}));
        // The cache holds one entry; the index keeps references to many that left it.
        let mut rebuilds = 0;
        for n in 0..=u8::MAX {
            let gone = principal(
                Some("https://as"),
                &format!("user{n}"),
                serde_json::json!({}),
            );
            for round in 0..8_u8 {
                let mut k = key(n);
                k[0] = round;
                index.enter(k, &gone, 1, || {
                    rebuilds += 1;
                    Box::new(std::iter::once((key(0), live.clone())))
                });
            }
        }
        assert!(rebuilds > 0);
        assert!(index.references() <= 2 * MAX_IDENTIFIERS + REBUILD_SLACK);
        assert_eq!(
            index.keys(Identifier::Subject(Some("https://as"), "live")),
            [key(0)],
            "a rebuild keeps what the cache holds"
        );
    }
}
