//! JWK SHA-256 thumbprints (RFC 7638): the name a DPoP-bound token gives its key (`cnf.jkt`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The base64url SHA-256 thumbprint of a public JWK, or `None` when a member the thumbprint covers
/// is missing or not a string, or the key type has no thumbprint definition here.
///
/// Only the required members count, in lexicographic order, serialized without whitespace
/// (RFC 7638 §3.2): `{"crv","kty","x","y"}` for EC, `{"e","kty","n"}` for RSA,
/// `{"crv","kty","x"}` for OKP (RFC 8037 §2). Optional members (`kid`, `alg`, `use`) do not
/// change the thumbprint, so a client cannot make one key look like two.
pub(crate) fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        // Names are fixed ASCII; values go through the JSON serializer, which escapes whatever
        // needs escaping (RFC 7638 §3.3: the JSON text is what is hashed).
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn thumbprint(jwk: Value) -> Option<String> {
        jwk_thumbprint(jwk.as_object().unwrap())
    }

    #[test]
    fn rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn optional_members_do_not_change_it_and_required_ones_must_be_there() {
        let base = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"});
        let mut decorated = base.clone();
        decorated["kid"] = json!("k1");
        decorated["use"] = json!("sig");
        assert_eq!(thumbprint(base.clone()), thumbprint(decorated));
        let mut other = base.clone();
        other["x"] = json!("AAAB");
        assert_ne!(thumbprint(base), thumbprint(other));
        assert_eq!(
            thumbprint(json!({"kty": "EC", "crv": "P-256", "x": "AAAA"})),
            None
        );
        assert_eq!(thumbprint(json!({"kty": "oct", "k": "AAAA"})), None);
        assert_eq!(
            thumbprint(json!({"kty": "OKP", "crv": "Ed25519", "x": 5})),
            None
        );
    }
}
