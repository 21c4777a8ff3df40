//! An issuer's verification keys: a JWK Set (RFC 7517) read strictly, or keys given in PEM.
//!
//! A key set comes from the network (or an operator's file) and may be wrong in ways that matter:
//! private key material published by mistake (anyone could then sign tokens), keys meant for
//! encryption, symmetric keys, short RSA moduli. Each such key is left out with a logged reason,
//! and the others still serve; a document that is not a key set at all is refused whole.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde_json::{Map, Value};

use super::algorithm::{JwsAlgorithm, KeyFamily};

/// Default bound on the keys of one set. Issuers publish a handful (current, next, previous).
pub const DEFAULT_MAX_KEYS: usize = 32;

/// Shortest RSA modulus accepted, in bits (RFC 7518 §3.3 requires 2048).
const MIN_RSA_BITS: usize = 2048;

/// Members that only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// One public key, with what it may verify.
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    family: KeyFamily,
    /// The key's own `alg`, when the set names one: then it verifies that algorithm only.
    alg: Option<JwsAlgorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Whether this key may verify a signature made with `alg`: same key type and curve, and the
    /// key's own `alg` if it has one. This is what stops an algorithm from being used with a key
    /// meant for another.
    pub(crate) fn fits(&self, alg: JwsAlgorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|own| own == alg)
    }

    /// Checks `signature` (base64url) over `signing_input` with `alg`, which must [fit](Self::fits).
    ///
    /// The key material comes from `jsonwebtoken` (JWK components or PEM, as its own crypto
    /// providers receive it); the signature is checked by `ring`, the crate already behind this
    /// library's TLS: its assembly P-256 and RSA verification costs a fraction of the pure-Rust
    /// backend's on every cache miss.
    pub(crate) fn verify(&self, signing_input: &str, signature: &str, alg: JwsAlgorithm) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.fits(alg) && verify_signature(&self.key, alg, signing_input.as_bytes(), &signature)
    }

    /// A key from PEM (SubjectPublicKeyInfo, or PKCS#1 for RSA) used for `alg` only.
    pub(crate) fn from_pem(
        pem: &[u8],
        alg: JwsAlgorithm,
        kid: Option<String>,
    ) -> Result<Self, String> {
        let key = match alg.family() {
            KeyFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            KeyFamily::EcP256 | KeyFamily::EcP384 => DecodingKey::from_ec_pem(pem),
            KeyFamily::Ed25519 => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| format!("not a {alg} public key in PEM: {e}"))?;
        Ok(Self {
            kid,
            family: alg.family(),
            alg: Some(alg),
            key,
        })
    }
}

/// The usable keys of one set, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerificationKey>>>,
    /// Keys published without a `kid`.
    anonymous: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    pub(crate) fn from_keys(keys: impl IntoIterator<Item = Arc<VerificationKey>>) -> Self {
        let mut set = Self::default();
        for key in keys {
            match &key.kid {
                Some(kid) => set.by_kid.entry(kid.clone()).or_default().push(key),
                None => set.anonymous.push(key),
            }
        }
        set
    }

    /// Every key of the set.
    pub(crate) fn into_keys(self) -> Vec<Arc<VerificationKey>> {
        self.by_kid
            .into_values()
            .flatten()
            .chain(self.anonymous)
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_kid.values().map(Vec::len).sum::<usize>() + self.anonymous.len()
    }

    /// The key for a token's `kid` and `alg`. Without a `kid`, the one key that fits `alg`, if
    /// exactly one does (trying several would let one token cost several verifications).
    pub(crate) fn find(
        &self,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Option<&Arc<VerificationKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid)?.iter().find(|k| k.fits(alg)),
            None => {
                let mut fitting = self
                    .by_kid
                    .values()
                    .flatten()
                    .chain(&self.anonymous)
                    .filter(|k| k.fits(alg));
                let only = fitting.next()?;
                fitting.next().is_none().then_some(only)
            }
        }
    }

    /// The `kid`s in the set.
    #[cfg(test)]
    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }
}

/// Reads a JWK Set document. Keys that cannot or must not verify are left out, each with a
/// logged reason; a document that is not a JSON object with a `keys` array, or has more than
/// `max_keys` keys, is refused.
pub(crate) fn parse_jwks(document: &[u8], max_keys: usize) -> Result<KeySet, String> {
    let value: Value =
        serde_json::from_slice(document).map_err(|e| format!("not a JWK Set: {e}"))?;
    let Some(Value::Array(keys)) = value.get("keys") else {
        return Err("not a JWK Set: no \"keys\" array".into());
    };
    if keys.len() > max_keys {
        return Err(format!(
            "the JWK Set has {} keys, more than the {max_keys} accepted",
            keys.len()
        ));
    }
    let mut usable = Vec::with_capacity(keys.len());
    for (index, jwk) in keys.iter().enumerate() {
        match parse_jwk(jwk) {
            Ok(key) => usable.push(Arc::new(key)),
            Err(reason) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(index, kid, reason, "JWK left out of the key set");
            }
        }
    }
    Ok(KeySet::from_keys(usable))
}

/// One JWK, if it is a public signature-verification key of a supported type.
pub(crate) fn parse_jwk(jwk: &Value) -> Result<VerificationKey, &'static str> {
    let Value::Object(jwk) = jwk else {
        return Err("not a JSON object");
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err("holds private or symmetric key material; it must never be published");
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("\"use\" is not \"sig\""),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"");
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("\"kid\" is not a string"),
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(
            JwsAlgorithm::from_name(name)
                .ok_or("\"alg\" is not a supported signature algorithm")?,
        ),
        Some(_) => return Err("\"alg\" is not a string"),
    };
    let (family, key) = match member(jwk, "kty")? {
        "RSA" => {
            let n = member(jwk, "n")?;
            let e = member(jwk, "e")?;
            let modulus = decoded(n)?;
            let bits =
                modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            let exponent = decoded(e)?;
            if exponent.is_empty() || exponent.len() > 8 {
                return Err("RSA exponent out of range");
            }
            (
                KeyFamily::Rsa,
                DecodingKey::from_rsa_raw_components(&modulus, &exponent),
            )
        }
        "EC" => {
            let (family, size) = match member(jwk, "crv")? {
                "P-256" => (KeyFamily::EcP256, 32),
                "P-384" => (KeyFamily::EcP384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
            if decoded(x)?.len() != size || decoded(y)?.len() != size {
                return Err("EC coordinates of the wrong length");
            }
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC coordinates")?;
            (family, key)
        }
        "OKP" => {
            if member(jwk, "crv")? != "Ed25519" {
                return Err("unsupported OKP curve");
            }
            let x = member(jwk, "x")?;
            if decoded(x)?.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            let key = DecodingKey::from_ed_components(x).map_err(|_| "bad Ed25519 key")?;
            (KeyFamily::Ed25519, key)
        }
        _ => return Err("unsupported key type (only RSA, EC and OKP verify signatures here)"),
    };
    if alg.is_some_and(|alg| alg.family() != family) {
        return Err("\"alg\" does not fit the key type");
    }
    Ok(VerificationKey {
        kid,
        family,
        alg,
        key,
    })
}

/// `ring`'s check of `signature` over `message` with `key` for `alg`.
fn verify_signature(
    key: &DecodingKey,
    alg: JwsAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ring::signature::{self as sig, RsaParameters, VerificationAlgorithm};
    let rsa: Option<&'static RsaParameters> = match alg {
        JwsAlgorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        JwsAlgorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        JwsAlgorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        JwsAlgorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        JwsAlgorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        JwsAlgorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        JwsAlgorithm::ES256 | JwsAlgorithm::ES384 | JwsAlgorithm::EdDSA => None,
    };
    let algorithm: &'static dyn VerificationAlgorithm = match (alg, rsa) {
        (_, Some(rsa)) => rsa,
        (JwsAlgorithm::ES256, None) => &sig::ECDSA_P256_SHA256_FIXED,
        (JwsAlgorithm::ES384, None) => &sig::ECDSA_P384_SHA384_FIXED,
        (_, None) => &sig::ED25519,
    };
    match (key.kind(), rsa) {
        // An EC point (SEC1), an Ed25519 key, or an RSA key in PKCS#1 DER (from PEM).
        (DecodingKeyKind::SecretOrDer(bytes), _) => sig::UnparsedPublicKey::new(algorithm, bytes)
            .verify(message, signature)
            .is_ok(),
        (DecodingKeyKind::RsaModulusExponent { n, e }, Some(rsa)) => {
            sig::RsaPublicKeyComponents { n, e }
                .verify(rsa, message, signature)
                .is_ok()
        }
        (DecodingKeyKind::RsaModulusExponent { .. }, None) => false,
    }
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, &'static str> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or("a required member is missing or not a string")
}

fn decoded(text: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "a member is not unpadded base64url")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    #[test]
    fn keys_that_must_not_verify_are_left_out() {
        let mut private = ec("private");
        private["d"] = json!(b64(&[3; 32]));
        let mut encryption = ec("enc");
        encryption["use"] = json!("enc");
        let mut sign_only = ec("sign-only");
        sign_only["key_ops"] = json!(["sign"]);
        let mut mismatched = ec("rsa-alg");
        mismatched["alg"] = json!("RS256");
        let hmac = json!({"kty": "oct", "kid": "hmac", "k": b64(b"secret")});
        let short_rsa = json!({"kty": "RSA", "kid": "short", "n": b64(&[0xff; 128]), "e": "AQAB"});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "n": b64(&[0xff; 256]), "e": "AQAB"});
        let document = json!({"keys": [
            private, encryption, sign_only, mismatched, hmac, short_rsa, rsa, ec("good"),
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&[4; 32])},
            {"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[4; 32])},
            {"kty": "EC", "crv": "P-256", "kid": "short-ec", "x": b64(&[1; 31]), "y": b64(&[2; 32])},
            "not an object",
        ]});
        let set = parse_jwks(document.to_string().as_bytes(), 32).unwrap();
        let mut kids: Vec<_> = set.kids().collect();
        kids.sort_unstable();
        assert_eq!(kids, ["ed", "good", "rsa"]);
    }

    #[test]
    fn a_key_fits_its_own_type_and_algorithm_only() {
        let set = parse_jwks(
            json!({"keys": [ec("e"), {"kty": "RSA", "kid": "r", "alg": "PS256", "n": b64(&[0xff; 256]), "e": "AQAB"}]})
                .to_string()
                .as_bytes(),
            32,
        )
        .unwrap();
        assert!(set.find(Some("e"), JwsAlgorithm::ES256).is_some());
        assert!(set.find(Some("e"), JwsAlgorithm::ES384).is_none());
        assert!(set.find(Some("e"), JwsAlgorithm::RS256).is_none());
        assert!(set.find(Some("r"), JwsAlgorithm::PS256).is_some());
        assert!(
            set.find(Some("r"), JwsAlgorithm::RS256).is_none(),
            "the key's own alg binds"
        );
        assert!(set.find(Some("missing"), JwsAlgorithm::ES256).is_none());
        // Without a kid: the one key that fits.
        assert!(set.find(None, JwsAlgorithm::ES256).is_some());
    }

    #[test]
    fn documents_that_are_not_key_sets_are_refused() {
        for bad in ["", "[]", "{}", r#"{"keys": {}}"#, "not json"] {
            assert!(parse_jwks(bad.as_bytes(), 32).is_err(), "{bad}");
        }
        let many = json!({"keys": (0..33).map(|i| ec(&i.to_string())).collect::<Vec<_>>()});
        assert!(parse_jwks(many.to_string().as_bytes(), 32).is_err());
    }
}
