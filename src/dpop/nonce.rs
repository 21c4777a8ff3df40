//! Server-provided DPoP nonces (RFC 9449 §8, §9) that several instances agree on without sharing
//! any state but a secret.
//!
//! A nonce is `base64url(period ‖ HMAC-SHA-256(secret, label ‖ period)[..16])`, where `period` is
//! the Unix time divided by the rotation interval. Any instance holding the secret mints the same
//! nonce for a period and recognises every other instance's: no database, no coordination. A
//! nonce of the current period, the previous one or the next one (clock skew between instances)
//! is accepted; any other is refused with `use_dpop_nonce` and a fresh one. Nonces bound how far
//! in the past a proof can have been made, whatever its `iat` says: a pre-computed proof stops
//! working within two rotation intervals.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ConfigError;

/// Default rotation interval of server nonces.
pub const DEFAULT_NONCE_ROTATION: Duration = Duration::from_secs(5 * 60);

/// Shortest secret accepted, in bytes: 256 bits, the HMAC-SHA-256 key size.
pub const MIN_NONCE_SECRET_LENGTH: usize = 32;

/// Domain separation: the same secret used elsewhere never yields a valid nonce.
const LABEL: &[u8] = b"tower-introspect DPoP nonce v1";

/// Bytes of the MAC kept in a nonce: 128 bits cannot be guessed.
const TAG_LENGTH: usize = 16;

/// Length of a nonce in characters (24 bytes, base64url without padding).
const NONCE_LENGTH: usize = 32;

/// Mints and recognises server nonces. Cheap to clone.
#[derive(Clone)]
pub struct NonceSource {
    mac: Hmac<Sha256>,
    rotation_secs: u64,
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("NonceSource")
            .field("rotation_secs", &self.rotation_secs)
            .finish_non_exhaustive()
    }
}

/// What a presented nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Minted for the current period (or the next: another instance's clock is ahead).
    Current,
    /// Minted for the previous period: accepted, and the response should carry a fresh nonce so
    /// the client moves on before it expires.
    Stale,
    /// Missing, forged, or older than the previous period: refused with `use_dpop_nonce`.
    Invalid,
}

impl NonceSource {
    /// Nonces derived from `secret` (at least [`MIN_NONCE_SECRET_LENGTH`] random bytes, the same
    /// on every instance that must accept each other's nonces), rotating every `rotation` (at
    /// least a second).
    pub fn new(secret: impl AsRef<[u8]>, rotation: Duration) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_NONCE_SECRET_LENGTH {
            return Err(ConfigError::Invalid {
                setting: "nonce secret",
                reason: format!(
                    "{} bytes is too short: at least {MIN_NONCE_SECRET_LENGTH} random bytes are needed",
                    secret.len()
                ),
            });
        }
        let rotation_secs = rotation.as_secs();
        if rotation_secs == 0 {
            return Err(ConfigError::Invalid {
                setting: "nonce rotation",
                reason: "the rotation interval must be at least one second".into(),
            });
        }
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
        Ok(Self { mac, rotation_secs })
    }

    /// How long a nonce stays current.
    pub fn rotation(&self) -> Duration {
        Duration::from_secs(self.rotation_secs)
    }

    /// The nonce to hand out now.
    pub fn current(&self) -> String {
        self.current_at(SystemTime::now())
    }

    /// The nonce to hand out at `now`.
    pub fn current_at(&self, now: SystemTime) -> String {
        self.mint(self.period(now))
    }

    /// Judges a presented nonce at `now`.
    pub fn check_at(&self, nonce: &str, now: SystemTime) -> NonceStatus {
        if nonce.len() != NONCE_LENGTH {
            return NonceStatus::Invalid;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceStatus::Invalid;
        };
        let (period, tag) = bytes.split_at(8);
        let period = u64::from_be_bytes(period.try_into().expect("8 bytes"));
        // The MAC first, in constant time: a forged nonce learns nothing from timing.
        if self.tag(period).verify_truncated_left(tag).is_err() {
            return NonceStatus::Invalid;
        }
        let now = self.period(now);
        if period == now || period == now.saturating_add(1) {
            NonceStatus::Current
        } else if period.saturating_add(1) == now {
            NonceStatus::Stale
        } else {
            NonceStatus::Invalid
        }
    }

    fn period(&self, now: SystemTime) -> u64 {
        now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / self.rotation_secs
    }

    fn tag(&self, period: u64) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(LABEL);
        mac.update(&period.to_be_bytes());
        mac
    }

    fn mint(&self, period: u64) -> String {
        let tag = self.tag(period).finalize().into_bytes();
        let mut bytes = [0u8; 8 + TAG_LENGTH];
        bytes[..8].copy_from_slice(&period.to_be_bytes());
        bytes[8..].copy_from_slice(&tag[..TAG_LENGTH]);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn source() -> NonceSource {
        NonceSource::new(SECRET, Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn instances_with_one_secret_agree_and_nonces_rotate() {
        let (a, b) = (source(), source());
        let t = 1_800_000_000;
        let nonce = a.current_at(at(t));
        assert_eq!(nonce.len(), NONCE_LENGTH);
        assert_eq!(nonce, b.current_at(at(t)));
        assert_eq!(b.check_at(&nonce, at(t)), NonceStatus::Current);
        // Next period: still accepted, and the client is handed a new one.
        assert_eq!(b.check_at(&nonce, at(t + 300)), NonceStatus::Stale);
        assert_ne!(b.current_at(at(t + 300)), nonce);
        // Two periods later: refused.
        assert_eq!(b.check_at(&nonce, at(t + 600)), NonceStatus::Invalid);
        // An instance whose clock is a little behind accepts a nonce from the next period.
        assert_eq!(b.check_at(&nonce, at(t - 300)), NonceStatus::Current);
        assert_eq!(b.check_at(&nonce, at(t - 600)), NonceStatus::Invalid);
    }

    #[test]
    fn another_secret_or_a_forged_nonce_is_refused() {
        let t = at(1_800_000_000);
        let other = NonceSource::new([8; 32], Duration::from_secs(300)).unwrap();
        assert_eq!(
            source().check_at(&other.current_at(t), t),
            NonceStatus::Invalid
        );
        let mut forged = source().current_at(t).into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(source().check_at(&forged, t), NonceStatus::Invalid);
        for bad in ["", "short", "!".repeat(NONCE_LENGTH).as_str()] {
            assert_eq!(source().check_at(bad, t), NonceStatus::Invalid);
        }
    }

    #[test]
    fn weak_configuration_is_refused() {
        assert!(NonceSource::new([1; 31], Duration::from_secs(60)).is_err());
        assert!(NonceSource::new([1; 32], Duration::from_millis(500)).is_err());
        assert!(!format!("{:?}", source()).contains('7'));
    }
}
