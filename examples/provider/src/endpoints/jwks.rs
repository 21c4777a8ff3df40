//! `GET /jwks`: the public keys of the access-token signing keys (the RFC 8414 `jwks_uri`).
//!
//! Served whatever the access-token format, so a resource server finds the keys of JWTs issued
//! before a switch to opaque tokens. It lists the current key and every retired key whose last
//! token may still be valid (see [`crate::keys`]), built from the public halves only: no
//! private member (`d`) can appear. `Cache-Control: max-age=300` lets resource servers cache it
//! briefly; one that meets an unknown `kid` (a rotation within the last five minutes) should
//! fetch it again.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::OAuthError;
use crate::state::AppState;

/// How long a JWK Set may be cached: five minutes.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// `GET /jwks`.
pub async fn get(State(state): State<AppState>) -> Response {
    match state.storage().verification_keys(state.now()).await {
        Ok(keys) => {
            let mut response = Json(crate::keys::jwk_set(&keys)).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            );
            response
        }
        Err(err) => OAuthError::from(err).into_response(),
    }
}
