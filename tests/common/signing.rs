//! Signing keys for tests that play an issuer or a transmitter: JWS signed with the fixtures in
//! `tests/fixtures/jwt`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// A signing key of the tests' issuer, with its public JWK.
#[derive(Clone)]
pub struct Signer {
    pub key: Arc<EncodingKey>,
    pub alg: Algorithm,
    pub kid: String,
    pub jwk: Value,
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn signer(file: &str, alg: Algorithm, kid: &str) -> Signer {
    let pem = fixture(file);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => unreachable!(),
    }
    .unwrap();
    let mut jwk =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap())
            .unwrap();
    jwk["kid"] = json!(kid);
    jwk.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    Signer {
        key: Arc::new(key),
        alg,
        kid: kid.to_owned(),
        jwk,
    }
}

pub fn key_a() -> Signer {
    signer("es256-a.pem", Algorithm::ES256, "key-a")
}

pub fn key_b() -> Signer {
    signer("es256-b.pem", Algorithm::ES256, "key-b")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of `header` and `claims`, signed by `key` with its algorithm.
pub fn sign_raw(key: &Signer, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.key, key.alg).unwrap();
    format!("{input}.{signature}")
}
