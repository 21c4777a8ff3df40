//! Reading a compact JWS (RFC 7515 §7.1) before its signature is checked.
//!
//! Everything here runs on attacker-controlled input, before any key is involved, so it is strict
//! and bounded: exactly three parts, canonical unpadded base64url (no padding, no stray bits, no
//! whitespace, so that one token has one reading), a header and claims that are JSON objects, and
//! a header naming no extension (`crit`) and no unencoded payload (`b64`). Nothing is fetched for
//! a header: `jku`, `x5u` and `x5c` are never read, and `jwk` only by a DPoP proof, whose key it
//! is by definition (RFC 9449 §4.2), never by an access token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::InvalidToken;

/// Longest JWT accepted, in bytes: far above real access tokens (1–3 KiB), and a bound on the
/// work an unauthenticated token can cause.
pub(crate) const MAX_JWT_LENGTH: usize = 16 * 1024;

/// A compact JWS split into its parts, with its header and claims decoded (not yet verified).
#[derive(Debug)]
pub(crate) struct UnverifiedJwt<'a> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    pub(crate) signing_input: &'a str,
    /// The third part, still encoded.
    pub(crate) signature: &'a str,
    pub(crate) header: Header,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
}

/// The header members that are read. Unknown members are ignored (RFC 7515 §4), except the ones
/// in [`Header::refused`], which change how a JWS must be processed.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    /// The signer's public key: read for DPoP proofs only (see the module documentation).
    #[serde(default)]
    pub(crate) jwk: Option<serde_json::Value>,
    /// Extensions the recipient must understand (RFC 7515 §4.1.11): none is understood here.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    /// RFC 7797 unencoded payloads: the payload would not be what the claims were read from.
    #[serde(default)]
    b64: Option<serde::de::IgnoredAny>,
    /// A JWE member: an encrypted token is not a signed one.
    #[serde(default)]
    enc: Option<serde::de::IgnoredAny>,
    /// Compressed payloads (a JWE member; also a decompression-bomb lever).
    #[serde(default)]
    zip: Option<serde::de::IgnoredAny>,
}

impl Header {
    fn refused(&self) -> bool {
        self.crit.is_some() || self.b64.is_some() || self.enc.is_some() || self.zip.is_some()
    }
}

/// Whether `token` has the shape of a compact JWS: three non-empty base64url parts. Cheap, and
/// says nothing about validity; used to route a token to a JWT or an opaque-token verifier.
/// Opaque tokens of common servers never contain two dots.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if parts > 3 || part.is_empty() || !part.bytes().all(is_base64url) {
            return false;
        }
    }
    parts == 3
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Splits and decodes `token`. Every failure is [`InvalidToken::Malformed`].
pub(crate) fn parse(token: &str) -> Result<UnverifiedJwt<'_>, InvalidToken> {
    if token.len() > MAX_JWT_LENGTH || !looks_like_jwt(token) {
        return Err(InvalidToken::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(InvalidToken::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(InvalidToken::Malformed)?;
    let header: Header = decode_json(header)?;
    if header.refused() {
        return Err(InvalidToken::Malformed);
    }
    let claims = decode_json(payload)?;
    Ok(UnverifiedJwt {
        signing_input,
        signature,
        header,
        claims,
    })
}

/// Decodes one part as canonical base64url, then as a JSON object. Only an object: serde would
/// otherwise read a struct from an array by position (`["ES256"]` as `{"alg": "ES256"}`).
fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, InvalidToken> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| InvalidToken::Malformed)?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(InvalidToken::Malformed);
    }
    serde_json::from_slice(&bytes).map_err(|_| InvalidToken::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    #[test]
    fn shape() {
        assert!(looks_like_jwt("a.b.c"));
        for not in [
            "", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b.", "a.b+.c", "a.b.c=", "a b.c.d",
        ] {
            assert!(!looks_like_jwt(not), "{not:?}");
        }
    }

    #[test]
    fn reads_header_and_claims() {
        let t = token(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"iss":"x"}"#,
        );
        let jwt = parse(&t).unwrap();
        assert_eq!(jwt.header.alg, "ES256");
        assert_eq!(jwt.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jwt.header.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.claims["iss"], "x");
        assert_eq!(jwt.signature, "c2ln");
        assert!(t.starts_with(jwt.signing_input));
    }

    #[test]
    fn refuses_what_changes_processing_or_is_not_canonical() {
        let bad = [
            token(r#"{"alg":"ES256","crit":["exp"]}"#, "{}"),
            token(r#"{"alg":"ES256","b64":false}"#, "{}"),
            token(r#"{"alg":"ES256","enc":"A128GCM"}"#, "{}"),
            token(r#"{"alg":"ES256","zip":"DEF"}"#, "{}"),
            token(r#"{"alg":"ES256","alg":"none"}"#, "{}"),
            token(r#"{"typ":"at+jwt"}"#, "{}"),
            token(r#"["ES256"]"#, "{}"),
            token(r#"{"alg":"ES256"}"#, "[]"),
            token(r#"{"alg":"ES256"}"#, "not json"),
            format!("{}=.{}.c2ln", b64(r#"{"alg":"ES256"}"#), b64("{}")),
            "A".repeat(MAX_JWT_LENGTH) + "." + &b64("{}") + ".c2ln",
        ];
        for t in bad {
            assert_eq!(parse(&t).map(drop), Err(InvalidToken::Malformed), "{t}");
        }
        // A last base64 character with stray low bits is not canonical: `Zh` and `Zg` would
        // both decode to "f".
        assert_eq!(
            parse(&format!("{}.Zh.c2ln", b64(r#"{"alg":"ES256"}"#))).map(drop),
            Err(InvalidToken::Malformed)
        );
    }

    #[test]
    fn a_key_carried_in_the_header_is_ignored_not_followed() {
        let t = token(
            r#"{"alg":"ES256","jku":"http://127.0.0.1:1/jwks","x5u":"http://127.0.0.1:1/c","jwk":{"kty":"EC"},"x5c":["AA"]}"#,
            "{}",
        );
        assert!(parse(&t).is_ok());
    }
}
