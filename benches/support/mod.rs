//! Shared by the criterion benches and the load test: an in-process verifier that does the local
//! part of introspection (parse a realistic response body, build a principal).

use std::sync::atomic::{AtomicU64, Ordering};

use tower_introspect::error::UnavailableCause;
use tower_introspect::introspection::IntrospectionResponse;
use tower_introspect::{Principal, TokenVerifier, VerifyError};

/// A realistic active introspection response (~330 bytes, as Keycloak-like servers send).
pub const ACTIVE_BODY: &str = r#"{"active":true,"scope":"read write","client_id":"mcp-client","username":"alice",
"token_type":"Bearer","exp":4102444800,"iat":1764000000,"sub":"3c9d5f9e-8a4b-4f3e-9d2a-7b1c0e6f5a42",
"aud":"https://mcp.example.com/mcp","iss":"https://auth.example.com","jti":"9f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b"}"#;

/// Parses [`ACTIVE_BODY`] on every call and counts the calls.
#[derive(Default)]
pub struct ParsingVerifier {
    pub calls: AtomicU64,
}

impl TokenVerifier for ParsingVerifier {
    async fn verify(&self, _token: &str) -> Result<Principal, VerifyError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let claims: IntrospectionResponse = serde_json::from_str(ACTIVE_BODY).map_err(|e| {
            VerifyError::unavailable(UnavailableCause::InvalidResponse, e.to_string())
        })?;
        Ok(Principal::new(claims.into()))
    }
}

/// Answers, for every token, the claims of [`ACTIVE_BODY`] bound to the DPoP key whose
/// thumbprint is `jkt` (`cnf.jkt`), parsed on every call.
pub struct BoundVerifier {
    body: String,
}

impl BoundVerifier {
    pub fn new(jkt: &str) -> Self {
        let mut body: serde_json::Value = serde_json::from_str(ACTIVE_BODY).unwrap();
        body["token_type"] = serde_json::json!("DPoP");
        body["cnf"] = serde_json::json!({ "jkt": jkt });
        Self {
            body: body.to_string(),
        }
    }
}

impl TokenVerifier for BoundVerifier {
    async fn verify(&self, _token: &str) -> Result<Principal, VerifyError> {
        let claims: IntrospectionResponse = serde_json::from_str(&self.body).map_err(|e| {
            VerifyError::unavailable(UnavailableCause::InvalidResponse, e.to_string())
        })?;
        Ok(Principal::new(claims.into()))
    }
}

/// The issuer of the benches' JWT access tokens.
pub const JWT_ISSUER: &str = "https://auth.example.com";
/// The audience they are minted for.
pub const JWT_AUDIENCE: &str = "https://mcp.example.com/mcp";

/// A JWT access token (ES256, `typ: at+jwt`) carrying the claims of [`ACTIVE_BODY`], numbered `i`
/// (in `sub` and `jti`), signed with the test key in `tests/fixtures/jwt/es256-a.pem`.
pub fn jwt(i: u64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/jwt/es256-a.pem"))
        .expect("the fixture key");
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("key-a".into());
    let claims = serde_json::json!({
        "scope": "read write", "client_id": "mcp-client", "username": format!("user{i}"),
        "exp": 4102444800_i64, "iat": 1764000000_i64,
        "sub": format!("3c9d5f9e-8a4b-4f3e-9d2a-{i:012}"), "aud": JWT_AUDIENCE,
        "iss": JWT_ISSUER, "jti": format!("9f1c2d3e-4b5a-6978-8a9b-{i:012}"),
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("signing")
}

/// The fixture key's public point (SEC1, uncompressed), as the verifier holds it.
pub fn jwt_public_point() -> Vec<u8> {
    let key = jsonwebtoken::DecodingKey::from_ec_pem(include_bytes!(
        "../../tests/fixtures/jwt/es256-a.pub.pem"
    ))
    .expect("the fixture key");
    key.try_get_as_bytes().expect("an EC point").to_vec()
}

/// A verifier of [`jwt`] tokens with the fixture's public key: no network.
pub fn jwt_issuer() -> tower_introspect::jwt::JwtIssuer {
    tower_introspect::jwt::JwtIssuer::builder(JWT_ISSUER)
        .audience(JWT_AUDIENCE)
        .pem_key(
            tower_introspect::jwt::JwsAlgorithm::ES256,
            include_bytes!("../../tests/fixtures/jwt/es256-a.pub.pem"),
            Some("key-a"),
        )
        .build()
        .expect("the fixture issuer")
}
