//! The client's side: a DPoP key pair and the proofs it signs (RFC 9449 §4).
//!
//! A client (an MCP client, a service calling another) keeps one key for the life of its tokens,
//! sends its proof to the token endpoint to have them bound to it, then signs a fresh proof for
//! every request. Signing is `ring`'s: ES256 (P-256) and EdDSA (Ed25519).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};

use super::proof::token_hash;
use super::thumbprint::jwk_thumbprint;
use crate::ConfigError;
use crate::jwt::JwsAlgorithm;

/// A DPoP key pair: signs proofs, and names itself by its thumbprint.
pub struct DpopKey {
    pair: Pair,
    jwk: Value,
    thumbprint: String,
    rng: SystemRandom,
}

enum Pair {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The public half only.
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm())
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// The details of one proof beyond its request (see [`DpopKey::proof_with`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProofOptions<'a> {
    /// The access token the request presents (its hash becomes `ath`).
    pub access_token: Option<&'a str>,
    /// The server's latest `DPoP-Nonce`.
    pub nonce: Option<&'a str>,
    /// `iat`; now when `None`.
    pub issued_at: Option<SystemTime>,
}

impl<'a> ProofOptions<'a> {
    /// Options for a request presenting `access_token` (if any) with the server's `nonce` (if
    /// any), issued now.
    pub fn new(access_token: Option<&'a str>, nonce: Option<&'a str>) -> Self {
        Self {
            access_token,
            nonce,
            issued_at: None,
        }
    }

    /// The proof's `iat` (for a client whose clock the server corrected, or for tests).
    #[must_use]
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }
}

impl DpopKey {
    /// A fresh key for `algorithm`: [`JwsAlgorithm::ES256`] or [`JwsAlgorithm::EdDSA`].
    pub fn generate(algorithm: JwsAlgorithm) -> Result<Self, ConfigError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            JwsAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            JwsAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
            other => return Err(unsupported(other)),
        }
        .map_err(|_| ConfigError::Invalid {
            setting: "DPoP key",
            reason: "the system random number generator failed".into(),
        })?;
        Self::from_pkcs8(algorithm, pkcs8.as_ref())
    }

    /// A key from its PKCS#8 DER encoding (a key the client keeps across restarts, so that its
    /// bound refresh tokens stay usable).
    pub fn from_pkcs8(algorithm: JwsAlgorithm, der: &[u8]) -> Result<Self, ConfigError> {
        let rng = SystemRandom::new();
        let invalid = |_| ConfigError::Invalid {
            setting: "DPoP key",
            reason: format!("not a PKCS#8 {algorithm} private key"),
        };
        let (pair, jwk) = match algorithm {
            JwsAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .map_err(invalid)?;
                // An uncompressed SEC1 point: 0x04 ‖ x ‖ y.
                let point = pair.public_key().as_ref();
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                });
                (Pair::Es256(pair), jwk)
            }
            JwsAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(invalid)?;
                let jwk = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                });
                (Pair::Ed25519(pair), jwk)
            }
            other => return Err(unsupported(other)),
        };
        let thumbprint =
            jwk_thumbprint(jwk.as_object().expect("an object")).expect("every member is present");
        Ok(Self {
            pair,
            jwk,
            thumbprint,
            rng,
        })
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> JwsAlgorithm {
        match self.pair {
            Pair::Es256(_) => JwsAlgorithm::ES256,
            Pair::Ed25519(_) => JwsAlgorithm::EdDSA,
        }
    }

    /// The public key as a JWK (what proofs carry in their header).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens bound to it, and the
    /// `dpop_jkt` parameter of an authorization request.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for a request with `method` to `url` (its query and fragment are left out of
    /// `htu`), presenting `access_token` if any, with the server's `nonce` if it asked for one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        self.proof_with(method, url, &ProofOptions::new(access_token, nonce))
    }

    /// A proof with every option spelled out.
    pub fn proof_with(&self, method: &str, url: &str, options: &ProofOptions<'_>) -> String {
        let htu = url.split(['?', '#']).next().unwrap_or_default();
        let iat = options
            .issued_at
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("the system RNG works");
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = options.access_token {
            claims["ath"] = json!(token_hash(token));
        }
        if let Some(nonce) = options.nonce {
            claims["nonce"] = json!(nonce);
        }
        let header = json!({
            "typ": "dpop+jwt",
            "alg": self.algorithm().name(),
            "jwk": self.jwk,
        });
        self.sign(&header, &claims)
    }

    /// Signs any header and claims with this key: a compact JWS. For tests that need proofs no
    /// honest client makes.
    #[cfg(any(test, feature = "internals"))]
    #[doc(hidden)]
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        self.sign(header, claims)
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&self.rng, signing_input.as_bytes())
                .expect("signing with a valid key works")
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(signing_input.as_bytes()).as_ref().to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn unsupported(algorithm: JwsAlgorithm) -> ConfigError {
    ConfigError::Invalid {
        setting: "DPoP key",
        reason: format!("{algorithm} keys cannot be generated here: use ES256 or EdDSA"),
    }
}
