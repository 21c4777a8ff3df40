//! The keys that sign RFC 9068 JWT access tokens, and the tokens themselves.
//!
//! One ES256 (P-256) key is current: it signs every JWT access token. It is made at the first
//! start (from the operating system's random number generator) and kept in the storage backend,
//! so a restart keeps it and every instance on a shared database signs with the same key; the
//! first-start race is settled by the backend (see [`Storage::ensure_signing_key`]).
//!
//! A rotation ([`rotate`]) stores a new current key and retires the previous one at the rotation
//! time plus the access-token lifetime: the last token the old key signed has expired by then,
//! so `/jwks` publishes the old key until that moment and drops it after (the cleanup purges
//! it). Issuance reads the current key from storage for every token, after taking the token's
//! `iat`, so an instance never signs with a key another process retired: a token signed just
//! before a rotation expires no later than its key's retirement.
//!
//! The private key never leaves this module and the storage backend: [`PrivateKey`] redacts
//! itself in `Debug`, nothing here logs it, and `/jwks` is built from [`VerificationKey`]s,
//! which hold only the public point.

use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{PrivateKey, SigningKey, UnixTime, VerificationKey};
use crate::state::secs;
use crate::storage::{Storage, StorageError};

/// The JWS algorithm of every signing key.
pub const ALGORITHM: &str = "ES256";
/// The JOSE `typ` of a JWT access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// A failure to make, read or use a signing key. Its messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// A key could not be encoded or decoded (a stored key that does not parse is corrupt).
    #[error("signing key {0}")]
    Encoding(&'static str),
    /// Signing a token failed.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Makes a new P-256 key pair from the operating system's random number generator.
pub fn generate(now: UnixTime) -> Result<SigningKey, KeyError> {
    let secret = p256::SecretKey::try_generate().map_err(|_| KeyError::Random)?;
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Encoding("cannot be encoded as PKCS#8"))?;
    let private = PrivateKey::new(String::clone(&pem));
    let jwk = Jwk::from_encoding_key(&encoding_key(&private)?, Algorithm::ES256)?;
    let AlgorithmParameters::EllipticCurve(point) = &jwk.algorithm else {
        return Err(KeyError::Encoding("is not an elliptic-curve key"));
    };
    let public = VerificationKey {
        kid: jwk.thumbprint(ThumbprintHash::SHA256)?,
        algorithm: ALGORITHM.to_owned(),
        x: point.x.clone(),
        y: point.y.clone(),
        created_at: now,
        retire_at: None,
    };
    Ok(SigningKey { public, private })
}

fn encoding_key(private: &PrivateKey) -> Result<EncodingKey, KeyError> {
    EncodingKey::from_ec_pem(private.expose().as_bytes())
        .map_err(|_| KeyError::Encoding("is not a PKCS#8 P-256 private key"))
}

/// The current signing key, made and stored first if there is none (first start). Of several
/// processes doing this at once on one database, all end up with the same key.
pub async fn current(storage: &dyn Storage, now: UnixTime) -> Result<SigningKey, KeyError> {
    if let Some(key) = storage.current_signing_key().await? {
        return Ok(key);
    }
    let candidate = generate(now)?;
    let key = storage.ensure_signing_key(&candidate).await?;
    if key.public.kid == candidate.public.kid {
        tracing::info!(kid = %key.public.kid, "signing key created");
    }
    Ok(key)
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// The new current key's `kid`.
    pub kid: String,
    /// The previous key's `kid`, if there was one.
    pub retired_kid: Option<String>,
    /// When the previous key leaves `/jwks`: the rotation time plus the access-token lifetime.
    pub retire_at: UnixTime,
}

/// Makes a new key the current signing key; the previous one stays published until
/// `now + access_token_lifetime`, when the last token it signed has expired.
pub async fn rotate(
    storage: &dyn Storage,
    access_token_lifetime: Duration,
    now: UnixTime,
) -> Result<KeyRotation, KeyError> {
    let key = generate(now)?;
    let retire_at = now + secs(access_token_lifetime);
    let retired_kid = storage.rotate_signing_key(&key, retire_at).await?;
    tracing::info!(kid = %key.public.kid, retired = ?retired_kid, retire_at, "signing key rotated");
    Ok(KeyRotation {
        kid: key.public.kid,
        retired_kid,
        retire_at,
    })
}

/// The claims of a JWT access token (RFC 9068 §2.2): the same values `/introspect` reports
/// for it.
#[derive(Clone, Debug, Serialize)]
pub struct AccessTokenClaims<'a> {
    /// The issuer, exactly as in the metadata.
    pub iss: &'a str,
    /// The user, or the client itself for client credentials.
    pub sub: &'a str,
    /// The RFC 8707 resource the token was issued for; absent when the request named none
    /// (as `aud` is absent from its introspection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    /// Expiry.
    pub exp: UnixTime,
    /// Issue time.
    pub iat: UnixTime,
    /// Not before (the issue time).
    pub nbf: UnixTime,
    /// Unique token id.
    pub jti: &'a str,
    /// The grant family (session) the token belongs to: the `session` id of SSF
    /// `session-revoked` events.
    pub sid: &'a str,
    /// The client the token was issued to.
    pub client_id: &'a str,
    /// Granted scope, space separated.
    pub scope: &'a str,
    /// RFC 9449 §6.1: `{"jkt": <thumbprint>}` for a DPoP-bound token; absent for a bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}

/// Signs `claims` as an RFC 9068 JWT access token: `typ: at+jwt`, `alg: ES256`, `kid`.
pub fn sign(key: &SigningKey, claims: &AccessTokenClaims<'_>) -> Result<String, KeyError> {
    sign_typed(key, ACCESS_TOKEN_TYPE, claims)
}

/// The JOSE `typ` of a Security Event Token (RFC 8417 §2.3).
pub const SET_TYPE: &str = "secevent+jwt";

/// Signs SET claims (RFC 8417) with the signing key: `typ: secevent+jwt`, `alg: ES256`, `kid`.
pub fn sign_set(key: &SigningKey, claims: &Value) -> Result<String, KeyError> {
    sign_typed(key, SET_TYPE, claims)
}

/// Signs `claims` as a JWS with `alg: ES256`, the key's `kid` and `typ`.
fn sign_typed(
    key: &SigningKey,
    typ: &str,
    claims: &impl serde::Serialize,
) -> Result<String, KeyError> {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.public.kid.clone());
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &encoding_key(&key.private)?,
    )?)
}

/// A public key as a JWK (RFC 7517): `kty`, `crv`, `x`, `y`, `kid`, `use`, `alg`, and nothing
/// else (no private member can appear: a [`VerificationKey`] has none).
pub fn public_jwk(key: &VerificationKey) -> Value {
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": key.x,
        "y": key.y,
        "kid": key.kid,
        "use": "sig",
        "alg": key.algorithm,
    })
}

/// The JWK Set document of `keys`.
pub fn jwk_set(keys: &[VerificationKey]) -> Value {
    json!({ "keys": keys.iter().map(public_jwk).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let key = generate(1_700_000_000).unwrap();
        let printed = format!("{key:?}");
        assert!(
            key.private
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        let body: String = key.private.expose().lines().nth(1).unwrap().to_owned();
        assert!(!printed.contains(&body), "{printed}");
        assert!(printed.contains("PrivateKey(<redacted>)"), "{printed}");
    }

    #[test]
    fn keys_are_fresh_and_named_by_their_thumbprint() {
        let a = generate(1).unwrap();
        let b = generate(1).unwrap();
        assert_ne!(a.public.kid, b.public.kid);
        assert_ne!(a.private, b.private);
        // RFC 7638 SHA-256 thumbprints are 32 bytes, base64url without padding.
        assert_eq!(a.public.kid.len(), 43);
        let jwk = public_jwk(&a.public);
        let mut names: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    }
}
