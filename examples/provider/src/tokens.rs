//! Random credentials, their storage hashes, and constant-time comparison.
//!
//! Every credential the server hands out (codes, tokens, client secrets, interaction ids, CSRF
//! tokens) is 256 bits from the thread-local CSPRNG, so an unsalted SHA-256 is a sufficient storage
//! hash: it cannot be brute-forced, and it lets lookups use an index on the hash. User passwords,
//! which are low-entropy, use argon2 instead (see [`crate::users`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of authorization codes (helps humans and secret scanners; not a security feature).
pub const CODE_PREFIX: &str = "ac_";
/// Prefix of access tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "at_";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "rt_";
/// Prefix of generated client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "cs_";

/// 32 random bytes, base64url without padding (43 characters), after `prefix`.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A random identifier that is safe to log and to expose (`jti`, family ids, client ids).
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The storage hash of a high-entropy secret: base64url(SHA-256(secret)).
pub fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Checks a presented secret against a stored hash in constant time.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    constant_time_eq(&hash_secret(presented), stored_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = random_token(ACCESS_TOKEN_PREFIX);
        let b = random_token(ACCESS_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("at_"));
        assert_eq!(a.len(), 3 + 43);
    }

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let secret = random_token(CLIENT_SECRET_PREFIX);
        let hash = hash_secret(&secret);
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret("other", &hash));
        assert!(!constant_time_eq("a", "ab"));
    }
}
