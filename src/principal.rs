//! What a handler sees: the authenticated [`Principal`] and its [`Scopes`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cache::TokenKey;
use crate::challenge::Challenger;
use crate::introspection::IntrospectionResponse;
use crate::introspection::response::OneOrMany;

/// The caller behind a validated bearer token.
///
/// [`BearerAuth`](crate::BearerAuth) inserts it into the request extensions before calling the inner
/// service, so handlers read it with `req.extensions().get::<Principal>()` (or the axum extractor
/// behind the `axum` feature).
///
/// It is cloned into every request, so it is a reference-counted handle: a clone costs one atomic
/// increment, whatever the number of claims.
///
/// The raw token is deliberately *not* part of a principal: handlers have no business forwarding the
/// inbound token upstream (the MCP specification forbids token passthrough).
#[derive(Clone)]
pub struct Principal {
    claims: Arc<IntrospectionResponse>,
    /// How the layer that authenticated this request words challenges, so that scope layers and
    /// extractors inside it answer alike. Rides along with the principal to spare every request a
    /// second extension; not part of the principal's identity (ignored by `PartialEq`).
    challenger: Option<Arc<Challenger>>,
    /// The SHA-256 of the token this principal was verified from, set by the bearer layer: the
    /// owner of what a principal without `sub` and `client_id` creates (e.g. an MCP session).
    /// Never the token itself; not part of the principal's identity (ignored by `PartialEq`).
    token_key: Option<TokenKey>,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.claims == other.claims
    }
}

impl Principal {
    /// A principal from the claims of an active introspection response (or any verifier's claims).
    ///
    /// Custom [`TokenVerifier`](crate::TokenVerifier)s use this to build their result.
    pub fn new(claims: IntrospectionResponse) -> Self {
        Self {
            claims: Arc::new(claims),
            challenger: None,
            token_key: None,
        }
    }

    /// This principal as inserted by a layer whose challenges are worded by `challenger`.
    pub(crate) fn with_challenger(mut self, challenger: &Arc<Challenger>) -> Self {
        self.challenger = Some(challenger.clone());
        self
    }

    pub(crate) fn challenger(&self) -> Option<&Challenger> {
        self.challenger.as_deref()
    }

    /// This principal as verified from the token whose hash is `key`.
    pub(crate) fn with_token_key(mut self, key: TokenKey) -> Self {
        self.token_key = Some(key);
        self
    }

    /// The SHA-256 of the token this principal was verified from, when the bearer layer
    /// inserted it.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code))]
    pub(crate) fn token_key(&self) -> Option<&TokenKey> {
        self.token_key.as_ref()
    }

    /// `sub`: the resource owner the token was issued for (absent for client-credentials tokens on
    /// some servers).
    pub fn subject(&self) -> Option<&str> {
        self.claims.sub.as_deref()
    }

    /// `username`: a human-readable identifier of the resource owner.
    pub fn username(&self) -> Option<&str> {
        self.claims.username.as_deref()
    }

    /// `client_id`: the OAuth client that requested the token.
    pub fn client_id(&self) -> Option<&str> {
        self.claims.client_id.as_deref()
    }

    /// The scopes granted to the token.
    pub fn scopes(&self) -> &Scopes {
        &self.claims.scope
    }

    /// `aud`: the resources the token is meant for.
    pub fn audiences(&self) -> &[String] {
        &self.claims.aud
    }

    /// `iss`: the authorization server that issued the token.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.iss.as_deref()
    }

    /// `exp` as a point in time.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.claims.exp.map(epoch_to_system_time)
    }

    /// `iat` as a point in time.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.claims.iat.map(epoch_to_system_time)
    }

    /// A claim the library does not model (e.g. `tenant`, `email`), as the server sent it.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.claims.extra.get(name)
    }

    /// Every claim of the introspection response.
    pub fn claims(&self) -> &IntrospectionResponse {
        &self.claims
    }

    /// Approximate heap bytes held by this principal's claims (strings, scopes, audiences, extra
    /// claims as serialized), for memory-bounded caches.
    pub fn approximate_size(&self) -> usize {
        let c = &*self.claims;
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<IntrospectionResponse>()
            + [
                &c.client_id,
                &c.username,
                &c.token_type,
                &c.sub,
                &c.iss,
                &c.jti,
            ]
            .into_iter()
            .map(text)
            .sum::<usize>()
            + c.scope.as_str().len()
            + c.aud.iter().map(|a| a.len() + 24).sum::<usize>()
            + c.extra
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len() + 64)
                .sum::<usize>()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject())
            .field("username", &self.username())
            .field("client_id", &self.client_id())
            .field("scopes", self.scopes())
            .field("audiences", &self.audiences())
            .field("issuer", &self.issuer())
            .field("exp", &self.claims.exp)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch to a [`SystemTime`]; negative values clamp to the epoch.
pub(crate) fn epoch_to_system_time(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// A set of OAuth scopes (RFC 6749 §3.3).
///
/// Scopes are case-sensitive strings compared exactly: a granted `read-all` does not satisfy a
/// required `read`. Duplicates collapse (set semantics) and the order of the wire form is not kept.
#[derive(Clone, Default, PartialEq, Eq)]
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

    /// Parses the space-delimited wire form (`"read write"`); runs of whitespace are tolerated
    /// because real servers emit them, and an empty string is an empty set.
    pub fn parse(value: &str) -> Self {
        value.split_whitespace().collect()
    }

    /// Whether `scope` was granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        let needle = scope.as_bytes();
        !needle.is_empty() && self.0.as_bytes().split(|&b| b == b' ').any(|s| s == needle)
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

    /// The union of `self` and `other`.
    pub fn union(&self, other: &Scopes) -> Scopes {
        self.iter().chain(other.iter()).collect()
    }
}

/// Items are split on whitespace (a scope token never contains any), sorted and deduplicated.
impl<S: AsRef<str>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let owned: Vec<S> = iter.into_iter().collect();
        let mut scopes: Vec<&str> = owned
            .iter()
            .flat_map(|s| s.as_ref().split_whitespace())
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

/// Accepts the RFC 7662 string form, `null`, or (as some servers send) an array of strings.
impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
            None => Scopes::new(),
            Some(OneOrMany::One(text)) => Scopes::parse(&text),
            Some(OneOrMany::Many(list)) => list.iter().flat_map(|s| s.split_whitespace()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tolerates_whitespace_and_empty() {
        assert!(Scopes::parse("").is_empty());
        assert!(Scopes::parse("   ").is_empty());
        let s = Scopes::parse("  write read\tread  ");
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_string(), "read write");
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

    #[test]
    fn deserializes_string_null_and_array() {
        let s: Scopes = serde_json::from_str(r#""a b""#).unwrap();
        assert_eq!(s.to_string(), "a b");
        let s: Scopes = serde_json::from_str("null").unwrap();
        assert!(s.is_empty());
        let s: Scopes = serde_json::from_str(r#"["b","a b"]"#).unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(serde_json::from_str::<Scopes>("3").is_err());
    }
}
