//! [`StateSealer`]: state a server hands to the client and trusts when it comes back.
//!
//! Without protocol sessions, state that spans calls travels with the client: in handles and in
//! `requestState`. When that state influences authorization it must be integrity-protected and
//! bound to the principal it was issued to, or a client could forge it or replay another user's.
//! A sealed value is `v1.<key id>.<base64url>`, where the base64url (no padding) carries
//!
//! ```text
//! expiry (u64, Unix seconds) | owner tag (16) | resource tag (16) | payload | HMAC-SHA256 (32)
//! ```
//!
//! The owner and resource tags are HMACs of the principal's [`OwnerKey`] and of the resource
//! under the same key, so the value names neither in the clear yet opening it for another
//! principal or resource is told apart from tampering. The final HMAC covers the version, the
//! key id and everything before it.
//!
//! **The payload is not secret**: anyone holding the sealed value can decode it. Seal only what
//! the principal may see (ids, cursors, choices), and keep secrets server-side under a handle
//! (see [`OwnerKey::scoped`]).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::owner::OwnerKey;
use crate::Principal;

/// Default bound on a sealed value's length, in characters, both when sealing and opening.
pub const DEFAULT_MAX_SEALED_LEN: usize = 8 * 1024;
/// The shortest secret a [`SealingKey`] accepts: as long as the HMAC-SHA256 output.
pub const MIN_SEALING_SECRET_LEN: usize = 32;
/// The longest key id a [`SealingKey`] accepts.
pub const MAX_KEY_ID_LEN: usize = 32;

const VERSION: &str = "v1";
/// Domain separation: a MAC made by this codec is valid nowhere else, and vice versa.
const DOMAIN: &[u8] = b"tower-introspect/sealed-state/v1\0";
const EXPIRY_LEN: usize = 8;
const TAG_LEN: usize = 16;
const MAC_LEN: usize = 32;
const HEADER_LEN: usize = EXPIRY_LEN + 2 * TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// A named HMAC-SHA256 key. The id travels in each sealed value so that the right verification
/// key is found after rotation; the secret is never shown by `Debug`.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    secret: Vec<u8>,
}

impl SealingKey {
    /// A key named `id` (1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 - _`) with `secret`
    /// (at least [`MIN_SEALING_SECRET_LEN`] random bytes).
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let id = id.into();
        let secret = secret.into();
        if !is_key_id(&id) {
            return Err(KeyError::BadId);
        }
        if secret.len() < MIN_SEALING_SECRET_LEN {
            return Err(KeyError::ShortSecret);
        }
        Ok(Self { id, secret })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; the length was checked in `new` anyway.
        <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    /// A keyed tag of `label` and `value`, so that the sealed value reveals neither.
    fn tag(&self, label: &[u8], value: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(DOMAIN);
        mac.update(label);
        mac.update(value);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    fn seal_mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(DOMAIN);
        mac.update(&[self.id.len() as u8]);
        mac.update(self.id.as_bytes());
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn is_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a [`SealingKey`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The id is empty, too long, or has characters other than `A-Z a-z 0-9 - _`.
    #[error("a sealing key id is 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 - _")]
    BadId,
    /// The secret is shorter than [`MIN_SEALING_SECRET_LEN`] bytes.
    #[error("a sealing key secret is at least {MIN_SEALING_SECRET_LEN} bytes")]
    ShortSecret,
    /// Two keys share an id.
    #[error("two sealing keys share an id")]
    DuplicateId,
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The principal names neither subject nor client and carries no token digest.
    #[error("the principal cannot be identified")]
    Unattributable,
    /// The sealed value would exceed the bound.
    #[error("the sealed value would exceed {max} characters")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The payload could not be serialized.
    #[error("the payload could not be serialized: {0}")]
    Payload(#[source] serde_json::Error),
}

/// Why a sealed value was refused. Nothing the client sends makes opening panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Longer than the bound: refused before decoding.
    #[error("the sealed value exceeds {max} characters")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// Not `v1.<key id>.<base64url>`, or too short to hold its fields (garbage or truncated).
    #[error("the sealed value is malformed")]
    Malformed,
    /// Another format version.
    #[error("the sealed value has an unsupported version")]
    UnsupportedVersion,
    /// Sealed with a key this codec does not hold (unknown or rotated out).
    #[error("the sealed value was made with an unknown key")]
    UnknownKey,
    /// The MAC does not match: the value was altered or not made by this server.
    #[error("the sealed value failed its integrity check")]
    Forged,
    /// Authentic, but sealed for another principal.
    #[error("the sealed value belongs to another principal")]
    WrongPrincipal,
    /// Authentic, but sealed for another resource.
    #[error("the sealed value was issued for another resource")]
    WrongResource,
    /// Authentic, but past its expiry.
    #[error("the sealed value has expired")]
    Expired,
    /// The principal opening it names neither subject nor client and carries no token digest.
    #[error("the principal cannot be identified")]
    Unattributable,
    /// Authentic, but the payload is not the expected JSON.
    #[error("the sealed payload is not the expected JSON: {0}")]
    Payload(#[source] serde_json::Error),
}

/// Seals state to a principal, a resource and an expiry with HMAC-SHA256, and opens it again.
///
/// One key signs; every key (the signing one included) verifies, chosen by the id in the sealed
/// value. To rotate: add the new key as a verification key everywhere, then make it the signing
/// key, and drop the old one once its values have expired.
///
/// ```
/// use std::time::Duration;
/// use tower_introspect::mcp::{SealingKey, StateSealer};
/// # use tower_introspect::Principal;
/// # use tower_introspect::claims::TokenClaims;
/// # let mut claims = TokenClaims::default();
/// # claims.issuer = Some("https://as.example".into());
/// # claims.subject = Some("alice".into());
/// # claims.client_id = Some("app".into());
/// # let alice = Principal::new(claims);
///
/// let sealer = StateSealer::new(SealingKey::new("2026-07", [7u8; 32]).unwrap());
/// let resource = "https://mcp.example/mcp";
/// let state = sealer.seal_json(&alice, resource, Duration::from_secs(600), &("page", 2)).unwrap();
/// let (step, page): (String, u32) = sealer.open_json(&alice, resource, &state).unwrap();
/// assert_eq!((step.as_str(), page), ("page", 2));
/// ```
#[derive(Clone)]
pub struct StateSealer {
    signing: SealingKey,
    verifying: Vec<SealingKey>,
    max_len: usize,
}

impl StateSealer {
    /// A sealer that signs (and verifies) with `signing`.
    pub fn new(signing: SealingKey) -> Self {
        Self {
            signing,
            verifying: Vec::new(),
            max_len: DEFAULT_MAX_SEALED_LEN,
        }
    }

    /// Also accept values sealed with `key` (a previous or upcoming signing key).
    pub fn verify_with(mut self, key: SealingKey) -> Result<Self, KeyError> {
        if key.id == self.signing.id || self.verifying.iter().any(|k| k.id == key.id) {
            return Err(KeyError::DuplicateId);
        }
        self.verifying.push(key);
        Ok(self)
    }

    /// Bound on a sealed value's length in characters (default [`DEFAULT_MAX_SEALED_LEN`]).
    pub fn max_sealed_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// Seals `payload` for `principal` at `resource`, valid for `ttl` from now.
    pub fn seal(
        &self,
        principal: &Principal,
        resource: &str,
        ttl: Duration,
        payload: &[u8],
    ) -> Result<String, SealError> {
        self.seal_at(principal, resource, SystemTime::now(), ttl, payload)
    }

    /// [`seal`](Self::seal) with an explicit current time.
    pub fn seal_at(
        &self,
        principal: &Principal,
        resource: &str,
        now: SystemTime,
        ttl: Duration,
        payload: &[u8],
    ) -> Result<String, SealError> {
        let owner = OwnerKey::of(principal).ok_or(SealError::Unattributable)?;
        let key = &self.signing;
        let expires = unix_seconds(now).saturating_add(ttl.as_secs());
        // Unpadded base64: four characters per three bytes, rounded up.
        let encoded_len = ((HEADER_LEN + payload.len() + MAC_LEN) * 4).div_ceil(3);
        if VERSION.len() + key.id.len() + 2 + encoded_len > self.max_len {
            return Err(SealError::TooLarge { max: self.max_len });
        }
        let mut raw = Vec::with_capacity(HEADER_LEN + payload.len() + MAC_LEN);
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(&key.tag(b"owner\0", owner.as_bytes()));
        raw.extend_from_slice(&key.tag(b"resource\0", resource.as_bytes()));
        raw.extend_from_slice(payload);
        let mac = key.seal_mac(&raw).finalize().into_bytes();
        raw.extend_from_slice(&mac);
        Ok(format!(
            "{VERSION}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(&raw)
        ))
    }

    /// Serializes `payload` as JSON and seals it (see [`seal`](Self::seal)).
    pub fn seal_json<T: Serialize + ?Sized>(
        &self,
        principal: &Principal,
        resource: &str,
        ttl: Duration,
        payload: &T,
    ) -> Result<String, SealError> {
        let bytes = serde_json::to_vec(payload).map_err(SealError::Payload)?;
        self.seal(principal, resource, ttl, &bytes)
    }

    /// The payload of `sealed`, if this server sealed it for `principal` at `resource` and it has
    /// not expired.
    pub fn open(
        &self,
        principal: &Principal,
        resource: &str,
        sealed: &str,
    ) -> Result<Vec<u8>, OpenError> {
        self.open_at(principal, resource, sealed, SystemTime::now())
    }

    /// [`open`](Self::open) with an explicit current time.
    pub fn open_at(
        &self,
        principal: &Principal,
        resource: &str,
        sealed: &str,
        now: SystemTime,
    ) -> Result<Vec<u8>, OpenError> {
        if sealed.len() > self.max_len {
            return Err(OpenError::TooLarge { max: self.max_len });
        }
        let mut parts = sealed.splitn(3, '.');
        let (Some(version), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        if version != VERSION {
            return Err(OpenError::UnsupportedVersion);
        }
        if !is_key_id(id) {
            return Err(OpenError::Malformed);
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < HEADER_LEN + MAC_LEN {
            return Err(OpenError::Malformed);
        }
        let key = std::iter::once(&self.signing)
            .chain(&self.verifying)
            .find(|key| key.id == id)
            .ok_or(OpenError::UnknownKey)?;
        let mac = raw.split_off(raw.len() - MAC_LEN);
        // `verify_slice` compares in constant time.
        key.seal_mac(&raw)
            .verify_slice(&mac)
            .map_err(|_| OpenError::Forged)?;
        let owner = OwnerKey::of(principal).ok_or(OpenError::Unattributable)?;
        let owner_tag = &raw[EXPIRY_LEN..EXPIRY_LEN + TAG_LEN];
        if !bool::from(owner_tag.ct_eq(&key.tag(b"owner\0", owner.as_bytes()))) {
            return Err(OpenError::WrongPrincipal);
        }
        let resource_tag = &raw[EXPIRY_LEN + TAG_LEN..HEADER_LEN];
        if !bool::from(resource_tag.ct_eq(&key.tag(b"resource\0", resource.as_bytes()))) {
            return Err(OpenError::WrongResource);
        }
        let mut expiry = [0; EXPIRY_LEN];
        expiry.copy_from_slice(&raw[..EXPIRY_LEN]);
        if unix_seconds(now) >= u64::from_be_bytes(expiry) {
            return Err(OpenError::Expired);
        }
        Ok(raw.split_off(HEADER_LEN))
    }

    /// Opens `sealed` (see [`open`](Self::open)) and parses its payload as JSON.
    pub fn open_json<T: DeserializeOwned>(
        &self,
        principal: &Principal,
        resource: &str,
        sealed: &str,
    ) -> Result<T, OpenError> {
        let bytes = self.open(principal, resource, sealed)?;
        serde_json::from_slice(&bytes).map_err(OpenError::Payload)
    }
}

impl fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSealer")
            .field("signing", &self.signing.id)
            .field(
                "verifying",
                &self
                    .verifying
                    .iter()
                    .map(SealingKey::id)
                    .collect::<Vec<_>>(),
            )
            .field("max_len", &self.max_len)
            .finish()
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
