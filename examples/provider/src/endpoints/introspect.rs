//! `POST /introspect` (RFC 7662).
//!
//! Only confidential clients may introspect, with `client_secret_basic` or `client_secret_post`;
//! anything else is `401 invalid_client`. RFC 7662 §2.1/§4: clients configured as resource servers
//! ([`crate::model::Client::resource_server`]) may introspect any access token; every other client
//! learns only about its own tokens and gets `{"active":false}` for anybody else's, so a
//! registered client cannot use the endpoint as an oracle for tokens it found.
//!
//! An active token answers `active, scope, client_id, sub, username (users only), token_type
//! (Bearer, or DPoP for a DPoP-bound token), exp, iat, nbf, iss, aud (the RFC 8707 resource, if
//! any), jti, sid (the grant family, named by SSF session-revoked events)`, and `cnf: {"jkt": …}` for a DPoP-bound token (RFC 9449 §6.2). Refresh tokens are
//! never reported active, to anybody: they are not bearer credentials for a resource server, and
//! a resource server that forgot to check `token_type` must not accept one. Unknown, expired,
//! revoked and rotated tokens all answer exactly `{"active":false}` too. `token_type_hint` is
//! ignored: tokens of both kinds live in one table keyed by hash, so the hint cannot save a
//! lookup.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::client_auth::{self, Accept};
use crate::endpoints::token::no_store;
use crate::error::OAuthError;
use crate::model::TokenKind;
use crate::state::AppState;
use crate::tokens::hash_secret;

/// `POST /introspect`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    state.count_introspection_request();
    match handle(&state, &headers, &body).await {
        Ok(body) => no_store(Json(body).into_response()),
        Err(err) => err.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let request = client_auth::authenticated_form(
        state.storage().as_ref(),
        headers,
        body,
        Accept::ConfidentialOnly,
    )
    .await?;
    let (token, caller) = (request.token()?, &request.client);
    let inactive = json!({ "active": false });
    let Some(record) = state
        .storage()
        .get_token(&hash_secret(token), state.now())
        .await?
    else {
        return Ok(inactive);
    };
    let visible = caller.resource_server || record.client_id == caller.client_id;
    if record.consumed || record.kind != TokenKind::Access || !visible {
        return Ok(inactive);
    }
    let mut body = json!({
        "active": true,
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": record.subject.as_deref().unwrap_or(&record.client_id),
        "token_type": "Bearer",
        "exp": record.expires_at,
        "iat": record.issued_at,
        "nbf": record.issued_at,
        "iss": state.issuer(),
        "jti": record.jti,
        // The grant family: what an SSF session-revoked event names as the session.
        "sid": record.family_id,
    });
    if let Some(user) = &record.subject {
        body["username"] = Value::String(user.clone());
    }
    if let Some(aud) = &record.resource {
        body["aud"] = Value::String(aud.clone());
    }
    // RFC 9449 §6.2: a bound token's key, for the resource server to check proofs against.
    if let Some(jkt) = &record.dpop_jkt {
        body["token_type"] = json!("DPoP");
        body["cnf"] = json!({ "jkt": jkt });
    }
    Ok(body)
}
