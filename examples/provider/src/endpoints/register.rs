//! `POST /register` (RFC 7591 dynamic client registration).
//!
//! Registration is open (no initial access token), as MCP clients expect, but an anonymous caller
//! can only create clients for the authorization code grant: every token such a client obtains
//! was approved by a user on the consent page, and is bounded by that user's scopes. The
//! `client_credentials` grant, where the client acts on its own authority, needs the configured
//! initial access token (RFC 7591 §3, `Authorization: Bearer <token>`, compared in constant
//! time), a confidential client, and a scope within the *registrable* scopes
//! ([`crate::Config::registrable_scopes`], never `admin`). A wrong initial access token is always
//! refused (`401 invalid_token`), whatever is requested.
//!
//! Accepted metadata: `redirect_uris` (see [`crate::redirect`] for the rules),
//! `token_endpoint_auth_method` (`none` → public client; `client_secret_basic` (the RFC 7591
//! default) or `client_secret_post` → confidential client with a generated secret),
//! `grant_types` (default `["authorization_code"]`), `response_types` (only `code`),
//! `application_type` (`web` or `native`, OpenID Connect Dynamic Registration §2; see
//! [`crate::redirect::ApplicationType`] for each type's redirect rules; without it, `web` when
//! every redirect URI satisfies the web rules, otherwise `native`; echoed in the response),
//! `client_name` (no control or format characters, so it cannot hide or reorder text on the
//! consent page), `scope` (default: the supported scopes, or the registrable ones for
//! `client_credentials` clients; a blank scope is `invalid_scope`), `dpop_bound_access_tokens`
//! (RFC 9449 §5.2, a boolean, default `false`: when `true` every token request of the client must
//! carry a DPoP proof; echoed when `true`). Other members are ignored.
//! The secret is returned once and stored only as a hash; it does not expire
//! (`client_secret_expires_at: 0`). Registered clients are never resource servers and never
//! restricted to some resources: both are configuration.
//!
//! Anonymous registration is bounded: per client address
//! ([`crate::limits::Limits::registrations_per_address`], `429` beyond) and in the number of
//! registered clients never used ([`crate::limits::Limits::max_unused_clients`], `503`
//! beyond); a client no user approved within
//! [`crate::limits::Limits::unused_client_ttl`] is deleted by the cleanup task.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::endpoints::token::no_store;
use crate::error::{ErrorCode, OAuthError};
use crate::limits::ClientAddr;
use crate::model::{AuthMethod, Client};
use crate::redirect::{self, ApplicationType};
use crate::scope;
use crate::state::{AppState, secs};
use crate::storage::Admission;
use crate::tokens::{self, hash_secret};

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest `client_name`.
const MAX_NAME_LEN: usize = 200;

#[derive(Deserialize)]
struct Request {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
    application_type: Option<String>,
    dpop_bound_access_tokens: Option<bool>,
}

/// `POST /register`.
pub async fn post(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = match initial_access_token(&state, &headers) {
        Ok(authorized) => authorized,
        Err(err) => return err.into_response(),
    };
    // Open registration writes a row for anyone: bounded per address before anything else. A
    // caller holding the initial access token is configured, not anonymous.
    if !authorized && let Err(wait) = state.registrations().try_record(&addr, Instant::now()) {
        tracing::debug!(%addr, "registration refused: per-address limit");
        return OAuthError::unavailable(
            StatusCode::TOO_MANY_REQUESTS,
            "too many registrations from this address; retry later",
            wait,
        )
        .into_response();
    }
    match handle(&state, authorized, &headers, &body).await {
        Ok(body) => no_store((StatusCode::CREATED, Json(body)).into_response()),
        // Each refusal carries its own status and `Retry-After` (the full cap's, or a database
        // outage's).
        Err(err) => err.into_response(),
    }
}

fn metadata_error(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// Whether the request carries the configured initial access token. No `Authorization` header is
/// `Ok(false)`; anything else that is not exactly `Bearer <the token>` is `401 invalid_token`.
fn initial_access_token(state: &AppState, headers: &HeaderMap) -> Result<bool, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    let token = value
        .to_str()
        .ok()
        .filter(|_| values.next().is_none())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) if state.is_registration_token(token) => Ok(true),
        _ => Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the initial access token is invalid",
        )),
    }
}

/// True for characters that must not appear in a `client_name`: controls, and Unicode format
/// characters (bidi overrides such as U+202E, zero-width characters such as U+200B, …) that can
/// disguise the name on the consent page.
fn is_hidden_character(c: char) -> bool {
    c.is_control()
        || unicode_general_category::get_general_category(c)
            == unicode_general_category::GeneralCategory::Format
}

/// Validates the metadata and stores the client; `authorized` when the caller presented the
/// initial access token.
async fn handle(
    state: &AppState,
    authorized: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(metadata_error("body must be application/json"));
    }
    let req: Request = serde_json::from_slice(body).map_err(|_| {
        metadata_error("client metadata is not a JSON object of the expected shape")
    })?;

    let auth_method_name = req
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("client_secret_basic");
    let auth_method = AuthMethod::parse(auth_method_name)
        .ok_or_else(|| metadata_error("unsupported token_endpoint_auth_method"))?;
    let confidential = auth_method != AuthMethod::None;

    let mut grant_types: Vec<String> = Vec::new();
    for g in req
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()])
    {
        if !matches!(
            g.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        ) {
            return Err(metadata_error("unsupported grant type"));
        }
        if g == "client_credentials" {
            if !authorized {
                return Err(metadata_error(if state.has_registration_token() {
                    "client_credentials needs an initial access token"
                } else {
                    "client_credentials is only available to configured clients"
                }));
            }
            if !confidential {
                return Err(metadata_error(
                    "client_credentials requires a confidential client",
                ));
            }
        }
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    let uses_code = grant_types.iter().any(|g| g == "authorization_code");

    let response_types = req.response_types.unwrap_or_else(|| {
        if uses_code {
            vec!["code".to_owned()]
        } else {
            Vec::new()
        }
    });
    if response_types.iter().any(|r| r != "code") {
        return Err(metadata_error("only response_type code is supported"));
    }
    if uses_code != response_types.iter().any(|r| r == "code") {
        return Err(metadata_error(
            "response_types code and grant_types authorization_code go together",
        ));
    }

    let redirect_uris = req.redirect_uris.unwrap_or_default();
    if uses_code && redirect_uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris are required for the authorization code grant",
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "too many redirect_uris",
        ));
    }
    let application_type = match req.application_type.as_deref() {
        None => ApplicationType::inferred(&redirect_uris),
        Some(name) => ApplicationType::parse(name)
            .ok_or_else(|| metadata_error("application_type must be web or native"))?,
    };
    for uri in &redirect_uris {
        redirect::validate_for(uri, application_type)
            .map_err(|why| OAuthError::new(ErrorCode::InvalidRedirectUri, why))?;
    }

    if let Some(name) = &req.client_name
        && (name.chars().count() > MAX_NAME_LEN || name.chars().any(is_hidden_character))
    {
        return Err(metadata_error(
            "client_name is too long or has control or format characters",
        ));
    }

    // A client acting on its own authority is bounded by the registrable scopes; a client acting
    // for users by the supported scopes (each token is then bounded by the user's own scopes).
    let self_granting = grant_types.iter().any(|g| g == "client_credentials");
    let bound = scope::join(if self_granting {
        state.registrable_scopes()
    } else {
        state.scopes_supported()
    });
    let scope = match &req.scope {
        None => bound,
        Some(s) => {
            let set = scope::parse(s).ok_or_else(|| metadata_error("scope is malformed"))?;
            if set.is_empty() {
                return Err(OAuthError::invalid_scope("scope is blank"));
            }
            if !scope::is_subset(&set, &bound) {
                return Err(metadata_error(if self_granting {
                    "scope exceeds the registrable scopes"
                } else {
                    "scope contains unsupported values"
                }));
            }
            scope::join(&set)
        }
    };

    let secret = confidential.then(|| tokens::random_token(tokens::CLIENT_SECRET_PREFIX));
    let client = Client {
        client_id: tokens::random_id(),
        secret_hash: secret.as_deref().map(hash_secret),
        client_name: req.client_name,
        redirect_uris,
        grant_types,
        scope,
        auth_method,
        issued_at: state.now(),
        resource_server: false,
        resources: Vec::new(),
        dpop_bound_access_tokens: req.dpop_bound_access_tokens.unwrap_or(false),
    };
    // Clients registered with the initial access token are the operator's: they neither count
    // against the cap on never-used anonymous clients nor expire unused.
    let limits = state.limits();
    let unused_until = client.issued_at + secs(limits.unused_client_ttl);
    let admitted = if authorized {
        state.storage().put_client(&client).await?;
        Admission::Stored
    } else {
        state
            .storage()
            .register_client(
                &client,
                unused_until,
                limits.max_unused_clients,
                state.now(),
            )
            .await?
    };
    if admitted != Admission::Stored {
        return Err(OAuthError::unavailable(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server holds too many unused registrations; retry later",
            crate::limits::FULL_RETRY_AFTER,
        ));
    }
    tracing::info!(client_id = %client.client_id, method = auth_method.as_str(), "client registered");

    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.issued_at,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": auth_method.as_str(),
        "grant_types": client.grant_types,
        "response_types": response_types,
        "scope": client.scope,
        "application_type": application_type.as_str(),
    });
    if let Some(name) = &client.client_name {
        body["client_name"] = Value::String(name.clone());
    }
    if client.dpop_bound_access_tokens {
        body["dpop_bound_access_tokens"] = Value::Bool(true);
    }
    if let Some(secret) = secret {
        body["client_secret"] = Value::String(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    Ok(body)
}
