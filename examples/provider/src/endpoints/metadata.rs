//! `GET /.well-known/oauth-authorization-server` (RFC 8414).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// The metadata document. `issuer` is exactly the configured issuer.
pub async fn get(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state))
}

/// Builds the metadata document.
pub fn document(state: &AppState) -> Value {
    json!({
        "issuer": state.issuer(),
        "authorization_endpoint": state.endpoint("/authorize"),
        "token_endpoint": state.endpoint("/token"),
        "introspection_endpoint": state.endpoint("/introspect"),
        "revocation_endpoint": state.endpoint("/revoke"),
        "registration_endpoint": state.endpoint("/register"),
        "jwks_uri": state.endpoint("/jwks"),
        "scopes_supported": state.scopes_supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "dpop_signing_alg_values_supported": state
            .dpop()
            .algorithms()
            .iter()
            .map(|alg| alg.name())
            .collect::<Vec<_>>(),
    })
}
