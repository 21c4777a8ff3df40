//! `POST /revoke` (RFC 7009).
//!
//! Confidential clients authenticate with their secret, public clients with their `client_id`.
//! Revoking either token of a grant revokes the whole grant family (its access and refresh
//! tokens), as RFC 7009 §2.1 recommends. A client can only revoke its own tokens; for any other
//! token, unknown or foreign, the answer is the same `200` and nothing changes, so the endpoint
//! cannot be used to probe for tokens.
//!
//! The revocation is announced to SSF receivers: one `token-revoked` event per unexpired access
//! token of the family, written to the outbox in the revocation's transaction.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::client_auth::{self, Accept};
use crate::endpoints::token::no_store;
use crate::error::OAuthError;
use crate::state::AppState;
use crate::tokens::hash_secret;

/// `POST /revoke`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => err.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let request =
        client_auth::authenticated_form(state.storage().as_ref(), headers, body, Accept::Any)
            .await?;
    let (token, client) = (request.token()?, &request.client);
    let now = state.now();
    let Some(record) = state.storage().get_token(&hash_secret(token), now).await? else {
        return Ok(());
    };
    if record.client_id != client.client_id {
        return Ok(());
    }
    // One token-revoked event per unexpired access token of the family, in the revocation's
    // transaction.
    let fanout = state
        .storage()
        .revoke_family(
            &record.family_id,
            state.revocation_memory(now),
            &state.announcement(&[], true),
        )
        .await?;
    state.announced(fanout);
    tracing::info!(client_id = %client.client_id, family = %record.family_id, "grant revoked");
    Ok(())
}
