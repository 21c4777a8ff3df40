//! RFC 9068 JWT access tokens read and verified locally (`src/jwt/`): the compact JWS parser, the
//! claims reader, the claim checks, and the whole verification by an issuer holding a fixed JWK
//! set (P-256 key `a`, plus an RSA and an Ed25519 key, with ES256 the only algorithm allowed).
//!
//! For any token: parsing never panics and fails only as `Malformed`; what it reads is exactly
//! what an independent decoder (written here from RFC 4648 §5 and RFC 7515 §7.1) reads; the
//! claims reader and the claim checks accept exactly the claims that a model of RFC 9068 §2.2
//! and RFC 7519 accepts, and refuse the others for one of their actual defects; and the full
//! verification accepts only a token of three canonical base64url parts, with header `alg`
//! ES256 and `typ` `at+jwt`, signed by key `a`, naming exactly the issuer, containing the
//! audience, unexpired, already valid, with well-formed scopes and no refresh-token type, while
//! a token with no defect is never refused.
//!
//! The input's first byte picks the mode: even, the rest is the token itself; odd, the rest
//! steers a generator that builds the header and claims from menus of valid and invalid values
//! (times relative to the clock), signs them with one of the keys held here (`a`, the untrusted
//! `b`, the RSA or Ed25519 key) or forges or damages the signature, and may break the
//! encoding. An odd byte alone gives a valid token.

// The root package's property tests include every invariant module; not all of this one's items
// are called there.
#![cfg_attr(test, allow(dead_code))]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};
use tower_introspect::VerifyError;
use tower_introspect::claims::TokenClaims;
use tower_introspect::error::InvalidToken;
use tower_introspect::fuzz_support::{ParsedJwt, check_claims, jwt_claims, jwt_parse, jwt_verify};
use tower_introspect::jwt::{JwsAlgorithm, JwtIssuer};

/// The issuer the verifier trusts.
pub const ISSUER: &str = "https://as.example";
/// This resource.
pub const AUDIENCE: &str = "https://rs.example/mcp";
/// The verifier's clock-skew allowance, in seconds.
pub const LEEWAY: i64 = 60;
/// The library's documented bound on a JWT's length.
const MAX_JWT_LENGTH: usize = 16 * 1024;
/// How late (in seconds) the verifier's clock may read after the oracle's: a time within this of
/// the leeway's edge may go either way.
const CLOCK_SLACK: i64 = 5;

const KEY_A: &[u8] = include_bytes!("../../../tests/fixtures/jwt/es256-a.pem");
const KEY_A_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt/es256-a.pub.pem");
const KEY_B: &[u8] = include_bytes!("../../../tests/fixtures/jwt/es256-b.pem");
const KEY_RSA: &[u8] = include_bytes!("../../../tests/fixtures/jwt/rs256.pem");
const KEY_ED: &[u8] = include_bytes!("../../../tests/fixtures/jwt/ed25519.pem");

/// The issuer's JWK set: the public halves of `es256-a.pem` (`kid` "a"), `rs256.pem` ("r") and
/// `ed25519.pem` ("ed"). Key `b` is not in it.
pub const JWKS: &str = r#"{"keys": [
  {"kty": "EC", "crv": "P-256", "kid": "a", "use": "sig",
   "x": "ntrWBj25VketzR6RU5vZCd4Im2jidhbjoQ3d2kj3NbE",
   "y": "i4rK5ENuvsZkkpVrlQaDwIMYYAn2sqnj-c7MuNmZkHY"},
  {"kty": "RSA", "kid": "r", "e": "AQAB",
   "n": "1U_sLV6xlPINCRb3ZXPMD01Ak2d9g79kgDFTid7adomEsw5hTbKlSar_Hu5Q6vQHUJcistwqhTiL4J88C6grJX-Ncte0hJqCtlOvDZgpDt-lYrKRSTKfSm2-Y8p9jYAJz-g7afK4ZBaimwIiAaBKLEzJzoiYWKAhujYpZMoF9mN-EAXV5cWntqsvvPc-pZITv4vNWJH5LAbtpTdKUMQmo0teA0O0QhAN7uswYLvXTHm0tV1FAFOTUHWwdFO_NA9l0wfFJV2YfmORd-PLs9FFxDx7TqD2f-xcUftckdzJ3CbNUu-l8X9ag32j50ZQ3WdxMCqaccRFA3a9P2LkKpPE9Q"},
  {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "tIbLHdKyJDuKPynrMHMaHN4lyeF21cFeSFFpo5872aw"}
]}"#;

/// The verifier under test: fixed keys, ES256 only, the audience and a 60 s leeway.
pub fn issuer() -> &'static JwtIssuer {
    static ISSUER_: OnceLock<JwtIssuer> = OnceLock::new();
    ISSUER_.get_or_init(|| {
        JwtIssuer::builder(ISSUER)
            .audience(AUDIENCE)
            .leeway(Duration::from_secs(LEEWAY as u64))
            .algorithms([JwsAlgorithm::ES256])
            .jwks(JWKS)
            .build()
            .expect("the fuzz issuer's configuration")
    })
}

/// The keys tokens are signed with here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The issuer's key `a`, ES256.
    A,
    /// A P-256 key the issuer does not publish, ES256.
    B,
    /// The issuer's RSA key, RS256 (an algorithm the issuer does not allow).
    Rsa,
    /// The issuer's Ed25519 key, EdDSA (not allowed either).
    Ed,
}

impl Signer {
    /// `message` signed, base64url.
    pub fn sign(self, message: &str) -> String {
        static KEYS: OnceLock<[EncodingKey; 4]> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            [
                EncodingKey::from_ec_pem(KEY_A).expect("key a"),
                EncodingKey::from_ec_pem(KEY_B).expect("key b"),
                EncodingKey::from_rsa_pem(KEY_RSA).expect("RSA key"),
                EncodingKey::from_ed_pem(KEY_ED).expect("Ed25519 key"),
            ]
        });
        let (key, alg) = match self {
            Self::A => (&keys[0], Algorithm::ES256),
            Self::B => (&keys[1], Algorithm::ES256),
            Self::Rsa => (&keys[2], Algorithm::RS256),
            Self::Ed => (&keys[3], Algorithm::EdDSA),
        };
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing")
    }
}

/// Whether `signature` is key `a`'s ES256 signature of `signing_input`, checked with the key from
/// its PEM file (not from the JWK set the verifier reads).
pub fn signed_by_a(signing_input: &str, signature: &str) -> bool {
    static KEY: OnceLock<DecodingKey> = OnceLock::new();
    let key = KEY.get_or_init(|| DecodingKey::from_ec_pem(KEY_A_PUBLIC).expect("key a"));
    jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), key, Algorithm::ES256)
        .unwrap_or(false)
}

/// A token built from `header` and `claims` (JSON texts) and signed with `signer`.
pub fn signed_token(header: &str, claims: &str, signer: Signer) -> String {
    let signing_input = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(claims.as_bytes())
    );
    let signature = signer.sign(&signing_input);
    format!("{signing_input}.{signature}")
}

// ---------------------------------------------------------------------------------------------
// Base64url (RFC 4648 §5), written here rather than taken from the library's dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Decodes canonical unpadded base64url: only the alphabet, no padding, a length that is not
/// 1 mod 4, and the unused low bits of the last character zero, so that one text has one reading.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0_u32, 0);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)?;
        acc = acc << 6 | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// The three parts of a compact JWS (RFC 7515 §7.1), if `token` is exactly three non-empty
/// canonical base64url parts joined by dots, decoded.
fn canonical_parts(token: &str) -> Option<[Vec<u8>; 3]> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return None;
    };
    let decoded = |part: &str| decode(part).filter(|bytes| !bytes.is_empty());
    Some([decoded(h)?, decoded(p)?, decoded(s)?])
}

// ---------------------------------------------------------------------------------------------
// JSON objects read member by member, duplicates kept (serde_json's `Map` keeps the last).

/// A JSON object's members in order, duplicates included.
#[derive(Debug, Clone, Default)]
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Members {
    fn read(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(n, _)| n == name).count()
    }

    /// The object as RFC 7519 §4 allows a parser to read it: the last of duplicate members.
    fn last_wins(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (name, value) in &self.0 {
            map.insert(name.clone(), value.clone());
        }
        map
    }
}

// ---------------------------------------------------------------------------------------------
// The model: what makes a token unacceptable.

/// The refusals a token's defects call for: `sure` ones, and `edge` ones that may or may not
/// happen (a time on the edge of the leeway, read on the verifier's later clock).
#[derive(Debug, Default)]
struct Defects {
    sure: Vec<InvalidToken>,
    edge: Vec<InvalidToken>,
}

impl Defects {
    fn add(&mut self, refusal: InvalidToken) {
        self.sure.push(refusal);
    }

    /// Judges `verdict` against the defects: an acceptance needs none, a refusal must name one
    /// of them, and a token without any must be accepted.
    fn judge<T>(&self, verdict: &Result<T, InvalidToken>, what: &str, input: &dyn std::fmt::Debug) {
        match verdict {
            Ok(_) => assert!(
                self.sure.is_empty(),
                "{what}: accepted despite {:?}: {input:?}",
                self.sure
            ),
            Err(refusal) => {
                assert!(
                    self.sure.contains(refusal) || self.edge.contains(refusal),
                    "{what}: refused as {refusal:?}, but its defects are {self:?}: {input:?}"
                );
            }
        }
    }
}

/// RFC 7519 §2 NumericDate as the library bounds it: an integer, or a finite number whose
/// magnitude is below 1e17 (about three billion years), truncated. `None` for anything else.
fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.abs() < 1e17).then(|| f.trunc() as i64)
}

/// RFC 6749 §3.3 `scope-token`: one or more of %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// The token types by which servers say "refresh token", compared ASCII case and surrounding
/// whitespace aside (as in `introspection_response`).
fn says_refresh(kind: &str) -> bool {
    let kind = kind.trim_ascii().to_ascii_lowercase();
    [
        "refresh_token",
        "refresh",
        "offline",
        "urn:ietf:params:oauth:token-type:refresh_token",
    ]
    .contains(&kind.as_str())
}

/// RFC 9068 §4 / RFC 6838: the media type `at+jwt`, compared case-insensitively, with or without
/// its `application/` prefix.
fn typ_is_at_jwt(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    lower == "at+jwt" || lower == "application/at+jwt"
}

/// How `iss` is judged: by the claim checks (pinned issuer) or by the verifier that routes on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IssuerRule {
    Checked,
    Routed,
}

/// The defects of a claims set, for a check at `now` whose clock may read up to `slack` seconds
/// later.
fn claims_defects(claims: &Map<String, Value>, now: i64, slack: i64, iss: IssuerRule) -> Defects {
    let mut d = Defects::default();
    let string_or_absent = |name: &str| matches!(claims.get(name), None | Some(Value::String(_)));
    for name in ["sub", "jti"] {
        if !string_or_absent(name) {
            d.add(InvalidToken::Malformed);
        }
    }
    match (iss, claims.get("iss")) {
        (IssuerRule::Checked, None) => d.add(InvalidToken::WrongIssuer),
        (_, Some(Value::String(s))) if s == ISSUER => {}
        (IssuerRule::Checked, Some(Value::String(_))) => d.add(InvalidToken::WrongIssuer),
        (IssuerRule::Routed, Some(Value::String(_))) => d.add(InvalidToken::UnknownIssuer),
        _ => d.add(InvalidToken::Malformed),
    }
    match claims.get("aud") {
        None => d.add(InvalidToken::WrongAudience),
        Some(Value::String(aud)) if aud == AUDIENCE => {}
        Some(Value::String(_)) => d.add(InvalidToken::WrongAudience),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            if !list.iter().any(|aud| aud == AUDIENCE) {
                d.add(InvalidToken::WrongAudience);
            }
        }
        Some(_) => d.add(InvalidToken::Malformed),
    }
    // exp: required; refused once `now` is past it by more than the leeway.
    match claims.get("exp").map(numeric_date) {
        None | Some(None) => d.add(InvalidToken::Malformed),
        Some(Some(exp)) => {
            let margin = i128::from(exp) + i128::from(LEEWAY) - i128::from(now);
            if margin < 0 {
                d.add(InvalidToken::Expired);
            } else if margin < i128::from(slack) {
                d.edge.push(InvalidToken::Expired);
            }
        }
    }
    // nbf and iat: refused while more than the leeway in the future.
    for name in ["nbf", "iat"] {
        match claims.get(name).map(numeric_date) {
            None => {}
            Some(None) => d.add(InvalidToken::Malformed),
            Some(Some(t)) => {
                let ahead = i128::from(t) - i128::from(LEEWAY) - i128::from(now);
                if ahead > i128::from(slack) {
                    d.add(InvalidToken::NotYetValid);
                } else if ahead > 0 {
                    // Already valid on the verifier's later clock, or not.
                    if slack == 0 {
                        d.add(InvalidToken::NotYetValid);
                    } else {
                        d.edge.push(InvalidToken::NotYetValid);
                    }
                }
            }
        }
    }
    // The client and the user's name: the first of these claims present must be a string.
    for names in [
        &["client_id", "azp", "appid"][..],
        &["username", "preferred_username"],
    ] {
        if let Some(value) = names.iter().find_map(|name| claims.get(*name))
            && !value.is_string()
        {
            d.add(InvalidToken::Malformed);
        }
    }
    // `scope`, else `scp`: SP-separated scope-tokens, or an array of scope-tokens.
    let scope = claims.get("scope").or_else(|| claims.get("scp"));
    let scope_ok = match scope {
        None => true,
        Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).all(is_scope_token),
        Some(Value::Array(list)) => list
            .iter()
            .all(|item| item.as_str().is_some_and(is_scope_token)),
        Some(_) => false,
    };
    if !scope_ok {
        d.add(InvalidToken::MalformedScope);
    }
    if ["typ", "token_use"].iter().any(|name| {
        claims
            .get(*name)
            .and_then(Value::as_str)
            .is_some_and(says_refresh)
    }) {
        d.add(InvalidToken::NotAnAccessToken);
    }
    d
}

/// The defects of a whole token for the verifier at `now`. `Members` keeps the header's
/// duplicates, which the parser refuses for the members it reads.
fn token_defects(token: &str, now: i64) -> Defects {
    let mut d = Defects::default();
    // The header and claims must be canonical; the signature, base64url characters (whether it
    // decodes is the signature check's business).
    let parts: Vec<&str> = token.split('.').collect();
    let shaped = match parts.as_slice() {
        [header, payload, signature]
            if token.len() <= MAX_JWT_LENGTH
                && !signature.is_empty()
                && signature.bytes().all(|b| ALPHABET.contains(&b)) =>
        {
            decode(header).zip(decode(payload))
        }
        _ => None,
    };
    let Some((Some(header), Some(claims))) =
        shaped.map(|(header, payload)| (Members::read(&header), Members::read(&payload)))
    else {
        d.add(InvalidToken::Malformed);
        return d;
    };
    // `jwk` is read too (for DPoP proofs, by the same parser): two of it are refused alike.
    let known = ["alg", "typ", "kid", "jwk", "crit", "b64", "enc", "zip"];
    if known.iter().any(|name| header.count(name) > 1) {
        d.add(InvalidToken::Malformed);
    }
    let h = header.last_wins();
    // Extensions, unencoded payloads and JWE members change how the token must be read. A null
    // value reads as absent.
    if ["crit", "b64", "enc", "zip"]
        .iter()
        .any(|name| h.get(*name).is_some_and(|v| !v.is_null()))
    {
        d.add(InvalidToken::Malformed);
    }
    match h.get("alg") {
        Some(Value::String(alg)) if alg == "ES256" => {}
        _ => d.add(InvalidToken::Malformed),
    }
    match h.get("typ") {
        Some(Value::String(typ)) if typ_is_at_jwt(typ) => {}
        None | Some(Value::Null | Value::String(_)) => d.add(InvalidToken::NotAnAccessToken),
        Some(_) => d.add(InvalidToken::Malformed),
    }
    match h.get("kid") {
        None | Some(Value::Null) => {}
        Some(Value::String(kid)) if kid == "a" => {}
        Some(Value::String(_)) => d.add(InvalidToken::UnknownKey),
        Some(_) => d.add(InvalidToken::Malformed),
    }
    let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
    if !signed_by_a(signing_input, signature) {
        d.add(InvalidToken::InvalidSignature);
    }
    let claims = claims_defects(&claims.last_wins(), now, CLOCK_SLACK, IssuerRule::Routed);
    d.sure.extend(claims.sure);
    d.edge.extend(claims.edge);
    d
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("a clock before 2262")
}

/// Checks `data`: byte 0 picks the mode (even: the rest is the token; odd: the rest steers the
/// generator).
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = unix_now();
    if mode & 1 == 0 {
        check_token(&String::from_utf8_lossy(rest), now);
    } else {
        check_token(&generate(&mut Choices(rest), now), now);
    }
}

/// Every property, on one token read at `now` (the clock, read just before).
pub fn check_token(token: &str, now: i64) {
    let parsed = jwt_parse(token);
    check_parse(token, &parsed);
    if let Ok(parsed) = &parsed {
        check_claims_reading(&parsed.claims, now);
    }
    check_verification(token, parsed.ok(), now);
}

/// The parser reads what an independent decoder reads, or refuses with `Malformed`.
fn check_parse(token: &str, parsed: &Result<ParsedJwt, InvalidToken>) {
    let parsed = match parsed {
        Err(InvalidToken::Malformed) => return,
        Err(other) => panic!("parsing failed with {other:?}, not Malformed: {token:?}"),
        Ok(parsed) => parsed,
    };
    assert!(
        token.len() <= MAX_JWT_LENGTH,
        "parsed a {}-byte token",
        token.len()
    );
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        panic!("parsed a token of {} parts: {token:?}", parts.len());
    };
    assert!(
        !signature.is_empty() && signature.bytes().all(|b| ALPHABET.contains(&b)),
        "parsed a token whose signature part is not base64url: {token:?}"
    );
    assert_eq!(parsed.signing_input, format!("{header}.{payload}"));
    assert_eq!(parsed.signature, *signature);
    let header = decode(header)
        .unwrap_or_else(|| panic!("parsed a header that is not canonical base64url: {token:?}"));
    let payload = decode(payload)
        .unwrap_or_else(|| panic!("parsed claims that are not canonical base64url: {token:?}"));
    let header = Members::read(&header)
        .unwrap_or_else(|| panic!("parsed a header that is not a JSON object: {token:?}"));
    let claims = Members::read(&payload)
        .unwrap_or_else(|| panic!("parsed claims that are not a JSON object: {token:?}"));
    for name in ["alg", "typ", "kid", "jwk", "crit", "b64", "enc", "zip"] {
        assert!(
            header.count(name) <= 1,
            "parsed a header with two {name:?}: {token:?}"
        );
    }
    let h = header.last_wins();
    for name in ["crit", "b64", "enc", "zip"] {
        assert!(
            h.get(name).is_none_or(Value::is_null),
            "parsed a header with {name:?}: {token:?}"
        );
    }
    let string = |name: &str| match h.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => panic!("parsed a header whose {name:?} is {other}: {token:?}"),
    };
    assert_eq!(Some(parsed.alg.clone()), string("alg"), "alg of {token:?}");
    assert_eq!(parsed.typ, string("typ"), "typ of {token:?}");
    assert_eq!(parsed.kid, string("kid"), "kid of {token:?}");
    assert_eq!(parsed.claims, claims.last_wins(), "claims of {token:?}");
}

/// The claims reader and the claim checks, at `now`: they accept exactly the claims without a
/// defect, refuse for an actual defect, and read every claim back as sent.
fn check_claims_reading(claims: &Map<String, Value>, now: i64) {
    let read = jwt_claims(claims.clone());
    let leeway = Duration::from_secs(LEEWAY as u64);
    let verdict = read.as_ref().map_err(|e| *e).and_then(|read| {
        check_claims(read, Some(AUDIENCE), Some(ISSUER), leeway, now).map(|()| read)
    });
    claims_defects(claims, now, 0, IssuerRule::Checked).judge(&verdict, "claim checks", claims);
    match &read {
        Ok(read) => check_read_back(claims, read),
        Err(InvalidToken::Malformed | InvalidToken::MalformedScope) => {}
        Err(other) => panic!("reading claims failed with {other:?}: {claims:?}"),
    }
}

/// `read` says what `claims` say.
fn check_read_back(claims: &Map<String, Value>, read: &TokenClaims) {
    let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| claims.get(*name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(read.issuer, string("iss"), "iss of {claims:?}");
    assert_eq!(read.subject, string("sub"), "sub of {claims:?}");
    assert_eq!(read.token_id, string("jti"), "jti of {claims:?}");
    assert_eq!(
        read.client_id,
        first(&["client_id", "azp", "appid"]),
        "client of {claims:?}"
    );
    assert_eq!(
        read.username,
        first(&["username", "preferred_username"]),
        "user of {claims:?}"
    );
    let audiences: Vec<String> = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(list) => serde_json::from_value(list.clone()).expect("an array of strings"),
    };
    assert_eq!(read.audiences, audiences, "aud of {claims:?}");
    let time = |name: &str| claims.get(name).and_then(numeric_date);
    assert_eq!(read.expires_at, time("exp"), "exp of {claims:?}");
    assert_eq!(read.not_before, time("nbf"), "nbf of {claims:?}");
    assert_eq!(read.issued_at, time("iat"), "iat of {claims:?}");
    let mut scopes: Vec<String> = match claims.get("scope").or_else(|| claims.get("scp")) {
        None => Vec::new(),
        Some(Value::String(s)) => s.split(' ').map(str::to_owned).collect(),
        Some(list) => serde_json::from_value(list.clone()).expect("an array of strings"),
    };
    scopes.retain(|s| !s.is_empty());
    scopes.sort_unstable();
    scopes.dedup();
    let granted: Vec<&str> = read.scope.iter().collect();
    assert_eq!(granted, scopes, "scopes of {claims:?}");
    assert_eq!(read.token_type, None);
    // Every other claim is kept as sent; the modelled ones (and only they) are taken out.
    let mut modelled = vec!["iss", "sub", "jti", "aud", "exp", "nbf", "iat"];
    modelled.extend(
        ["client_id", "azp", "appid"]
            .iter()
            .find(|n| claims.contains_key(**n)),
    );
    modelled.extend(
        ["username", "preferred_username"]
            .iter()
            .find(|n| claims.contains_key(**n)),
    );
    modelled.extend(["scope", "scp"].iter().find(|n| claims.contains_key(**n)));
    let mut extra = claims.clone();
    extra.retain(|name, _| !modelled.contains(&name.as_str()));
    assert_eq!(read.extra, extra, "extra claims of {claims:?}");
}

/// The full verification, at the clock (read here as `now`, by the verifier a little later).
fn check_verification(token: &str, parsed: Option<ParsedJwt>, now: i64) {
    let (claims, principal) = jwt_verify(issuer(), token);
    let defects = token_defects(token, now);
    // Both verifiers read the clock, one after the other: on the edge of the leeway, the second
    // may see a token expire (or become valid) that the first did not.
    let (by_verifier, by_issuer) = (refusal(&claims, token), refusal(&principal, token));
    let on_edge = |r: Option<InvalidToken>| r.is_none_or(|r| defects.edge.contains(&r));
    assert!(
        by_verifier == by_issuer || (on_edge(by_verifier) && on_edge(by_issuer)),
        "the JwtVerifier ({by_verifier:?}) and the JwtIssuer ({by_issuer:?}) disagree on {token:?}"
    );
    let after = unix_now();
    assert!(
        after - now < CLOCK_SLACK,
        "a check took over {CLOCK_SLACK} s"
    );
    let verdict = match claims {
        Ok(claims) => Ok(claims),
        Err(e) => Err(refusal::<()>(&Err(e), token).expect("a refusal")),
    };

    if let Ok(read) = &verdict {
        // Everything that makes a token an acceptable access token, checked one by one.
        assert!(
            token.len() <= MAX_JWT_LENGTH,
            "accepted a {}-byte token",
            token.len()
        );
        assert!(
            canonical_parts(token).is_some(),
            "accepted a token that is not three canonical base64url parts: {token:?}"
        );
        let parsed = parsed.expect("accepted a token the parser refuses");
        assert_eq!(
            parsed.alg, "ES256",
            "accepted alg {:?}: {token:?}",
            parsed.alg
        );
        assert!(
            parsed.typ.as_deref().is_some_and(typ_is_at_jwt),
            "accepted typ {:?}: {token:?}",
            parsed.typ
        );
        assert!(
            signed_by_a(&parsed.signing_input, &parsed.signature),
            "accepted a token key a did not sign: {token:?}"
        );
        assert_eq!(read.issuer.as_deref(), Some(ISSUER), "accepted {token:?}");
        assert!(
            read.audiences.iter().any(|aud| aud == AUDIENCE),
            "accepted a token for {:?}: {token:?}",
            read.audiences
        );
        let exp = read.expires_at.expect("accepted a token without exp");
        assert!(
            now <= exp.saturating_add(LEEWAY),
            "accepted an expired token: {token:?}"
        );
        for t in [read.not_before, read.issued_at].into_iter().flatten() {
            assert!(
                t.saturating_sub(LEEWAY) <= after,
                "accepted a token not valid yet: {token:?}"
            );
        }
        assert!(
            read.scope.iter().all(is_scope_token),
            "accepted scopes {:?}",
            read.scope
        );
        assert!(
            ["typ", "token_use"].iter().all(|n| !read
                .extra
                .get(*n)
                .and_then(Value::as_str)
                .is_some_and(says_refresh)),
            "accepted a refresh token: {token:?}"
        );
        assert_eq!(
            Ok(read),
            jwt_claims(parsed.claims.clone()).as_ref(),
            "the verifier read the claims otherwise: {token:?}"
        );
        if let Ok(principal) = &principal {
            assert_eq!(principal.subject(), read.subject.as_deref());
            assert_eq!(principal.client_id(), read.client_id.as_deref());
            assert_eq!(principal.scopes().as_str(), read.scope.as_str());
        }
    }
    defects.judge(&verdict, "verification", &token);
}

/// The refusal in `verdict`; with fixed keys a verifier never fails otherwise.
fn refusal<T>(verdict: &Result<T, VerifyError>, token: &str) -> Option<InvalidToken> {
    match verdict {
        Ok(_) => None,
        Err(VerifyError::Invalid(refusal)) => Some(*refusal),
        Err(other) => panic!("fixed keys, yet {other:?}: {token:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The generator.

/// The fuzzer's bytes, read as choices; once they run out every choice is the first (valid) one.
pub struct Choices<'a>(pub &'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn pick(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// A short text from the input's bytes.
    fn text(&mut self) -> String {
        let len = self.pick(24).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }
}

/// A NumericDate around `now`: mostly integers at offsets that straddle the leeway's edges, and
/// fractions, huge and negative numbers, and values that are not numbers.
fn time(c: &mut Choices<'_>, now: i64, usual: i64) -> Value {
    const OFFSETS: [i64; 12] = [0, 30, -30, 59, -59, 60, -60, 61, -61, 66, 3600, -3600];
    match c.pick(12) {
        0 => json!(now + usual),
        1..=3 => json!(now + OFFSETS[c.pick(OFFSETS.len())]),
        4 => json!(now as f64 + OFFSETS[c.pick(OFFSETS.len())] as f64 + 0.75),
        5 => json!(i64::MAX),
        6 => json!(i64::MIN),
        7 => json!(u64::MAX),
        8 => serde_json::from_str(["1e16", "1.5e17", "-1.7e17", "-0.5", "1e300"][c.pick(5)])
            .expect("a number"),
        9 => json!((now + usual).to_string()),
        10 => Value::Null,
        _ => json!(i64::from(c.byte()) * 1_000_000_000),
    }
}

/// A value from `menu`, or (last choice) a text from the input.
fn string_or(c: &mut Choices<'_>, menu: &[Value]) -> Value {
    let i = c.pick(menu.len() + 1);
    menu.get(i).cloned().unwrap_or_else(|| json!(c.text()))
}

/// Renders members as a JSON object, duplicates included.
fn object(members: &[(String, Value)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{value}", json!(name)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Builds a token from `c`; all-zero choices make a valid one.
pub fn generate(c: &mut Choices<'_>, now: i64) -> String {
    let mut header: Vec<(String, Value)> = Vec::new();
    fn push(members: &mut Vec<(String, Value)>, name: &str, value: Option<Value>) {
        if let Some(value) = value {
            members.push((name.to_owned(), value));
        }
    }
    let alg = [
        "ES256", "RS256", "EdDSA", "ES384", "PS256", "HS256", "none", "es256", "",
    ];
    let alg = match c.pick(alg.len() + 2) {
        i if i < alg.len() => Some(json!(alg[i])),
        i if i == alg.len() => Some(json!(256)),
        _ => None,
    };
    push(&mut header, "alg", alg);
    let typ = [
        json!("at+jwt"),
        json!("AT+JWT"),
        json!("application/at+jwt"),
        json!("Application/At+Jwt"),
        json!("JWT"),
        json!("application/jwt"),
        json!("at+jwt "),
        json!(""),
        json!("dpop+jwt"),
        json!("application/application/at+jwt"),
        json!("applicationXat+jwt"),
        Value::Null,
        json!(1),
        json!(["at+jwt"]),
    ];
    match c.pick(typ.len() + 2) {
        i if i < typ.len() => push(&mut header, "typ", Some(typ[i].clone())),
        i if i == typ.len() => push(&mut header, "typ", Some(json!(c.text()))),
        _ => {}
    }
    let kid = [
        json!("a"),
        json!("b"),
        json!("r"),
        json!("ed"),
        json!("A"),
        Value::Null,
        json!(7),
    ];
    match c.pick(kid.len() + 2) {
        i if i < kid.len() => push(&mut header, "kid", Some(kid[i].clone())),
        i if i == kid.len() => push(&mut header, "kid", Some(json!(c.text()))),
        _ => {}
    }
    for _ in 0..c.pick(3) {
        let extra = [
            ("crit", json!(["exp"])),
            ("crit", json!([])),
            ("crit", Value::Null),
            ("b64", json!(false)),
            ("enc", json!("A128GCM")),
            ("zip", json!("DEF")),
            ("b64", Value::Null),
            ("jku", json!("http://127.0.0.1:1/jwks")),
            ("jwk", json!({"kty": "EC", "crv": "P-256"})),
            ("x5c", json!(["AA"])),
            ("cty", json!("JWT")),
            ("alg", json!("ES256")),
            ("typ", json!("at+jwt")),
            ("kid", json!("a")),
            ("alg", json!("none")),
        ];
        let (name, value) = extra[c.pick(extra.len())].clone();
        push(&mut header, name, Some(value));
    }

    let mut claims: Vec<(String, Value)> = Vec::new();
    let iss = [
        json!(ISSUER),
        json!("https://as.example/"),
        json!("HTTPS://AS.EXAMPLE"),
        json!(7),
        Value::Null,
    ];
    match c.pick(iss.len() + 3) {
        i if i < iss.len() => push(&mut claims, "iss", Some(iss[i].clone())),
        i if i == iss.len() => push(&mut claims, "iss", Some(json!(c.text()))),
        i if i == iss.len() + 1 => {
            // Duplicates: the last one counts.
            push(&mut claims, "iss", Some(json!("https://other.example")));
            push(&mut claims, "iss", Some(json!(ISSUER)));
        }
        _ => {}
    }
    let sub = string_or(c, &[json!("alice"), json!(""), json!(42), Value::Null]);
    if c.pick(8) != 7 {
        push(&mut claims, "sub", Some(sub));
    }
    let aud = [
        json!(AUDIENCE),
        json!([AUDIENCE]),
        json!(["https://other.example", AUDIENCE]),
        json!(["https://other.example"]),
        json!([]),
        json!("https://other.example"),
        json!(format!("{AUDIENCE}/")),
        json!([AUDIENCE, 1]),
        json!(5),
        json!({ AUDIENCE: true }),
    ];
    match c.pick(aud.len() + 1) {
        i if i < aud.len() => push(&mut claims, "aud", Some(aud[i].clone())),
        _ => {}
    }
    match c.pick(10) {
        9 => {}
        _ => push(&mut claims, "exp", Some(time(c, now, 3600))),
    }
    for (name, usual) in [("iat", -10), ("nbf", -10)] {
        if c.pick(3) != 0 {
            push(&mut claims, name, Some(time(c, now, usual)));
        }
    }
    let clients = ["client_id", "azp", "appid"];
    for _ in 0..c.pick(3) {
        let name = clients[c.pick(clients.len())];
        let value = string_or(c, &[json!("app"), json!(5), Value::Null, json!(["app"])]);
        push(&mut claims, name, Some(value));
    }
    for _ in 0..c.pick(2) {
        let name = ["username", "preferred_username"][c.pick(2)];
        let value = string_or(c, &[json!("alice@example.com"), json!(1)]);
        push(&mut claims, name, Some(value));
    }
    for _ in 0..c.pick(3) {
        let name = ["scope", "scp"][c.pick(2)];
        let value = string_or(
            c,
            &[
                json!("read write"),
                json!("write read read"),
                json!("  read  "),
                json!(""),
                json!("read\twrite"),
                json!("r\u{e9}ad"),
                json!("say\"hi\""),
                json!(["read", "write"]),
                json!(["read write"]),
                json!(["read", 1]),
                json!([""]),
                json!(5),
                Value::Null,
            ],
        );
        push(&mut claims, name, Some(value));
    }
    for _ in 0..c.pick(3) {
        let name = ["typ", "token_use", "jti", "cnf", "token_type"][c.pick(5)];
        let value = string_or(
            c,
            &[
                json!("access"),
                json!("refresh"),
                json!("Offline "),
                json!("\trefresh_token\n"),
                json!("REFRESH_TOKEN"),
                json!("urn:ietf:params:oauth:token-type:refresh_token"),
                json!("refresh-token"),
                json!(3),
                json!({"jkt": "abc"}),
            ],
        );
        push(&mut claims, name, Some(value));
    }

    let header = object(&header);
    let mut payload = object(&claims);
    match c.pick(8) {
        0..=3 => {}
        4 => payload = format!(" \n{payload} "),
        5 => payload = format!("[{payload}]"),
        6 => {
            payload.pop();
        }
        _ => {
            // Near the length bound, or past it.
            let len = [12 * 1024, 16 * 1024][c.pick(2)];
            claims.push(("pad".to_owned(), json!("x".repeat(len))));
            payload = object(&claims);
        }
    }
    let signing_input = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(payload.as_bytes())
    );
    let signature = match c.pick(11) {
        0..=2 => Signer::A.sign(&signing_input),
        3 => Signer::B.sign(&signing_input),
        4 => Signer::Rsa.sign(&signing_input),
        5 => Signer::Ed.sign(&signing_input),
        6 => {
            // Key a's signature, one character changed.
            let mut s = Signer::A.sign(&signing_input).into_bytes();
            let i = c.pick(s.len());
            s[i] = if s[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(s).expect("ASCII")
        }
        7 => Signer::A.sign(&format!("{signing_input}x")),
        8 => {
            // Key a's signature with a stray bit in its last character: not canonical.
            let mut s = Signer::A.sign(&signing_input).into_bytes();
            let last = s.last_mut().expect("a signature");
            let value = ALPHABET.iter().position(|a| a == last).expect("base64url") ^ 1;
            *last = ALPHABET[value];
            String::from_utf8(s).expect("ASCII")
        }
        9 => String::new(),
        _ => c.text(),
    };
    let token = format!("{signing_input}.{signature}");
    match c.pick(12) {
        0..=7 => token,
        8 => format!("{token}.{}", encode(b"{}")),
        9 => format!(" {token}"),
        10 => format!("{token}="),
        _ => token.replace('-', "+").replace('_', "/"),
    }
}
