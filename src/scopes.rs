//! [`Scopes`]: a set of OAuth scopes, split and compared as RFC 6749 §3.3 defines them.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::ConfigError;

/// A set of OAuth scopes (RFC 6749 §3.3).
///
/// Scopes are case-sensitive strings compared exactly: a granted `read-all` does not satisfy a
/// required `read`. Duplicates collapse (set semantics) and the order of the wire form is not kept.
///
/// The wire form is split on SP (U+0020) only, as RFC 6749 §3.3 defines it
/// (`scope = scope-token *( SP scope-token )`, `scope-token = 1*NQCHAR`). Other whitespace (TAB,
/// LF, NBSP…) is *not* a separator: `"tenant:x\tadmin"` is one odd token, never `admin`. A set
/// holding such a token is not [well formed](Self::is_well_formed); the introspector refuses a
/// token whose `scope` is not (`invalid_token`), and [`contains`](Self::contains) never matches a
/// needle outside NQCHAR, so an odd token can grant nothing.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Cow<'static, str>);
// The canonical wire form: sorted, deduplicated, single spaces. One allocation per set (a cache
// holds one per principal), and a scan of a handful of scopes is as fast as any lookup structure.

impl Scopes {
    /// The empty set, usable in constants.
    pub const EMPTY: Scopes = Scopes(Cow::Borrowed(""));

    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the space-delimited wire form (`"read write"`); runs of SP are tolerated because
    /// real servers emit them, and an empty string is an empty set. Only SP separates: any other
    /// character, whitespace or not, belongs to a token (see [`is_well_formed`](Self::is_well_formed)).
    pub fn parse(value: &str) -> Self {
        std::iter::once(value).collect()
    }

    /// Whether `scope` is a valid RFC 6749 §3.3 `scope-token`: one or more NQCHAR (visible ASCII
    /// other than `"` and `\\`).
    pub fn is_scope_token(scope: &str) -> bool {
        !scope.is_empty() && scope.bytes().all(is_nqchar)
    }

    /// Whether every scope of the set is a valid `scope-token` (see
    /// [`is_scope_token`](Self::is_scope_token)). The introspector refuses tokens whose granted
    /// scopes are not.
    pub fn is_well_formed(&self) -> bool {
        self.iter().all(Self::is_scope_token)
    }

    /// Scopes given by configuration to `setting` (a layer's or policy's requirement,
    /// advertised scopes), or the error naming the bad value.
    ///
    /// A scope that is not a valid `scope-token` would be a requirement no token can ever satisfy,
    /// or be shown mangled in a challenge; `offline_access` asks for a refresh token, not access
    /// to a resource, so it is never required by, advertised for, or named in a challenge of one.
    pub(crate) fn configured<I, T>(setting: &'static str, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let scopes: Scopes = scopes.into_iter().collect();
        if let Some(bad) = scopes.iter().find(|s| !Self::is_scope_token(s)) {
            return Err(ConfigError::Invalid {
                setting,
                reason: format!(
                    "{bad:?} is not a valid OAuth scope (RFC 6749 §3.3: printable ASCII other \
                     than space, '\"' and '\\')"
                ),
            });
        }
        if scopes.contains(crate::scope::OFFLINE_ACCESS) {
            return Err(ConfigError::Invalid {
                setting,
                reason: "\"offline_access\" asks for a refresh token, not access to a resource: \
                         it cannot be required, advertised or named in a challenge"
                    .into(),
            });
        }
        Ok(scopes)
    }

    /// Whether `scope` was granted (exact, case-sensitive match). Never true for a `scope` that is
    /// not a valid `scope-token`.
    pub fn contains(&self, scope: &str) -> bool {
        let needle = scope.as_bytes();
        Self::is_scope_token(scope) && self.0.as_bytes().split(|&b| b == b' ').any(|s| s == needle)
    }

    /// Whether every one of `required` was granted. An empty requirement is always met.
    pub fn contains_all<I, T>(&self, required: I) -> bool
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        required.into_iter().all(|s| self.contains(s.as_ref()))
    }

    /// Whether at least one of `candidates` was granted. An empty list is never met.
    pub fn contains_any<I, T>(&self, candidates: I) -> bool
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        candidates.into_iter().any(|s| self.contains(s.as_ref()))
    }

    /// The scopes in lexicographic order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// Number of distinct scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical wire form (sorted, space-separated), without allocating.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Heap bytes of the wire form.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.0 {
            Cow::Borrowed(_) => 0,
            Cow::Owned(s) => s.capacity(),
        }
    }

    /// The union of `self` and `other`.
    pub fn union(&self, other: &Scopes) -> Scopes {
        self.iter().chain(other.iter()).collect()
    }
}

/// `NQCHAR = %x21 / %x23-5B / %x5D-7E` (RFC 6749 Appendix A).
const fn is_nqchar(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Items are split on SP (the only scope separator), sorted and deduplicated.
impl<S: AsRef<str>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let owned: Vec<S> = iter.into_iter().collect();
        let mut scopes: Vec<&str> = owned
            .iter()
            .flat_map(|s| s.as_ref().split(' '))
            .filter(|s| !s.is_empty())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        Self(Cow::Owned(scopes.join(" ")))
    }
}

/// The space-delimited wire form, in lexicographic order.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tolerates_runs_of_spaces_and_empty() {
        assert!(Scopes::parse("").is_empty());
        assert!(Scopes::parse("   ").is_empty());
        let s = Scopes::parse("  write read  read  ");
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_string(), "read write");
        assert!(s.is_well_formed());
    }

    #[test]
    fn only_sp_separates_scopes() {
        for odd in [
            "tenant:x\tadmin",
            "tenant:x\nadmin",
            "tenant:x\u{a0}admin",
            "tenant:x\radmin",
            "tenant:x\u{3000}admin",
        ] {
            let s = Scopes::parse(odd);
            assert_eq!(s.len(), 1, "{odd:?}");
            assert!(!s.contains("admin"), "{odd:?}");
            assert!(!s.contains("tenant:x"), "{odd:?}");
            assert!(!s.contains(odd), "a needle outside NQCHAR never matches");
            assert!(!s.is_well_formed(), "{odd:?}");
        }
        let s: Scopes = ["read\twrite"].into_iter().collect();
        assert!(!s.contains("write") && !s.is_well_formed());
    }

    #[test]
    fn scope_tokens_are_nqchar() {
        assert!(Scopes::is_scope_token("mcp:tools.read/x!#[]~"));
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\tb", "a\u{7f}"] {
            assert!(!Scopes::is_scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn configured_scopes_must_be_scope_tokens_and_never_offline_access() {
        let error = Scopes::configured("scopes", ["read", "admin\t"]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("scopes: \"admin\\t\" is not a valid OAuth scope"),
            "{error}"
        );
        let error = Scopes::configured("scopes", ["offline_access"]).unwrap_err();
        assert!(error.to_string().contains("offline_access"), "{error}");
        assert_eq!(
            Scopes::configured("scopes", ["read", "write"]).unwrap(),
            Scopes::parse("read write")
        );
    }

    #[test]
    fn matching_is_exact() {
        let s = Scopes::parse("read-all Admin");
        assert!(!s.contains("read"));
        assert!(!s.contains("admin"));
        assert!(s.contains("Admin"));
        assert!(s.contains_all(["read-all", "Admin"]));
        assert!(!s.contains_all(["read-all", "write"]));
        assert!(s.contains_all(Vec::<String>::new()));
        assert!(s.contains_any(["x", "Admin"]));
        assert!(!s.contains_any(Vec::<&str>::new()));
    }
}
