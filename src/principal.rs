//! What a handler sees: the authenticated [`Principal`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Scopes;
use crate::cache::TokenKey;
use crate::challenge::Challenger;
use crate::claims::{TokenClaims, VerifierKind};
use crate::scope::ScopeHierarchy;
use crate::shared_claims::SharedClaims;

/// The caller behind a validated bearer token.
///
/// [`BearerAuth`](crate::layer::BearerAuth) inserts it into the request extensions before calling the inner
/// service, so handlers read it with `req.extensions().get::<Principal>()` (or the axum extractor
/// behind the `axum` feature).
///
/// It is cloned into every request, so it is a reference-counted handle: a clone costs two atomic
/// increments, whatever the number of claims. Its claims are kept in a compact form independent of
/// any verifier's wire format: what is the token's own (subject, username, token id, times) in one
/// allocation, and what tokens share (issuer, audiences, client, token type, scopes) interned, so a
/// cache of many principals holds each shared value once.
///
/// The raw token is deliberately *not* part of a principal: handlers have no business forwarding the
/// inbound token upstream (the MCP specification forbids token passthrough).
#[derive(Clone)]
pub struct Principal {
    claims: Arc<Claims>,
    /// How the layer that authenticated this request words challenges, so that scope layers and
    /// extractors inside it answer alike. Rides along with the principal to spare every request a
    /// second extension; not part of the principal's identity (ignored by `PartialEq`).
    challenger: Option<Arc<Challenger>>,
}

/// A principal's claims.
#[derive(Clone)]
struct Claims {
    shared: Arc<SharedClaims>,
    /// `sub`, `username` and `jti`, one after the other: one allocation for the token's own text.
    text: Box<str>,
    /// Where each of `sub`, `username`, `jti` ends in `text`, or `u32::MAX` when absent.
    ends: [u32; 3],
    /// `exp` and `iat`, meaningful when [`Claims::times`] says they are present (two flags
    /// instead of two `Option`s: 16 bytes less for each of a cache's many principals).
    exp: i64,
    iat: i64,
    /// Bit 0: `exp` is present; bit 1: `iat` is.
    times: u8,
    /// [`VerifierKind`] as a byte (it sits in what would be padding after `times`).
    verified_by: u8,
    /// The SHA-256 of the token this principal was verified from, set by the bearer layer or the
    /// cache: the owner of what a principal without `sub` and `client_id` creates (e.g. an MCP
    /// session). Never the token itself; not part of the principal's identity.
    token_key: Option<TokenKey>,
    /// Claims the library does not model; `None` when there are none (the common case).
    extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// Marks an absent text claim in [`Claims::ends`].
const ABSENT: u32 = u32::MAX;
/// [`Claims::times`] bits.
const EXP: u8 = 1;
const IAT: u8 = 2;

impl Claims {
    /// The `i`th text claim (0: `sub`, 1: `username`, 2: `jti`).
    fn text(&self, i: usize) -> Option<&str> {
        let end = self.ends[i];
        if end == ABSENT {
            return None;
        }
        let start = self.ends[..i]
            .iter()
            .rev()
            .find(|&&e| e != ABSENT)
            .map_or(0, |&e| e as usize);
        // `get`, not indexing: a corrupt offset reads as absent, never panics.
        self.text.get(start..end as usize)
    }

    fn extra(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.extra.as_deref()
    }

    fn exp(&self) -> Option<i64> {
        (self.times & EXP != 0).then_some(self.exp)
    }

    fn iat(&self) -> Option<i64> {
        (self.times & IAT != 0).then_some(self.iat)
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.shared, &other.shared) || self.shared == other.shared)
            && (0..3).all(|i| self.text(i) == other.text(i))
            && self.exp() == other.exp()
            && self.iat() == other.iat()
            && self.extra() == other.extra()
    }
}

impl From<TokenClaims> for Claims {
    fn from(claims: TokenClaims) -> Self {
        let TokenClaims {
            issuer,
            subject,
            username,
            audiences,
            client_id,
            scope,
            token_type,
            token_id,
            expires_at,
            issued_at,
            not_before: _,
            extra,
            verified_by,
        } = claims;
        let own = [subject, username, token_id];
        let mut text = String::with_capacity(own.iter().flatten().map(String::len).sum());
        let mut ends = [ABSENT; 3];
        for (end, value) in ends.iter_mut().zip(&own) {
            if let Some(value) = value {
                text.push_str(value);
                // Claims come from a body capped far below 4 GiB; saturate rather than wrap.
                *end = u32::try_from(text.len()).unwrap_or(ABSENT - 1);
            }
        }
        let shared = SharedClaims {
            iss: issuer.map(String::into_boxed_str),
            client_id: client_id.map(String::into_boxed_str),
            token_type: token_type.map(String::into_boxed_str),
            scope,
            aud: audiences.into_boxed_slice(),
        };
        Self {
            shared: shared.intern(),
            text: text.into_boxed_str(),
            ends,
            exp: expires_at.unwrap_or_default(),
            iat: issued_at.unwrap_or_default(),
            times: if expires_at.is_some() { EXP } else { 0 }
                | if issued_at.is_some() { IAT } else { 0 },
            verified_by: verified_by.to_bits(),
            token_key: None,
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
        }
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.claims == other.claims
    }
}

impl Principal {
    /// A principal from verified claims, whichever verifier verified them.
    ///
    /// Custom [`TokenVerifier`](crate::TokenVerifier)s use this to build their result.
    pub fn new(claims: TokenClaims) -> Self {
        Self {
            claims: Arc::new(claims.into()),
            challenger: None,
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

    /// This principal as verified from the token whose hash is `key` (copies the claims only if
    /// another handle shares them).
    pub(crate) fn with_token_key(mut self, key: TokenKey) -> Self {
        if self.claims.token_key != Some(key) {
            Arc::make_mut(&mut self.claims).token_key = Some(key);
        }
        self
    }

    /// The SHA-256 of the token this principal was verified from, when the bearer layer or the
    /// cache set it.
    pub(crate) fn token_key(&self) -> Option<&TokenKey> {
        self.claims.token_key.as_ref()
    }

    /// Which kind of verifier vouched for this principal.
    pub fn verified_by(&self) -> VerifierKind {
        VerifierKind::from_bits(self.claims.verified_by)
    }

    /// The JWK SHA-256 thumbprint (RFC 7638) the token is bound to (`cnf.jkt`, RFC 9449 §6), if
    /// it is sender-constrained by DPoP.
    pub fn confirmation_thumbprint(&self) -> Option<&str> {
        self.claim("cnf")?.get("jkt")?.as_str()
    }

    /// `sub`: the resource owner the token was issued for (absent for client-credentials tokens on
    /// some servers).
    pub fn subject(&self) -> Option<&str> {
        self.claims.text(0)
    }

    /// `username`: a human-readable identifier of the resource owner.
    pub fn username(&self) -> Option<&str> {
        self.claims.text(1)
    }

    /// `jti`: the token's unique identifier, when the server names one.
    pub fn token_id(&self) -> Option<&str> {
        self.claims.text(2)
    }

    /// `client_id`: the OAuth client that requested the token.
    pub fn client_id(&self) -> Option<&str> {
        self.claims.shared.client_id.as_deref()
    }

    /// `token_type`: the type of the token, as the server named it (e.g. `Bearer`).
    pub fn token_type(&self) -> Option<&str> {
        self.claims.shared.token_type.as_deref()
    }

    /// The scope hierarchy of the bearer layer that verified this principal (exact matching for
    /// a principal built elsewhere).
    pub fn scope_hierarchy(&self) -> &ScopeHierarchy {
        static EXACT: ScopeHierarchy = ScopeHierarchy::EXACT;
        self.challenger()
            .map_or(&EXACT, Challenger::scope_hierarchy)
    }

    /// Whether the token satisfies every one of `required` under the bearer layer's
    /// [`ScopeHierarchy`] (e.g. `repo:admin` satisfies `repo:read` when the hierarchy says so):
    /// the check the scope layers make, for handlers that decide for themselves.
    ///
    /// ```
    /// # use tower_introspect::Principal;
    /// fn may_read(principal: &Principal) -> bool {
    ///     principal.satisfies(&["repo:read"])
    /// }
    /// ```
    pub fn satisfies<T: AsRef<str>>(&self, required: &[T]) -> bool {
        self.scope_hierarchy()
            .satisfies_all(self.scopes(), required)
    }

    /// The scopes granted to the token.
    pub fn scopes(&self) -> &Scopes {
        &self.claims.shared.scope
    }

    /// `aud`: the resources the token is meant for.
    pub fn audiences(&self) -> &[String] {
        &self.claims.shared.aud
    }

    /// `iss`: the authorization server that issued the token.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.shared.iss.as_deref()
    }

    /// `exp` as a point in time.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.claims.exp().map(epoch_to_system_time)
    }

    /// `iat` as a point in time.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.claims.iat().map(epoch_to_system_time)
    }

    /// A claim the library does not model (e.g. `tenant`, `email`), as the server sent it.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.claims.extra()?.get(name)
    }

    /// Approximate heap bytes held by this principal's claims, for memory-bounded caches.
    ///
    /// Counts what the claims really occupy, not their serialized length: the claims' allocation,
    /// the token's own text, this principal's share of the interned values it shares with other
    /// tokens (all of them when it is their only user), and for extra claims the JSON tree as
    /// `serde_json` holds it (each value's slot, each map's nodes). A response of many tiny values
    /// costs several times its wire size, and the weight says so.
    pub fn approximate_size(&self) -> usize {
        let c = &*self.claims;
        // The interner's own reference is not a user.
        let users = Arc::strong_count(&c.shared).saturating_sub(1).max(1);
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<Claims>()
            + c.text.len()
            + c.shared.heap_bytes() / users
            + c.extra.as_ref().map_or(0, |extra| {
                std::mem::size_of::<serde_json::Map<String, serde_json::Value>>()
                    + json_map_heap_bytes(extra)
            })
    }
}

/// Heap bytes of one map entry besides its key's and value's own heap: the key and value slots and
/// the map's share of node or index overhead (a `BTreeMap` leaf holds at most 11 entries and is
/// often half full; `preserve_order`'s `IndexMap` keeps an entry vector and a hash index).
const JSON_MAP_ENTRY_BYTES: usize =
    std::mem::size_of::<String>() + std::mem::size_of::<serde_json::Value>() + 64;

/// A non-empty `BTreeMap` allocates at least one whole leaf node, whatever its length.
const JSON_MAP_MIN_BYTES: usize =
    11 * (std::mem::size_of::<String>() + std::mem::size_of::<serde_json::Value>()) + 16;

fn json_map_heap_bytes(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    if map.is_empty() {
        return 0;
    }
    let nodes = (map.len() * JSON_MAP_ENTRY_BYTES).max(JSON_MAP_MIN_BYTES);
    nodes
        + map
            .iter()
            .map(|(k, v)| k.capacity() + json_heap_bytes(v))
            .sum::<usize>()
}

fn json_heap_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(json_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => json_map_heap_bytes(map),
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
            .field("exp", &self.claims.exp())
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch to a [`SystemTime`]; negative values clamp to the epoch.
pub(crate) fn epoch_to_system_time(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(json: serde_json::Value) -> Principal {
        let response: crate::introspection::IntrospectionResponse =
            serde_json::from_value(json).unwrap();
        Principal::new(response.into())
    }

    #[test]
    fn compact_claims_read_back_exactly_what_the_server_said() {
        let p = principal(serde_json::json!({
            "active": true, "sub": "s-1", "username": "", "jti": "j-1", "client_id": "c",
            "token_type": "Bearer", "iss": "https://as", "aud": ["a", "b"], "scope": "write read",
            "exp": 0, "iat": -5, "tenant": "t1",
        }));
        assert_eq!(p.subject(), Some("s-1"));
        assert_eq!(p.username(), Some(""), "present but empty is not absent");
        assert_eq!(p.token_id(), Some("j-1"));
        assert_eq!(p.client_id(), Some("c"));
        assert_eq!(p.token_type(), Some("Bearer"));
        assert_eq!(p.issuer(), Some("https://as"));
        assert_eq!(p.audiences(), ["a", "b"]);
        assert_eq!(p.scopes().as_str(), "read write");
        assert_eq!(
            p.expires_at(),
            Some(UNIX_EPOCH),
            "exp 0 is present, not absent"
        );
        assert_eq!(
            p.issued_at(),
            Some(UNIX_EPOCH),
            "negative times clamp to the epoch"
        );
        assert_eq!(p.claim("tenant"), Some(&serde_json::json!("t1")));
        assert_eq!(p.claim("sub"), None, "modelled claims are not extra");
    }

    #[test]
    fn absent_claims_stay_absent_whichever_are_missing() {
        let only_jti = principal(serde_json::json!({"active": true, "jti": "j"}));
        assert_eq!(
            (only_jti.subject(), only_jti.username(), only_jti.token_id()),
            (None, None, Some("j"))
        );
        let only_username = principal(serde_json::json!({"active": true, "username": "u"}));
        assert_eq!(
            (
                only_username.subject(),
                only_username.username(),
                only_username.token_id()
            ),
            (None, Some("u"), None)
        );
        let none = principal(serde_json::json!({"active": true}));
        assert_eq!((none.expires_at(), none.issued_at()), (None, None));
        assert_eq!(none.claim("anything"), None);
        assert!(none.audiences().is_empty() && none.scopes().is_empty());
    }

    #[test]
    fn principals_compare_by_claims_not_by_allocation() {
        let json = serde_json::json!({"active": true, "sub": "s", "client_id": "c", "exp": 9});
        assert_eq!(principal(json.clone()), principal(json.clone()));
        let mut other = json;
        other["exp"] = 10.into();
        assert_ne!(
            principal(other.clone()),
            principal(serde_json::json!({"active": true, "sub": "s", "client_id": "c"}))
        );
        assert_ne!(
            principal(other),
            principal(serde_json::json!({"active": true, "sub": "s", "client_id": "c", "exp": 9}))
        );
    }

    #[test]
    fn the_token_key_is_set_without_touching_other_handles() {
        let a = principal(serde_json::json!({"active": true, "sub": "s"}));
        let b = a.clone().with_token_key([7; 32]);
        assert_eq!(
            a.token_key(),
            None,
            "the shared claims were copied, not changed"
        );
        assert_eq!(b.token_key(), Some(&[7; 32]));
        assert_eq!(a, b, "the key is not part of the principal's identity");
    }

    #[test]
    fn tokens_of_one_client_share_their_common_claims() {
        let p = |sub: &str| {
            principal(serde_json::json!({
                "active": true, "sub": sub, "client_id": "shared-claims-test", "scope": "a b",
                "aud": "https://rs", "iss": "https://as",
            }))
        };
        let (a, b) = (p("alice"), p("bob"));
        assert!(Arc::ptr_eq(&a.claims.shared, &b.claims.shared));
        assert_eq!((a.subject(), b.subject()), (Some("alice"), Some("bob")));
    }
}
