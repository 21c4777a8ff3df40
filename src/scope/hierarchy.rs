//! [`ScopeHierarchy`]: when a granted scope satisfies a required one.
//!
//! MCP 2026-07-28 says servers "MUST account for scope hierarchies, where a broader scope implies
//! narrower ones": a tool requiring `repo:read` must accept a token carrying only `repo:admin`.
//! The specification defines no syntax, so the hierarchy is configuration: an explicit implication
//! map, and (discouraged) wildcard grants. Every scope check of this crate goes through one
//! hierarchy, the one configured on [`BearerAuthLayer::scope_hierarchy`](crate::BearerAuthLayer::scope_hierarchy),
//! which travels with the [`Principal`](crate::Principal) so that layers and handlers agree.
//!
//! Challenges keep naming the *narrow* required scopes: a client asked for `repo:read` gets the
//! least privilege that works.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::Scopes;

/// Which granted scopes satisfy which required ones. The default matches exactly.
///
/// ```
/// use tower_introspect::Scopes;
/// use tower_introspect::scope::ScopeHierarchy;
///
/// let hierarchy = ScopeHierarchy::builder()
///     .implies("repo:admin", ["repo:write"])
///     .implies("repo:write", ["repo:read"])
///     .build()
///     .unwrap();
/// let granted = Scopes::parse("repo:admin");
/// assert!(hierarchy.satisfies_all(&granted, ["repo:read"]));
/// assert!(!ScopeHierarchy::exact().satisfies_all(&granted, ["repo:read"]));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScopeHierarchy {
    /// Each broad scope with every scope it implies, transitively (itself excluded).
    implied: BTreeMap<String, BTreeSet<String>>,
    wildcards: bool,
}

impl ScopeHierarchy {
    /// Exact matching, as a constant.
    pub(crate) const EXACT: Self = Self {
        implied: BTreeMap::new(),
        wildcards: false,
    };

    /// Exact, case-sensitive matching: a scope satisfies only itself (the default).
    pub fn exact() -> Self {
        Self::default()
    }

    /// Starts an explicit hierarchy.
    pub fn builder() -> ScopeHierarchyBuilder {
        ScopeHierarchyBuilder::default()
    }

    /// Whether the granted scope `granted` satisfies the required scope `required`.
    pub fn grants(&self, granted: &str, required: &str) -> bool {
        if granted == required {
            return true;
        }
        if self
            .implied
            .get(granted)
            .is_some_and(|narrower| narrower.contains(required))
        {
            return true;
        }
        self.wildcards && wildcard_grants(granted, required)
    }

    /// Whether `granted` satisfies `required` (a scope that is not a valid `scope-token` is never
    /// satisfied).
    pub fn satisfies(&self, granted: &Scopes, required: &str) -> bool {
        Scopes::is_scope_token(required) && granted.iter().any(|g| self.grants(g, required))
    }

    /// Whether `granted` satisfies every one of `required` (an empty requirement always is).
    pub fn satisfies_all<I, T>(&self, granted: &Scopes, required: I) -> bool
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        required
            .into_iter()
            .all(|r| self.satisfies(granted, r.as_ref()))
    }

    /// Whether `granted` satisfies at least one of `candidates` (an empty list never is).
    pub fn satisfies_any<I, T>(&self, granted: &Scopes, candidates: I) -> bool
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        candidates
            .into_iter()
            .any(|r| self.satisfies(granted, r.as_ref()))
    }

    /// Whether wildcard grants are honoured.
    pub fn wildcards_enabled(&self) -> bool {
        self.wildcards
    }
}

/// `files:*` grants `files:read` and `files:x:y`, never `files:` itself, `filesystem`, or anything
/// for a bare `*` (a token granting everything is a configuration accident, not a scope).
fn wildcard_grants(granted: &str, required: &str) -> bool {
    let Some(prefix) = granted.strip_suffix('*') else {
        return false;
    };
    prefix.len() > 1
        && prefix.ends_with(':')
        && required.len() > prefix.len()
        && required.starts_with(prefix)
}

impl fmt::Debug for ScopeHierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHierarchy")
            .field("implied", &self.implied)
            .field("wildcards", &self.wildcards)
            .finish()
    }
}

/// Builds a [`ScopeHierarchy`]; see [`ScopeHierarchy::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ScopeHierarchyBuilder {
    direct: BTreeMap<String, BTreeSet<String>>,
    wildcards: bool,
    invalid: Option<String>,
}

impl ScopeHierarchyBuilder {
    /// `broad` implies each of `narrower` (and, transitively, whatever they imply).
    pub fn implies<I, T>(mut self, broad: impl Into<String>, narrower: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let broad = broad.into();
        let entry = self.direct.entry(broad.clone()).or_default();
        for scope in narrower {
            let scope = scope.into();
            if self.invalid.is_none() && !Scopes::is_scope_token(&scope) {
                self.invalid = Some(scope.clone());
            }
            entry.insert(scope);
        }
        if self.invalid.is_none() && !Scopes::is_scope_token(&broad) {
            self.invalid = Some(broad);
        }
        self
    }

    /// Lets a granted `prefix:*` satisfy every required `prefix:…` (default: off).
    ///
    /// Discouraged: the MCP specification's security guidance asks for least privilege, and a
    /// wildcard grants scopes that did not exist when the token was issued. Prefer
    /// [`implies`](Self::implies), which names what each broad scope covers.
    pub fn wildcards(mut self, enable: bool) -> Self {
        self.wildcards = enable;
        self
    }

    /// The hierarchy, with every implication closed transitively.
    ///
    /// # Errors
    ///
    /// A scope that is not a valid `scope-token`, or a cycle (`a` implies `b` implies `a`): in a
    /// cycle no scope is broader than another, which is a configuration mistake.
    pub fn build(self) -> Result<ScopeHierarchy, ScopeHierarchyError> {
        if let Some(scope) = self.invalid {
            return Err(ScopeHierarchyError::InvalidScope(scope));
        }
        let mut implied = BTreeMap::new();
        for broad in self.direct.keys() {
            let mut reached = BTreeSet::new();
            let mut pending: Vec<&str> = vec![broad];
            while let Some(scope) = pending.pop() {
                for narrower in self.direct.get(scope).into_iter().flatten() {
                    if narrower == broad {
                        return Err(ScopeHierarchyError::Cycle(broad.clone()));
                    }
                    if reached.insert(narrower.clone()) {
                        pending.push(narrower);
                    }
                }
            }
            implied.insert(broad.clone(), reached);
        }
        Ok(ScopeHierarchy {
            implied,
            wildcards: self.wildcards,
        })
    }
}

/// Why a [`ScopeHierarchy`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeHierarchyError {
    /// The scope is part of a cycle of implications.
    Cycle(String),
    /// The scope is not a valid RFC 6749 `scope-token`.
    InvalidScope(String),
}

impl fmt::Display for ScopeHierarchyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cycle(scope) => write!(f, "scope {scope:?} implies itself (cycle)"),
            Self::InvalidScope(scope) => {
                write!(f, "{scope:?} is not a valid OAuth scope (RFC 6749 §3.3)")
            }
        }
    }
}

impl std::error::Error for ScopeHierarchyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implications_are_transitive_and_one_way() {
        let h = ScopeHierarchy::builder()
            .implies("repo:admin", ["repo:write"])
            .implies("repo:write", ["repo:read"])
            .build()
            .unwrap();
        assert!(h.grants("repo:admin", "repo:read"));
        assert!(h.grants("repo:write", "repo:read"));
        assert!(!h.grants("repo:read", "repo:write"));
        assert!(!h.grants("repo:write", "repo:admin"));
        let granted = Scopes::parse("repo:admin");
        assert!(h.satisfies_all(&granted, ["repo:read", "repo:write", "repo:admin"]));
        assert!(!h.satisfies_all(&granted, ["repo:read", "other"]));
        assert!(h.satisfies_any(&granted, ["other", "repo:read"]));
    }

    #[test]
    fn cycles_are_refused_when_built() {
        let err = ScopeHierarchy::builder()
            .implies("a", ["b"])
            .implies("b", ["c"])
            .implies("c", ["a"])
            .build()
            .unwrap_err();
        assert!(matches!(err, ScopeHierarchyError::Cycle(_)), "{err}");
        assert!(err.to_string().contains("cycle"));
        let err = ScopeHierarchy::builder()
            .implies("a", ["a"])
            .build()
            .unwrap_err();
        assert_eq!(err, ScopeHierarchyError::Cycle("a".into()));
    }

    #[test]
    fn invalid_scopes_are_refused_when_built() {
        let err = ScopeHierarchy::builder()
            .implies("a", ["b c"])
            .build()
            .unwrap_err();
        assert_eq!(err, ScopeHierarchyError::InvalidScope("b c".into()));
    }

    #[test]
    fn wildcards_only_when_enabled() {
        let granted = Scopes::parse("files:*");
        assert!(!ScopeHierarchy::exact().satisfies(&granted, "files:read"));
        let h = ScopeHierarchy::builder().wildcards(true).build().unwrap();
        assert!(h.satisfies(&granted, "files:read"));
        assert!(h.satisfies(&granted, "files:read:deep"));
        assert!(!h.satisfies(&granted, "files:"));
        assert!(!h.satisfies(&granted, "filesystem"));
        assert!(!h.satisfies(&Scopes::parse("*"), "files:read"));
        assert!(!h.satisfies(&Scopes::parse("files*"), "filesystem"));
    }

    #[test]
    fn exact_is_case_sensitive() {
        let h = ScopeHierarchy::exact();
        assert!(h.satisfies(&Scopes::parse("read"), "read"));
        assert!(!h.satisfies(&Scopes::parse("Read"), "read"));
    }
}
