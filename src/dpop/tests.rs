//! The proof checker against the proofs an attacker would send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use url::Url;

use super::*;
use crate::jwt::JwsAlgorithm;

const TOKEN: &str = "access-token-1";

fn url() -> Url {
    Url::parse("https://api.example.com/mcp").unwrap()
}

fn checker() -> ProofChecker {
    ProofChecker::default()
}

fn check(checker: &ProofChecker, proof: &str) -> Result<VerifiedProof, ProofError> {
    let url = url();
    checker.check(proof, &ProofTarget::new("POST", &url), Some(TOKEN))
}

fn es256() -> DpopKey {
    DpopKey::generate(JwsAlgorithm::ES256).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims and header an honest client would send, for tampering.
fn honest(key: &DpopKey) -> (Value, Value) {
    let header = json!({"typ": "dpop+jwt", "alg": key.algorithm().name(), "jwk": key.public_jwk()});
    let claims = json!({
        "jti": "j-1", "htm": "POST", "htu": "https://api.example.com/mcp", "iat": now(),
        "ath": proof::token_hash(TOKEN),
    });
    (header, claims)
}

#[test]
fn honest_proofs_pass_and_name_their_key() {
    for alg in [JwsAlgorithm::ES256, JwsAlgorithm::EdDSA] {
        let key = DpopKey::generate(alg).unwrap();
        let proof = key.proof(
            "POST",
            "https://api.example.com/mcp?session=1",
            Some(TOKEN),
            None,
        );
        let verified = check(&checker(), &proof).unwrap();
        assert_eq!(verified.thumbprint(), key.thumbprint());
        assert_eq!(verified.algorithm(), alg);
    }
}

#[test]
fn a_replay_is_refused_once_recorded() {
    let checker = checker();
    let proof = es256().proof("POST", "https://api.example.com/mcp", Some(TOKEN), None);
    let verified = check(&checker, &proof).unwrap();
    checker.record(&verified).unwrap();
    let again = check(&checker, &proof).unwrap();
    assert_eq!(checker.record(&again), Err(ProofError::Replayed));
}

#[test]
fn a_proof_for_another_request_or_token_is_refused() {
    let key = es256();
    let c = checker();
    let cases = [
        (
            key.proof("GET", "https://api.example.com/mcp", Some(TOKEN), None),
            ProofError::WrongMethod,
        ),
        (
            key.proof("post", "https://api.example.com/mcp", Some(TOKEN), None),
            ProofError::WrongMethod,
        ),
        (
            key.proof("POST", "https://api.example.com/other", Some(TOKEN), None),
            ProofError::WrongUrl,
        ),
        (
            key.proof("POST", "https://evil.example.com/mcp", Some(TOKEN), None),
            ProofError::WrongUrl,
        ),
        (
            key.proof("POST", "http://api.example.com/mcp", Some(TOKEN), None),
            ProofError::WrongUrl,
        ),
        (
            key.proof(
                "POST",
                "https://api.example.com/mcp",
                Some("another-token"),
                None,
            ),
            ProofError::WrongTokenHash,
        ),
        (
            key.proof("POST", "https://api.example.com/mcp", None, None),
            ProofError::WrongTokenHash,
        ),
    ];
    for (proof, expected) in cases {
        assert_eq!(check(&c, &proof).map(drop), Err(expected));
    }
}

#[test]
fn iat_must_be_within_the_window() {
    let key = es256();
    let c = checker();
    let at = |offset: i64| {
        let iat = UNIX_EPOCH + Duration::from_secs(now().checked_add_signed(offset).unwrap());
        let options = ProofOptions {
            issued_at: Some(iat),
            ..ProofOptions::new(Some(TOKEN), None)
        };
        key.proof_with("POST", "https://api.example.com/mcp", &options)
    };
    for ok in [-290, 290] {
        assert!(check(&c, &at(ok)).is_ok(), "{ok}");
    }
    for stale in [-310, 310, -100_000, 100_000] {
        assert_eq!(
            check(&c, &at(stale)).map(drop),
            Err(ProofError::NotFresh),
            "{stale}"
        );
    }
}

#[test]
fn keys_and_algorithms_an_attacker_would_try() {
    let key = es256();
    let c = checker();
    let (header, claims) = honest(&key);
    // A private key inside `jwk` (a client that leaks its key must not be accepted).
    let mut private = header.clone();
    private["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
    assert_eq!(
        check(&c, &key.sign_raw(&private, &claims)).map(drop),
        Err(ProofError::InvalidKey)
    );
    // A symmetric key.
    let mut oct = header.clone();
    oct["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert_eq!(
        check(&c, &key.sign_raw(&oct, &claims)).map(drop),
        Err(ProofError::InvalidKey)
    );
    // No key.
    let mut keyless = header.clone();
    keyless.as_object_mut().unwrap().remove("jwk");
    assert_eq!(
        check(&c, &key.sign_raw(&keyless, &claims)).map(drop),
        Err(ProofError::InvalidKey)
    );
    // Another key than the signer's.
    let mut other = header.clone();
    other["jwk"] = es256().public_jwk().clone();
    assert_eq!(
        check(&c, &key.sign_raw(&other, &claims)).map(drop),
        Err(ProofError::InvalidSignature)
    );
    // A key that does not fit the algorithm.
    let mut mismatched = header.clone();
    mismatched["alg"] = json!("EdDSA");
    assert_eq!(
        check(&c, &key.sign_raw(&mismatched, &claims)).map(drop),
        Err(ProofError::InvalidKey)
    );
    // `none`, HMAC, and an algorithm outside the allow-list.
    let unsigned = |alg: &str| {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            if alg == "none" { "" } else { "c2ln" }
        )
    };
    assert_eq!(
        check(&c, &unsigned("none")).map(drop),
        Err(ProofError::Malformed)
    );
    for alg in ["HS256", "RS512", "ES384"] {
        assert_eq!(
            check(&c, &unsigned(alg)).map(drop),
            Err(ProofError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // A wrong type: an access token is not a proof.
    for typ in [json!("at+jwt"), json!("JWT"), Value::Null] {
        let mut h = header.clone();
        h["typ"] = typ;
        assert_eq!(
            check(&c, &key.sign_raw(&h, &claims)).map(drop),
            Err(ProofError::WrongType)
        );
    }
    let mut h = header.clone();
    h["typ"] = json!("application/DPoP+JWT");
    assert!(check(&c, &key.sign_raw(&h, &claims)).is_ok());
    // A flipped signature bit.
    let mut proof = key.sign_raw(&header, &claims).into_bytes();
    let last = proof.len() - 3;
    proof[last] = if proof[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        check(&c, &String::from_utf8(proof).unwrap()).map(drop),
        Err(ProofError::InvalidSignature)
    );
}

#[test]
fn missing_or_mistyped_claims_are_malformed() {
    let key = es256();
    let c = checker();
    let (header, claims) = honest(&key);
    for (name, value) in [
        ("jti", None),
        ("jti", Some(json!(""))),
        ("jti", Some(json!("x".repeat(257)))),
        ("jti", Some(json!(7))),
        ("htm", None),
        ("htu", None),
        ("htu", Some(json!(["https://api.example.com/mcp"]))),
        ("iat", None),
        ("iat", Some(json!("1800000000"))),
        ("ath", Some(json!(1))),
        ("nonce", Some(json!(1))),
    ] {
        let mut tampered = claims.clone();
        match value {
            None => drop(tampered.as_object_mut().unwrap().remove(name)),
            Some(v) => tampered[name] = v,
        }
        assert_eq!(
            check(&c, &key.sign_raw(&header, &tampered)).map(drop),
            Err(ProofError::Malformed),
            "{name}"
        );
    }
    assert_eq!(
        check(&c, &"a".repeat(MAX_PROOF_LENGTH + 1)).map(drop),
        Err(ProofError::Malformed)
    );
    assert_eq!(
        check(&c, "not a proof").map(drop),
        Err(ProofError::Malformed)
    );
}

#[test]
fn nonces_are_required_when_configured() {
    let nonces = NonceSource::new([9u8; 32], Duration::from_secs(300)).unwrap();
    let c = ProofChecker::builder()
        .nonces(nonces.clone())
        .build()
        .unwrap();
    let key = es256();
    let without = key.proof("POST", "https://api.example.com/mcp", Some(TOKEN), None);
    assert_eq!(check(&c, &without).map(drop), Err(ProofError::UseNonce));
    assert_eq!(ProofError::UseNonce.error_code(), "use_dpop_nonce");
    let forged = key.proof(
        "POST",
        "https://api.example.com/mcp",
        Some(TOKEN),
        Some("AAAA"),
    );
    assert_eq!(check(&c, &forged).map(drop), Err(ProofError::UseNonce));
    let nonce = nonces.current();
    let with = key.proof(
        "POST",
        "https://api.example.com/mcp",
        Some(TOKEN),
        Some(&nonce),
    );
    assert!(!check(&c, &with).unwrap().nonce_is_stale());
    // The previous period's nonce still works, and is flagged for a fresh one.
    let previous = nonces.current_at(SystemTime::now() - Duration::from_secs(300));
    let stale = key.proof(
        "POST",
        "https://api.example.com/mcp",
        Some(TOKEN),
        Some(&previous),
    );
    assert!(check(&c, &stale).unwrap().nonce_is_stale());
}

#[test]
fn configuration_mistakes_are_refused() {
    assert!(ProofChecker::builder().algorithms([]).build().is_err());
    assert!(
        ProofChecker::builder()
            .iat_window(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        ProofChecker::builder()
            .iat_window(Duration::from_secs(7200))
            .build()
            .is_err()
    );
    assert!(ProofChecker::builder().replay_capacity(0).build().is_err());
    assert!(matches!(
        Dpop::builder().build(),
        Err(ConfigError::Missing {
            setting: "origin",
            ..
        })
    ));
    assert!(Dpop::builder().policy(DpopPolicy::Disabled).build().is_ok());
    assert!(
        Dpop::builder()
            .origin("https://api.example.com/mcp")
            .build()
            .is_err()
    );
    assert!(DpopKey::generate(JwsAlgorithm::RS256).is_err());
}

#[test]
fn a_key_survives_a_round_trip_through_pkcs8() {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let a = DpopKey::from_pkcs8(JwsAlgorithm::ES256, der.as_ref()).unwrap();
    let b = DpopKey::from_pkcs8(JwsAlgorithm::ES256, der.as_ref()).unwrap();
    assert_eq!(a.thumbprint(), b.thumbprint());
    assert!(DpopKey::from_pkcs8(JwsAlgorithm::EdDSA, der.as_ref()).is_err());
    assert!(!format!("{a:?}").contains("pair"));
}
