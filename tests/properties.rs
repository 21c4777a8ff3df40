//! Property tests of the fuzz targets' invariants: the very checks `fuzz/` runs under libFuzzer
//! (included from `fuzz/src`), here on inputs proptest generates, so that `cargo test` guards them
//! too. See FUZZING.md for what each invariant says.

#[path = "../fuzz/src/auth_param.rs"]
mod auth_param;
#[path = "../fuzz/src/fixtures.rs"]
mod fixtures;
#[path = "../fuzz/src/invariants/mod.rs"]
mod invariants;
#[path = "../fuzz/src/recorder.rs"]
mod recorder;

use invariants::challenge_renderer::Input;
use invariants::{
    authorization_header, challenge_renderer, dpop_proof, introspection_response,
    mcp_body_classifier, security_event_token, session_binding,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Header values built from the pieces that matter (schemes in any case, separators, token
/// characters, the odd control or non-ASCII byte), up to three headers joined by `\n`.
fn authorization_headers() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Bearer".to_vec()),
        Just(b"bEaReR".to_vec()),
        Just(b"Basic".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"=".to_vec()),
        Just(b",".to_vec()),
        Just("é".as_bytes().to_vec()),
        "[A-Za-z0-9._~+/-]{1,12}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    let value = prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat());
    prop::collection::vec(value, 0..4).prop_map(|values| values.join(&b'\n'))
}

/// Introspection answers with every member the validator looks at, around the fixed `NOW`.
fn introspection_bodies() -> impl Strategy<Value = Vec<u8>> {
    let time = prop_oneof![
        Just(Value::Null),
        (-300_i64..300).prop_map(|d| json!(1_800_000_000 + d)),
        (-300.0_f64..300.0).prop_map(|d| json!(1_800_000_000.0 + d)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e300)),
    ];
    let kind = prop_oneof![
        Just(Value::Null),
        Just(json!("Bearer")),
        Just(json!("refresh_token")),
        Just(json!("REFRESH")),
        Just(json!("Offline")),
        Just(json!("urn:ietf:params:oauth:token-type:refresh_token")),
        Just(json!(7)),
    ];
    let name = prop_oneof![
        Just(json!("https://rs.example/mcp")),
        Just(json!("https://as.example")),
        Just(json!("https://rs.example/mcp/")),
        Just(json!(["other", "https://rs.example/mcp"])),
        Just(Value::Null),
    ];
    (
        any::<bool>(),
        time.clone(),
        time,
        (kind.clone(), kind.clone(), kind),
        (name.clone(), name),
        "[a-z \t\u{a0}:]{0,16}",
        (any::<u8>(), any::<u8>()),
    )
        .prop_map(
            |(
                active,
                exp,
                nbf,
                (token_type, token_use, typ),
                (aud, iss),
                scope,
                (flags, leeway),
            )| {
                let body = json!({
                    "active": active, "exp": exp, "nbf": nbf, "token_type": token_type,
                    "token_use": token_use, "typ": typ, "aud": aud, "iss": iss, "scope": scope,
                    "sub": "alice", "client_id": "web",
                });
                let mut data = vec![flags, leeway];
                data.extend(serde_json::to_vec(&body).unwrap());
                data
            },
        )
}

/// JSON-RPC bodies mixing the demo's tools, methods, batches, duplicate keys and escapes.
fn mcp_bodies() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("public_info"),
        Just("read_data"),
        Just("admin_operation"),
        Just("admin\\u005foperation"),
        Just("unknown_tool"),
    ];
    let method = prop_oneof![
        Just("tools/call"),
        Just("tools\\/call"),
        Just("initialize"),
        Just("tools/list"),
        Just("resources/read"),
        Just("prompts/get"),
    ];
    let message = (method, name.clone(), prop::option::of(name), any::<bool>()).prop_map(
        |(method, name, duplicate, notification)| {
            let id = if notification { "" } else { r#""id":1,"# };
            let duplicate = duplicate.map_or(String::new(), |d| format!(r#","name":"{d}""#));
            format!(
                r#"{{"jsonrpc":"2.0",{id}"method":"{method}","params":{{"name":"{name}"{duplicate},"uri":"file:///secret"}}}}"#
            )
        },
    );
    (
        any::<u8>(),
        prop::collection::vec(message, 1..3),
        any::<bool>(),
    )
        .prop_map(|(who, messages, batch)| {
            let body = if batch || messages.len() > 1 {
                format!("[{}]", messages.join(","))
            } else {
                messages.concat()
            };
            [vec![who], body.into_bytes()].concat()
        })
}

fn challenge_inputs() -> impl Strategy<Value = Input> {
    let text = || prop::option::of(any::<String>());
    (
        text(),
        text(),
        text(),
        any::<u8>(),
        prop::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(|(realm, resource_metadata, scope, kind, required)| Input {
            realm,
            resource_metadata,
            scope,
            kind,
            required,
        })
}

fn session_ops() -> impl Strategy<Value = Vec<session_binding::Op>> {
    let raw = prop_oneof![
        Just(b"session-1".to_vec()),
        Just(b"session-2".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), raw), 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authorization_header_parser_accepts_only_exact_b64tokens(data in authorization_headers()) {
        authorization_header::check(&data);
    }

    #[test]
    fn validator_accepts_exactly_the_valid_access_tokens(data in introspection_bodies()) {
        introspection_response::check(&data);
    }

    #[test]
    fn mcp_layer_never_lets_through_what_rmcp_would_run_unauthorised(data in mcp_bodies()) {
        mcp_body_classifier::check(&data);
    }

    #[test]
    fn challenges_carry_exactly_the_intended_parameters(input in challenge_inputs()) {
        challenge_renderer::check(&input);
    }

    #[test]
    fn sessions_never_serve_another_principal(ops in session_ops()) {
        session_binding::check(&ops);
    }

    /// DPoP proofs built from menus of valid and invalid members: accepted exactly when nothing
    /// is wrong, refused for one of their defects otherwise.
    #[test]
    fn dpop_proofs_are_judged_by_their_defects(steer in prop::collection::vec(any::<u8>(), 0..12)) {
        dpop_proof::check(&[[1].as_slice(), &steer].concat());
    }

    /// Any bytes as a proof: refused, or valid by an independent reading.
    #[test]
    fn any_bytes_as_a_dpop_proof_are_judged_safely(proof in "[A-Za-z0-9_.-]{0,64}|\\PC{0,32}") {
        dpop_proof::check(&[b"\0".as_slice(), proof.as_bytes()].concat());
    }
}

/// The honest proof (every menu's first choice) is accepted, and each defect alone is refused.
#[test]
fn the_dpop_oracle_accepts_the_honest_proof_and_each_single_defect_is_refused() {
    dpop_proof::check(&[1]);
    for position in 0..9 {
        for choice in 1..10u8 {
            let mut steer = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            steer[position + 1] = choice;
            dpop_proof::check(&steer);
        }
    }
}

/// Found by the fuzzer: `"typ": "Offline "` (trailing space) names an offline token, a refresh
/// token, which the validator refuses; the oracle must agree instead of calling the refusal a bug.
#[test]
fn a_refresh_type_with_surrounding_whitespace_is_refused_and_the_oracle_agrees() {
    let mut data = vec![0xfc, b';'];
    data.extend_from_slice(br#"{"active": true, "typ": "Offline ","aud": "https://rs.e:/e"}"#);
    introspection_response::check(&data);
}

/// The checks do catch what they claim to: each known-bad case panics.
#[test]
fn the_oracles_are_not_vacuous() {
    assert!(auth_param::parse_challenge(b"Bearer realm=\"a\r\nb\"").is_none());
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "admin_operation"}
    });
    let messages = tower_introspect::mcp::classify_body(call.to_string().as_bytes())
        .expect("a tool call classifies");
    let admin = fixtures::policy().required_for_all(&messages);
    let reader = fixtures::caller(0b001);
    assert!(!fixtures::meets(&admin, reader.as_ref()));
    assert!(fixtures::meets(&admin, fixtures::caller(0b100).as_ref()));
    assert!(!fixtures::meets(&admin, fixtures::caller(0x80).as_ref()));
}

/// The hardening finding, as the fuzz corpus keeps it (`fuzz/corpus/session_binding/
/// anonymous-session-then-signed-in-caller`): a session created anonymously, then a signed-in
/// caller on it. The oracle requires the layer never to let that caller in.
#[test]
fn an_anonymous_session_is_not_claimed_by_the_next_signed_in_caller() {
    session_binding::check(&[(0, 0, 0, Vec::new()), (1, 1, 0, Vec::new())]);
}

proptest! {
    #[test]
    fn security_event_tokens_are_judged_by_their_defects(
        steer in prop::collection::vec(any::<u8>(), 0..16)
    ) {
        security_event_token::check(&[[1].as_slice(), &steer].concat());
    }

    #[test]
    fn any_bytes_as_a_security_event_token_are_judged_safely(
        set in "[A-Za-z0-9_.-]{0,64}|\\PC{0,32}"
    ) {
        security_event_token::check(&[b"\0".as_slice(), set.as_bytes()].concat());
    }
}

/// The honest SET is accepted, and each single defect of the generator's menus is refused for it.
#[test]
fn the_set_oracle_accepts_the_honest_set_and_each_single_defect_is_refused() {
    security_event_token::check(&[1]);
    for position in 0..11 {
        for choice in 1..=8_u8 {
            let mut steer = vec![0_u8; 12];
            steer[0] = 1;
            steer[position + 1] = choice;
            security_event_token::check(&steer);
        }
    }
}
