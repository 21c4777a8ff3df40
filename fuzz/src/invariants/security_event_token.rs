//! Security Event Tokens (RFC 8417) received by the library's Shared Signals receiver
//! (`src/ssf/`, via `SsfReceiver::receive`) for one transmitter and one audience, trusting the
//! JWT target's key set with ES256 only, at the current time.
//!
//! For any input, the receiver never panics. The input's first byte picks the mode: even, the rest
//! is the SET itself, and a SET that is accepted must be what an independent reading (RFC 4648 §5,
//! RFC 7515 §7.1, RFC 8417) says is a valid SET: three canonical base64url parts, `alg` ES256 and
//! `typ` `secevent+jwt`, signed by key `a` (checked with its PEM file), `iss` exactly the
//! transmitter, `aud` naming the receiver, `iat` within the hour before now (or a minute after),
//! a `jti` and a non-empty `events` object. Odd, the rest steers a generator that builds the header
//! and claims from menus of valid and invalid values and signs them with key `a`, an untrusted
//! key, keys of other algorithms, or damages the signature: a SET with no defect must be accepted,
//! and refused as a replay when received again; a SET with defects must be refused with the RFC
//! 8935 error code of one of them, and act on nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use serde_json::{Map, Value, json};
use tower_introspect::cache::{CacheConfig, CachedVerifier};
use tower_introspect::error::InvalidToken;
use tower_introspect::jwt::JwsAlgorithm;
use tower_introspect::ssf::{SetError, SsfReceiver, event};
use tower_introspect::{Principal, TokenVerifier, VerifyError};

use crate::invariants::jwt_access_token::{JWKS, Signer, decode, encode, signed_by_a};

/// The transmitter the receiver trusts.
pub const TRANSMITTER: &str = "https://tr.example";
/// The receiver's audience.
pub const AUDIENCE: &str = "rs-1";
/// The receiver's default oldest `iat`, in seconds.
const MAX_AGE: i64 = 3600;
/// Its default allowance for an `iat` in the future, in seconds.
const LEEWAY: i64 = 60;

/// A verifier with nothing to verify: the receiver needs a cache to act on.
struct Nothing;

impl TokenVerifier for Nothing {
    async fn verify(&self, _token: &str) -> Result<Principal, VerifyError> {
        Err(InvalidToken::Inactive.into())
    }
}

fn receiver() -> SsfReceiver {
    let cache = CachedVerifier::new(Nothing, CacheConfig::default());
    SsfReceiver::builder(TRANSMITTER, AUDIENCE)
        .jwks(JWKS)
        .algorithms([JwsAlgorithm::ES256])
        .invalidates(&cache)
        .build()
        .expect("the fuzz receiver's configuration")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn receive(receiver: &SsfReceiver, set: &str) -> Result<(), SetError> {
    receiver
        .receive(set)
        .now_or_never()
        .expect("fixed keys: nothing to wait for")
        .map(drop)
}

/// Checks one input (see the module documentation).
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(&String::from_utf8_lossy(rest));
    } else {
        built(rest);
    }
}

fn raw(set: &str) {
    let receiver = receiver();
    let start = now();
    if receive(&receiver, set).is_ok() {
        assert!(
            independently_valid(set, start),
            "accepted a SET an independent reading refuses: {set:?}"
        );
    }
}

/// Whether `set` is a valid SET for the receiver, read without the library.
fn independently_valid(set: &str, now: i64) -> bool {
    let parts: Vec<&str> = set.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return false;
    };
    let object = |part: &str| {
        decode(part)
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|v| v.as_object().cloned())
    };
    let (Some(header), Some(claims)) = (object(header), object(claims)) else {
        return false;
    };
    if decode(signature).is_none_or(|s| s.is_empty()) {
        return false;
    }
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    let typ = typ.to_ascii_lowercase();
    let typ_ok = typ == "secevent+jwt" || typ == "application/secevent+jwt";
    let signing_input = &set[..set.rfind('.').expect("three parts")];
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    let iat_ok = claims
        .get("iat")
        .and_then(Value::as_i64)
        // The receiver's clock reads at or after `now`.
        .is_some_and(|iat| iat >= now - MAX_AGE - 5 && iat <= now + LEEWAY + 5);
    header.get("alg") == Some(&json!("ES256"))
        && typ_ok
        && signed_by_a(signing_input, signature)
        && claims.get("iss") == Some(&json!(TRANSMITTER))
        && aud_ok
        && iat_ok
        && claims
            .get("jti")
            .and_then(Value::as_str)
            .is_some_and(|jti| !jti.is_empty())
        && claims
            .get("events")
            .and_then(Value::as_object)
            .is_some_and(|events| !events.is_empty())
}

/// What a menu choice breaks, as the RFC 8935 code a refusal for it carries.
type Defects = Vec<&'static str>;

/// Picks an entry of `menu` with the next steering byte (0 when the input is used up).
fn pick<'s, 'm, T>(steer: &mut impl Iterator<Item = &'s u8>, menu: &'m [T]) -> &'m T {
    let byte = steer.next().copied().unwrap_or(0);
    &menu[usize::from(byte) % menu.len()]
}

fn built(steer: &[u8]) {
    let now = now();
    let mut steer = steer.iter();
    let mut defects: Defects = Vec::new();
    let mut note = |ok: bool, code: &'static str| {
        if !ok {
            defects.push(code);
        }
    };

    // Header.
    let (typ, typ_ok) = *pick(
        &mut steer,
        &[
            (Some("secevent+jwt"), true),
            (Some("application/secevent+jwt"), true),
            (Some("SecEvent+JWT"), true),
            (Some("at+jwt"), false),
            (Some("JWT"), false),
            (None, false),
        ],
    );
    note(typ_ok, "invalid_request");
    // (alg, signer, damage the signature, valid)
    let (alg, signer, damaged, key_ok) = *pick(
        &mut steer,
        &[
            ("ES256", Signer::A, false, true),
            ("ES256", Signer::B, false, false),
            ("RS256", Signer::Rsa, false, false),
            ("EdDSA", Signer::Ed, false, false),
            ("ES256", Signer::A, true, false),
            ("HS256", Signer::A, false, false),
        ],
    );
    note(key_ok, "invalid_key");
    let (kid, kid_ok) = *pick(
        &mut steer,
        &[
            (Some("a"), true),
            (None, true),
            (Some("b"), false),
            (Some("zz"), false),
        ],
    );
    note(kid_ok, "invalid_key");
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg));
    if let Some(typ) = typ {
        header.insert("typ".into(), json!(typ));
    }
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }

    // Claims.
    let mut claims = Map::new();
    let mut set = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            claims.insert(name.into(), value);
        }
    };
    let (iss, ok) = pick(
        &mut steer,
        &[
            (Some(json!(TRANSMITTER)), true),
            (Some(json!("https://tr.example/")), false),
            (Some(json!("HTTPS://TR.EXAMPLE")), false),
            (Some(json!(7)), false),
            (None, false),
        ],
    )
    .clone();
    note(ok, "invalid_issuer");
    set("iss", iss);
    let (aud, ok) = pick(
        &mut steer,
        &[
            (Some(json!(AUDIENCE)), true),
            (Some(json!(["other", AUDIENCE])), true),
            (Some(json!("RS-1")), false),
            (Some(json!(["other"])), false),
            (Some(json!([[AUDIENCE]])), false),
            (None, false),
        ],
    )
    .clone();
    note(ok, "invalid_audience");
    set("aud", aud);
    let (iat, ok) = pick(
        &mut steer,
        &[
            (Some(json!(now)), true),
            (Some(json!(now - 1800)), true),
            (Some(json!(now + 20)), true),
            (Some(json!(now - 7300)), false),
            (Some(json!(now + 600)), false),
            (Some(json!(now.to_string())), false),
            (Some(json!(1e300)), false),
            (None, false),
        ],
    )
    .clone();
    note(ok, "invalid_request");
    set("iat", iat);
    let (exp, ok) = pick(
        &mut steer,
        &[
            (None, true),
            (Some(json!(now + 600)), true),
            (Some(json!(now - 600)), false),
            (Some(json!("later")), false),
        ],
    )
    .clone();
    note(ok, "invalid_request");
    set("exp", exp);
    let jti = format!("jti-{}", now.rem_euclid(1000));
    let (jti, ok) = pick(
        &mut steer,
        &[
            (Some(json!(jti)), true),
            (Some(json!("j".repeat(256))), true),
            (Some(json!("j".repeat(257))), false),
            (Some(json!("")), false),
            (Some(json!(12)), false),
            (None, false),
        ],
    )
    .clone();
    note(ok, "invalid_request");
    set("jti", jti);
    let many: Map<String, Value> = (0..17)
        .map(|i| (format!("https://example.com/e{i}"), json!({})))
        .collect();
    let (events, ok) = pick(
        &mut steer,
        &[
            (Some(json!({event::CREDENTIAL_CHANGE: {}})), true),
            (Some(json!({"https://example.com/unknown": {"x": 1}})), true),
            (
                Some(json!({event::TOKEN_REVOKED: {}, event::SESSION_REVOKED: {}})),
                true,
            ),
            (Some(json!({})), false),
            (Some(json!([event::CREDENTIAL_CHANGE])), false),
            (Some(json!({event::CREDENTIAL_CHANGE: "revoked"})), false),
            (Some(Value::Object(many)), false),
            (None, false),
        ],
    )
    .clone();
    note(ok, "invalid_request");
    set("events", events);
    // The subject never makes a SET invalid: an unusable one is acknowledged as unmatched.
    let mut deep = json!({"format": "opaque", "id": "x"});
    for _ in 0..8 {
        deep = json!({"format": "complex", "user": deep});
    }
    let sub_id = pick(
        &mut steer,
        &[
            Some(json!({"format": "iss_sub", "iss": TRANSMITTER, "sub": "alice"})),
            None,
            Some(deep),
            Some(json!("alice")),
            Some(json!({"format": "jwt_id", "iss": TRANSMITTER})),
        ],
    )
    .clone();
    set("sub_id", sub_id);

    let header = Value::Object(header).to_string();
    let claims = Value::Object(claims).to_string();
    let signing_input = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(claims.as_bytes())
    );
    let mut signature = signer.sign(&signing_input);
    if damaged {
        // Another message's signature by the same key.
        signature = signer.sign(&format!("{signing_input}x"));
    }
    let set = format!("{signing_input}.{signature}");

    let receiver = receiver();
    let verdict = receive(&receiver, &set);
    if defects.is_empty() {
        assert!(
            verdict.is_ok(),
            "a SET without a defect was refused: {verdict:?} {set}"
        );
        let again = receive(&receiver, &set);
        assert!(
            matches!(again, Err(SetError::InvalidRequest(_))),
            "a replay was not refused: {again:?}"
        );
        assert_eq!(receiver.stats().accepted, 1);
    } else {
        let Err(error) = verdict else {
            panic!("a SET with defects {defects:?} was accepted: {set}");
        };
        let code = error.code().expect("a fixed key set is never unavailable");
        assert!(
            defects.contains(&code),
            "refused as {code} ({error}), but its defects are {defects:?}: {set}"
        );
        assert_eq!(receiver.stats().accepted, 0);
        assert_eq!(receiver.stats().verdicts_forgotten, 0);
    }
}
