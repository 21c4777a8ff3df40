//! Shared by the criterion benches and the load test: an in-process verifier that does the local
//! part of introspection (parse a realistic response body, build a principal).

use std::sync::atomic::{AtomicU64, Ordering};

use tower_introspect::{
    IntrospectionResponse, Principal, TokenVerifier, UnavailableCause, VerifyError,
};

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
