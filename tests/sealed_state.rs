//! `StateSealer`: sealed sessionless state round-trips, and every misuse fails with its own error.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::json;
use tower_introspect::Principal;
use tower_introspect::mcp::{
    DEFAULT_MAX_SEALED_LEN, KeyError, OpenError, OwnerKey, SealError, SealingKey, StateSealer,
};

const RESOURCE: &str = "https://mcp.example/mcp";
const TTL: Duration = Duration::from_secs(600);

fn principal(sub: &str, client: &str) -> Principal {
    let mut claims = tower_introspect::claims::TokenClaims::default();
    claims.issuer = Some("https://as.example".into());
    claims.subject = Some(sub.into());
    claims.client_id = Some(client.into());
    Principal::new(claims)
}

fn alice() -> Principal {
    principal("alice", "app")
}

fn key(id: &str, byte: u8) -> SealingKey {
    SealingKey::new(id, vec![byte; 32]).unwrap()
}

fn sealer() -> StateSealer {
    StateSealer::new(key("k1", 1))
}

fn sealed() -> String {
    sealer()
        .seal(&alice(), RESOURCE, TTL, b"cursor=42")
        .unwrap()
}

fn open(sealer: &StateSealer, sealed: &str) -> Result<Vec<u8>, OpenError> {
    sealer.open(&alice(), RESOURCE, sealed)
}

/// The sealed value with its decoded bytes passed through `change`.
fn reencoded(sealed: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let (prefix, data) = sealed.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(data).unwrap();
    change(&mut raw);
    format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(raw))
}

#[test]
fn sealed_bytes_round_trip_with_a_versioned_url_safe_encoding() {
    let sealed = sealed();
    assert!(sealed.starts_with("v1.k1."), "{sealed}");
    assert!(
        sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{sealed}"
    );
    assert_eq!(open(&sealer(), &sealed).unwrap(), b"cursor=42");
}

#[test]
fn sealed_json_round_trips() {
    let state = json!({"step": 2, "items": ["a", "b"]});
    let sealed = sealer().seal_json(&alice(), RESOURCE, TTL, &state).unwrap();
    let opened: serde_json::Value = sealer().open_json(&alice(), RESOURCE, &sealed).unwrap();
    assert_eq!(opened, state);
    let wrong_type = sealer().open_json::<u32>(&alice(), RESOURCE, &sealed);
    assert!(
        matches!(wrong_type, Err(OpenError::Payload(_))),
        "{wrong_type:?}"
    );
}

#[test]
fn another_principal_is_refused() {
    let sealed = sealed();
    for other in [principal("bob", "app"), principal("alice", "other-app")] {
        let result = sealer().open(&other, RESOURCE, &sealed);
        assert!(
            matches!(result, Err(OpenError::WrongPrincipal)),
            "{result:?}"
        );
    }
}

#[test]
fn another_resource_is_refused() {
    let result = sealer().open(&alice(), "https://other.example/mcp", &sealed());
    assert!(
        matches!(result, Err(OpenError::WrongResource)),
        "{result:?}"
    );
}

#[test]
fn expired_state_is_refused_and_valid_until_then() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let sealed = sealer()
        .seal_at(&alice(), RESOURCE, start, TTL, b"x")
        .unwrap();
    let just_before = start + TTL - Duration::from_secs(1);
    assert_eq!(
        sealer()
            .open_at(&alice(), RESOURCE, &sealed, just_before)
            .unwrap(),
        b"x"
    );
    let result = sealer().open_at(&alice(), RESOURCE, &sealed, start + TTL);
    assert!(matches!(result, Err(OpenError::Expired)), "{result:?}");
}

#[test]
fn every_tampered_byte_fails_the_integrity_check() {
    let sealed = sealed();
    let len = URL_SAFE_NO_PAD
        .decode(sealed.rsplit_once('.').unwrap().1)
        .unwrap()
        .len();
    for position in 0..len {
        let tampered = reencoded(&sealed, |raw| raw[position] ^= 0x01);
        let result = open(&sealer(), &tampered);
        assert!(
            matches!(result, Err(OpenError::Forged)),
            "byte {position}: {result:?}"
        );
    }
}

#[test]
fn appended_bytes_fail_the_integrity_check() {
    let tampered = reencoded(&sealed(), |raw| raw.push(0));
    assert!(matches!(open(&sealer(), &tampered), Err(OpenError::Forged)));
}

#[test]
fn every_truncation_is_refused() {
    let sealed = sealed();
    for end in 0..sealed.len() {
        let result = open(&sealer(), &sealed[..end]);
        assert!(
            matches!(result, Err(OpenError::Malformed | OpenError::Forged)),
            "prefix of {end}: {result:?}"
        );
    }
}

#[test]
fn garbage_and_other_versions_are_refused() {
    for garbage in [
        "",
        "v1",
        "v1..",
        "v1.k1.",
        "v1.k1.!!!!",
        "v1.bad id.AAAA",
        "hello",
    ] {
        let result = open(&sealer(), garbage);
        assert!(
            matches!(result, Err(OpenError::Malformed)),
            "{garbage:?}: {result:?}"
        );
    }
    let v2 = sealed().replacen("v1.", "v2.", 1);
    assert!(matches!(
        open(&sealer(), &v2),
        Err(OpenError::UnsupportedVersion)
    ));
}

#[test]
fn unknown_key_id_is_refused() {
    let renamed = sealed().replacen("v1.k1.", "v1.k9.", 1);
    assert!(matches!(
        open(&sealer(), &renamed),
        Err(OpenError::UnknownKey)
    ));
}

#[test]
fn a_value_relabelled_with_another_known_key_id_is_forged() {
    let both = sealer().verify_with(key("k2", 2)).unwrap();
    let relabelled = sealed().replacen("v1.k1.", "v1.k2.", 1);
    assert!(matches!(open(&both, &relabelled), Err(OpenError::Forged)));
}

#[test]
fn rotation_new_key_signs_old_key_verifies_until_rotated_out() {
    let old_value = sealed();
    let rotated = StateSealer::new(key("k2", 2))
        .verify_with(key("k1", 1))
        .unwrap();
    let new_value = rotated.seal(&alice(), RESOURCE, TTL, b"new").unwrap();
    assert!(new_value.starts_with("v1.k2."), "{new_value}");
    assert_eq!(open(&rotated, &old_value).unwrap(), b"cursor=42");
    assert_eq!(open(&rotated, &new_value).unwrap(), b"new");
    // A server still on the old key accepts the new key once told to verify with it.
    let upcoming = sealer().verify_with(key("k2", 2)).unwrap();
    assert_eq!(open(&upcoming, &new_value).unwrap(), b"new");

    let rotated_out = StateSealer::new(key("k2", 2));
    assert!(matches!(
        open(&rotated_out, &old_value),
        Err(OpenError::UnknownKey)
    ));
    assert_eq!(open(&rotated_out, &new_value).unwrap(), b"new");
}

#[test]
fn same_key_id_with_another_secret_is_forged() {
    let impostor = StateSealer::new(key("k1", 9));
    assert!(matches!(open(&impostor, &sealed()), Err(OpenError::Forged)));
}

#[test]
fn oversized_values_are_refused_before_decoding_and_never_sealed() {
    let huge = format!("v1.k1.{}", "A".repeat(DEFAULT_MAX_SEALED_LEN));
    let result = open(&sealer(), &huge);
    assert!(
        matches!(
            result,
            Err(OpenError::TooLarge {
                max: DEFAULT_MAX_SEALED_LEN
            })
        ),
        "{result:?}"
    );
    let fits = sealer().seal(&alice(), RESOURCE, TTL, b"ok").unwrap();
    let exact = sealer().max_sealed_len(fits.len());
    assert!(exact.seal(&alice(), RESOURCE, TTL, b"ok").is_ok());
    assert_eq!(exact.open(&alice(), RESOURCE, &fits).unwrap(), b"ok");
    let short = sealer().max_sealed_len(fits.len() - 1);
    let result = short.seal(&alice(), RESOURCE, TTL, b"ok");
    assert!(
        matches!(result, Err(SealError::TooLarge { max }) if max == fits.len() - 1),
        "{result:?}"
    );
    let result = short.open(&alice(), RESOURCE, &fits);
    assert!(
        matches!(result, Err(OpenError::TooLarge { .. })),
        "{result:?}"
    );
}

#[test]
fn a_principal_naming_nobody_cannot_seal_or_open() {
    let nobody = Principal::new(tower_introspect::claims::TokenClaims::default());
    assert!(OwnerKey::of(&nobody).is_none());
    assert!(matches!(
        sealer().seal(&nobody, RESOURCE, TTL, b"x"),
        Err(SealError::Unattributable)
    ));
    assert!(matches!(
        sealer().open(&nobody, RESOURCE, &sealed()),
        Err(OpenError::Unattributable)
    ));
}

#[test]
fn keys_are_validated_and_secrets_never_shown() {
    assert_eq!(SealingKey::new("", [0; 32]).unwrap_err(), KeyError::BadId);
    assert_eq!(
        SealingKey::new("a.b", [0; 32]).unwrap_err(),
        KeyError::BadId
    );
    assert_eq!(
        SealingKey::new("x".repeat(33), [0; 32]).unwrap_err(),
        KeyError::BadId
    );
    assert_eq!(
        SealingKey::new("k", [0; 31]).unwrap_err(),
        KeyError::ShortSecret
    );
    assert_eq!(
        sealer().verify_with(key("k1", 2)).unwrap_err(),
        KeyError::DuplicateId
    );
    let shown = format!("{:?} {:?}", key("k1", 0xab), sealer());
    assert!(!shown.contains("171") && !shown.contains("ab, "), "{shown}");
    assert!(shown.contains("k1"), "{shown}");
}

#[test]
fn owner_keys_scope_handles_per_principal() {
    let alice_key = OwnerKey::of(&alice()).unwrap();
    assert_eq!(alice_key, OwnerKey::of(&alice()).unwrap());
    assert_ne!(alice_key, OwnerKey::of(&principal("bob", "app")).unwrap());
    let scoped = alice_key.scoped("note-1");
    assert_eq!(scoped, format!("{alice_key}:note-1"));
    assert_eq!(scoped.len(), 64 + ":note-1".len());
    assert_ne!(
        scoped,
        OwnerKey::of(&principal("bob", "app"))
            .unwrap()
            .scoped("note-1")
    );
}

/// Principals that name nobody, as the bearer layer hands them to a handler: owned by their
/// token's digest, so each token is its own owner and state never crosses between them.
#[tokio::test]
async fn token_only_principals_are_bound_to_their_own_token() {
    let server = wiremock::MockServer::start().await;
    let anonymous_claims = json!({
        "active": true, "aud": common::RESOURCE, "iss": common::ISSUER, "exp": common::now() + 3600,
    });
    for token in ["token-a", "token-b"] {
        common::expect_introspection(&server, token, anonymous_claims.clone(), 1).await;
    }
    let app = common::protected(
        common::introspector_for(&server).build().unwrap(),
        tower_introspect::cache::CacheConfig::default(),
        |layer| layer,
    );
    let addr = common::serve(app.router).await;
    let mut principals = Vec::new();
    for token in ["token-a", "token-b", "token-a"] {
        let answer = common::get(addr, "/mcp", &[&common::bearer(token)]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        principals.push(app.seen.last().expect("the handler saw a principal"));
    }
    let [a, b, a_again] = principals.try_into().unwrap();
    assert!(a.subject().is_none() && a.client_id().is_none());
    assert_eq!(OwnerKey::of(&a).unwrap(), OwnerKey::of(&a_again).unwrap());
    assert_ne!(OwnerKey::of(&a).unwrap(), OwnerKey::of(&b).unwrap());

    let sealed = sealer().seal(&a, RESOURCE, TTL, b"a's state").unwrap();
    assert_eq!(
        sealer().open(&a_again, RESOURCE, &sealed).unwrap(),
        b"a's state"
    );
    let result = sealer().open(&b, RESOURCE, &sealed);
    assert!(
        matches!(result, Err(OpenError::WrongPrincipal)),
        "{result:?}"
    );
}

proptest! {
    #[test]
    fn opening_any_input_never_panics(input in ".{0,200}") {
        let _ = open(&sealer(), &input);
        let _ = open(&sealer(), &format!("v1.k1.{input}"));
    }

    #[test]
    fn opening_any_bytes_under_a_valid_prefix_never_panics_nor_succeeds(
        raw in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let forged = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode(&raw));
        prop_assert!(open(&sealer(), &forged).is_err());
    }
}
