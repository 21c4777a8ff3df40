//! DPoP proofs (RFC 9449 §4.3) judged by the library's `ProofChecker` for one fixed request
//! (`GET https://rs.example/mcp` presenting the access token `token-1`) at a fixed time.
//!
//! For any input, the checker never panics. The input's first byte picks the mode: even, the rest
//! is the proof itself, and a proof that is accepted must be what an independent reading (RFC
//! 4648 §5, RFC 7515 §7.1, RFC 7638, RFC 9449 §4.2) says is a valid proof for that request; odd,
//! the rest steers a generator that builds the header and claims from menus of valid and
//! invalid values and signs them with the proof's key, another key, or damages the signature.
//! Then a proof with no defect must be accepted, naming its key's thumbprint, recorded once and
//! refused as a replay the second time; a proof with defects must be refused for one of them.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tower_introspect::dpop::{DpopKey, ProofChecker, ProofError, ProofTarget};
use tower_introspect::jwt::JwsAlgorithm;
use url::Url;

use crate::invariants::jwt_access_token::{decode, encode};

/// The checker's clock.
pub const NOW: u64 = 1_800_000_000;
/// The request's URL.
pub const URL: &str = "https://rs.example/mcp";
/// The access token the request presents.
pub const TOKEN: &str = "token-1";
/// The checker's default window, in seconds.
const WINDOW: i64 = 300;

fn keys() -> &'static [DpopKey; 2] {
    static KEYS: OnceLock<[DpopKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            DpopKey::generate(JwsAlgorithm::ES256).expect("key"),
            DpopKey::generate(JwsAlgorithm::ES256).expect("other key"),
        ]
    })
}

fn checked(
    proof: &str,
) -> (
    ProofChecker,
    Result<tower_introspect::dpop::VerifiedProof, ProofError>,
) {
    let checker = ProofChecker::default();
    let url = Url::parse(URL).expect("the URL");
    let verdict = checker.check_at(
        proof,
        &ProofTarget::new("GET", &url),
        Some(TOKEN),
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    (checker, verdict)
}

/// `base64url(SHA-256(text))`.
fn hash(text: &str) -> String {
    encode(&Sha256::digest(text.as_bytes()))
}

/// The RFC 7638 thumbprint of an EC public JWK, written out member by member.
fn ec_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let text = |name: &str| jwk.get(name)?.as_str().map(str::to_owned);
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        text("crv")?,
        text("kty")?,
        text("x")?,
        text("y")?
    );
    Some(hash(&canonical))
}

/// Checks the checker on `data`.
pub fn check(data: &[u8]) {
    match data.split_first() {
        Some((mode, steer)) if mode % 2 == 1 => generated(steer),
        Some((_, proof)) => raw(&String::from_utf8_lossy(proof)),
        None => raw(""),
    }
}

/// A proof as given: refused, or exactly valid by an independent reading.
fn raw(proof: &str) {
    let (checker, verdict) = checked(proof);
    let Ok(verified) = verdict else { return };
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "an accepted proof has three parts");
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(parts[0]).expect("canonical header")).expect("JSON header");
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(parts[1]).expect("canonical claims")).expect("JSON claims");
    let typ = header["typ"].as_str().expect("typ").to_ascii_lowercase();
    assert!(typ == "dpop+jwt" || typ == "application/dpop+jwt", "{typ}");
    let jwk = header["jwk"].as_object().expect("jwk");
    assert!(!jwk.contains_key("d"), "a private key was accepted");
    if jwk.get("kty") == Some(&json!("EC")) {
        assert_eq!(Some(verified.thumbprint().to_owned()), ec_thumbprint(jwk));
    }
    assert_eq!(claims["htm"], "GET");
    let htu = Url::parse(claims["htu"].as_str().expect("htu")).expect("htu is a URL");
    assert_eq!(
        (htu.scheme(), htu.host_str(), htu.port_or_known_default()),
        ("https", Some("rs.example"), Some(443))
    );
    let iat = claims["iat"].as_f64().expect("iat") as i64;
    assert!((iat - NOW as i64).abs() <= WINDOW, "iat {iat}");
    assert_eq!(claims["ath"], json!(hash(TOKEN)));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        checker.record_at(&verified, UNIX_EPOCH + Duration::from_secs(NOW)),
        Ok(())
    );
}

/// Reads choices from the steering bytes (zeros once they run out: the valid choice).
struct Steer<'a>(&'a [u8]);

impl Steer<'_> {
    fn pick(&mut self, options: usize) -> usize {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        usize::from(first) % options
    }
}

/// A member's value from a menu: (`None` leaves it out, the defect it causes or `None`).
type Menu = &'static [(Option<fn() -> Value>, Option<ProofError>)];

fn choose(steer: &mut Steer<'_>, menu: Menu) -> (Option<Value>, Option<ProofError>) {
    let (value, defect) = menu[steer.pick(menu.len())];
    (value.map(|f| f()), defect)
}

const TYP: Menu = &[
    (Some(|| json!("dpop+jwt")), None),
    (Some(|| json!("DPoP+JWT")), None),
    (Some(|| json!("application/dpop+jwt")), None),
    (Some(|| json!("at+jwt")), Some(ProofError::WrongType)),
    (None, Some(ProofError::WrongType)),
];
const ALG: Menu = &[
    (Some(|| json!("ES256")), None),
    (
        Some(|| json!("ES384")),
        Some(ProofError::UnsupportedAlgorithm),
    ),
    (
        Some(|| json!("HS256")),
        Some(ProofError::UnsupportedAlgorithm),
    ),
    (
        Some(|| json!("none")),
        Some(ProofError::UnsupportedAlgorithm),
    ),
    (Some(|| json!("EdDSA")), Some(ProofError::InvalidKey)),
    (Some(|| json!(["ES256"])), Some(ProofError::Malformed)),
];
const HTM: Menu = &[
    (Some(|| json!("GET")), None),
    (Some(|| json!("get")), Some(ProofError::WrongMethod)),
    (Some(|| json!("POST")), Some(ProofError::WrongMethod)),
    (Some(|| json!(7)), Some(ProofError::Malformed)),
    (None, Some(ProofError::Malformed)),
];
const HTU: Menu = &[
    (Some(|| json!(URL)), None),
    (Some(|| json!("https://rs.example/mcp?x=1#f")), None),
    (Some(|| json!("HTTPS://RS.example:443/mcp")), None),
    (Some(|| json!("https://rs.example/a/../mcp")), None),
    (
        Some(|| json!("https://rs.example/other")),
        Some(ProofError::WrongUrl),
    ),
    (
        Some(|| json!("http://rs.example/mcp")),
        Some(ProofError::WrongUrl),
    ),
    (
        Some(|| json!("https://rs.example:8443/mcp")),
        Some(ProofError::WrongUrl),
    ),
    (Some(|| json!("/mcp")), Some(ProofError::WrongUrl)),
    (None, Some(ProofError::Malformed)),
];
const IAT: Menu = &[
    (Some(|| json!(NOW)), None),
    (Some(|| json!(NOW - 300)), None),
    (Some(|| json!(NOW + 300)), None),
    (Some(|| json!(NOW - 301)), Some(ProofError::NotFresh)),
    (Some(|| json!(NOW + 301)), Some(ProofError::NotFresh)),
    (Some(|| json!(1e300)), Some(ProofError::NotFresh)),
    (Some(|| json!(-1)), Some(ProofError::NotFresh)),
    (Some(|| json!("1800000000")), Some(ProofError::Malformed)),
    (None, Some(ProofError::Malformed)),
];
const ATH: Menu = &[
    (Some(|| json!(hash(TOKEN))), None),
    (
        Some(|| json!(hash("token-2"))),
        Some(ProofError::WrongTokenHash),
    ),
    (Some(|| json!(5)), Some(ProofError::Malformed)),
    (None, Some(ProofError::WrongTokenHash)),
];
const JTI: Menu = &[
    (Some(|| json!("jti-1")), None),
    (Some(|| json!("")), Some(ProofError::Malformed)),
    (Some(|| json!("j".repeat(257))), Some(ProofError::Malformed)),
    (Some(|| json!(1)), Some(ProofError::Malformed)),
    (None, Some(ProofError::Malformed)),
];

/// A proof built from menus: accepted exactly when nothing is wrong with it.
fn generated(steer: &[u8]) {
    let mut steer = Steer(steer);
    let [key, other] = keys();
    let mut defects = BTreeSet::new();
    let mut header = Map::new();
    let mut claims = Map::new();
    for (in_header, name, menu) in [
        (true, "typ", TYP),
        (true, "alg", ALG),
        (false, "htm", HTM),
        (false, "htu", HTU),
        (false, "iat", IAT),
        (false, "ath", ATH),
        (false, "jti", JTI),
    ] {
        let (value, defect) = choose(&mut steer, menu);
        let object = if in_header { &mut header } else { &mut claims };
        if let Some(value) = value {
            object.insert(name.to_owned(), value);
        }
        defects.extend(defect.map(|d| d.as_str()));
    }
    let mut jwk = key.public_jwk().clone();
    // Whose public key the header carries: the signature must be that key's.
    let mut holder = key;
    match steer.pick(6) {
        0 => {}
        1 => jwk["kid"] = json!("k1"),
        2 => {
            jwk = other.public_jwk().clone();
            holder = other;
        }
        3 => {
            jwk["d"] = json!(encode(&[1; 32]));
            defects.insert(ProofError::InvalidKey.as_str());
        }
        4 => {
            jwk = json!({"kty": "oct", "k": "c2VjcmV0"});
            defects.insert(ProofError::InvalidKey.as_str());
        }
        _ => {
            jwk = Value::Null;
            defects.insert(ProofError::InvalidKey.as_str());
        }
    }
    if !jwk.is_null() {
        header.insert("jwk".to_owned(), jwk);
    }
    let header = Value::Object(header);
    let claims = Value::Object(claims);
    let signer = match steer.pick(3) {
        0 => Some(key),
        1 => None,
        _ => Some(other),
    };
    if signer.is_none_or(|signer| !std::ptr::eq(signer, holder)) {
        defects.insert(ProofError::InvalidSignature.as_str());
    }
    let proof = match signer {
        Some(signer) => signer.sign_raw(&header, &claims),
        None => {
            // A valid signature, of another message.
            let forged = key.sign_raw(&header, &json!({"jti": "other"}));
            let signature = forged.rsplit('.').next().expect("three parts");
            format!(
                "{}.{}.{signature}",
                encode(header.to_string().as_bytes()),
                encode(claims.to_string().as_bytes())
            )
        }
    };
    let (checker, verdict) = checked(&proof);
    match verdict {
        Ok(verified) => {
            assert!(
                defects.is_empty(),
                "accepted despite {defects:?}: {header} {claims}"
            );
            assert_eq!(verified.thumbprint(), holder.thumbprint());
            let now = UNIX_EPOCH + Duration::from_secs(NOW);
            assert_eq!(checker.record_at(&verified, now), Ok(()));
            assert_eq!(checker.record_at(&verified, now), Err(ProofError::Replayed));
        }
        Err(error) => assert!(
            defects.contains(error.as_str()),
            "refused as {error:?} but its defects are {defects:?}: {header} {claims}"
        ),
    }
}
