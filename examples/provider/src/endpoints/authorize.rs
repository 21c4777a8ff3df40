//! `GET/POST /authorize`: the authorization endpoint with its login and consent steps.
//!
//! # Flow and CSRF design
//!
//! 1. The authorization request (query string, or a form body without `request_id`) is validated
//!    completely. While `client_id` or `redirect_uri` is unknown or invalid the user sees an HTML
//!    error page (400) and is never redirected; once the redirect URI is trusted, every other
//!    problem is redirected back per RFC 6749 §4.1.2.1 with `error`, `state` and `iss`.
//! 2. The validated request is stored server-side as a *pending authorization* with a random id,
//!    an expiry ([`crate::config::Lifetimes::interaction`]) and a stage (`login`, then `consent`).
//!    The browser only carries the id and a CSRF token in hidden form fields.
//! 3. The pending record is bound to the browser by a random `HttpOnly`, `SameSite=Lax` cookie
//!    (`oauth_browser`), whose hash is stored in the record; the CSRF token's hash is stored as
//!    well. Each form submission must present the id, the matching cookie and the matching CSRF
//!    token (all compared in constant time). A cross-site attacker can neither read the token nor
//!    set the victim's cookie, so neither login CSRF nor forced consent is possible.
//! 4. A failed login re-renders the form with a generic message and changes no state. A successful
//!    login moves the record to `consent` atomically and rotates the CSRF token, so the login
//!    form cannot be replayed.
//! 5. The consent decision deletes the record atomically (single use) and redirects with either a
//!    `code` or `error=access_denied`, always with `state` and `iss` (RFC 9207).
//!
//! # Scope
//!
//! Requested scopes must be in `scopes_supported` and in the client's registered scope. Without a
//! `scope` parameter the client's registered scope is requested. The user grants the requested
//! scope ∩ the user's own scopes; when that is empty the request ends with `access_denied`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::html::{self, ConsentView, LoginView};
use crate::model::{AuthorizationCode, Client, InteractionStage, PendingAuthorization};
use crate::params::{self, Params};
use crate::pkce;
use crate::redirect;
use crate::scope;
use crate::state::{AppState, now, secs};
use crate::tokens::{self, constant_time_eq, hash_secret};

/// Name of the browser-binding cookie.
pub const BROWSER_COOKIE: &str = "oauth_browser";
/// Longest accepted `state`.
const MAX_STATE_LEN: usize = 2048;
/// Generic message after a failed login (never says which of username/password was wrong).
const LOGIN_FAILED: &str = "Invalid username or password.";
/// Message for any problem with a form submission.
const INTERACTION_INVALID: &str =
    "This sign-in request is invalid or has expired. Please start again from the application.";

/// `GET /authorize`.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    start(&state, &headers, &params).await
}

/// `POST /authorize`: either an authorization request sent as a form (RFC 6749 §3.1 allows POST)
/// or a submission of the login / consent form (recognised by its `request_id`).
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !params::is_form(&headers) {
        return html::bad_request("Expected a form submission.");
    }
    let params = Params::parse(&body);
    if params.get("request_id").is_some() || params.is_repeated("request_id") {
        interact(&state, &headers, &params).await
    } else {
        start(&state, &headers, &params).await
    }
}

/// An error answered by redirecting to the (trusted) redirect URI.
struct ErrorRedirect<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
}

impl ErrorRedirect<'_> {
    fn send(&self, error: &str, description: &str) -> Response {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = self.state {
            params.push(("state", s));
        }
        params.push(("iss", self.issuer));
        redirect_with(self.redirect_uri, &params, StatusCode::FOUND)
    }
}

/// Redirects to `uri` with `params` appended to its query.
fn redirect_with(uri: &str, params: &[(&str, &str)], status: StatusCode) -> Response {
    let Ok(mut url) = Url::parse(uri) else {
        // Registered URIs were validated at registration; this is unreachable in practice but
        // must not redirect anywhere unexpected.
        return html::bad_request("The redirect URI is invalid.");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let location = url.to_string();
    let mut response = if status == StatusCode::SEE_OTHER {
        Redirect::to(&location).into_response()
    } else {
        Redirect::temporary(&location).into_response()
    };
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn display_name(client: &Client) -> &str {
    client.client_name.as_deref().unwrap_or(&client.client_id)
}

/// Validates an authorization request and shows the login form.
async fn start(state: &AppState, headers: &HeaderMap, params: &Params) -> Response {
    // Until the redirect URI is trusted, errors are shown to the user, never redirected.
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return html::bad_request("The request repeats client_id or redirect_uri.");
    }
    let Some(client_id) = params.get("client_id") else {
        return html::bad_request("The request has no client_id.");
    };
    let client = match state.storage().get_client(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return html::bad_request("Unknown client."),
        Err(e) => return server_error(e),
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return html::bad_request("The request has no redirect_uri.");
    };
    if !redirect::matches(&client.redirect_uris, redirect_uri) {
        return html::bad_request("The redirect_uri is not registered for this client.");
    }

    let reply = ErrorRedirect {
        redirect_uri,
        state: params.get("state"),
        issuer: state.issuer(),
    };
    if let Some(name) = params.first_repeated() {
        return reply.send("invalid_request", &format!("parameter {name} is repeated"));
    }
    if reply.state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return reply.send("invalid_request", "state is too long");
    }
    match params.get("response_type") {
        None => return reply.send("invalid_request", "response_type is required"),
        Some("code") => {}
        Some(_) => {
            return reply.send(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    if !client.allows_grant("authorization_code") {
        return reply.send(
            "unauthorized_client",
            "client may not use the authorization code grant",
        );
    }
    let Some(challenge) = params.get("code_challenge") else {
        return reply.send("invalid_request", "code_challenge is required (PKCE S256)");
    };
    if params.get("code_challenge_method") != Some(pkce::S256) {
        return reply.send("invalid_request", "code_challenge_method must be S256");
    }
    if !pkce::is_valid_challenge(challenge) {
        return reply.send("invalid_request", "code_challenge is malformed");
    }
    let requested = match params.get("scope") {
        Some(s) => match scope::parse(s) {
            Some(set) => set,
            None => return reply.send("invalid_scope", "scope is malformed"),
        },
        None => scope::set(&client.scope),
    };
    let supported = scope::join(state.scopes_supported());
    if requested.is_empty() {
        return reply.send(
            "invalid_scope",
            "no scope requested and the client has no default scope",
        );
    }
    if !scope::is_subset(&requested, &supported) || !scope::is_subset(&requested, &client.scope) {
        return reply.send("invalid_scope", "scope is not allowed for this client");
    }
    let resource = params.get("resource");
    if let Some(r) = resource
        && !is_valid_resource(r)
    {
        return reply.send(
            "invalid_target",
            "resource must be an absolute URI without fragment",
        );
    }

    let (browser_token, set_cookie) = browser_binding(state, headers);
    let request_id = tokens::random_token("");
    let csrf_token = tokens::random_token("");
    let scope = scope::join(&requested);
    let pending = PendingAuthorization {
        id_hash: hash_secret(&request_id),
        browser_hash: hash_secret(&browser_token),
        csrf_hash: hash_secret(&csrf_token),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.clone(),
        state: reply.state.map(str::to_owned),
        code_challenge: challenge.to_owned(),
        resource: resource.map(str::to_owned),
        stage: InteractionStage::Login,
        subject: None,
        granted_scope: None,
        expires_at: now() + secs(state.lifetimes().interaction),
    };
    if let Err(e) = state.storage().put_pending(&pending).await {
        return server_error(e);
    }
    let page = html::login_page(&LoginView {
        client_name: display_name(&client),
        scope: &scope,
        resource,
        request_id: &request_id,
        csrf_token: &csrf_token,
        error: None,
    });
    html::response(StatusCode::OK, page, set_cookie)
}

/// RFC 8707 §2: an absolute URI without fragment.
pub fn is_valid_resource(r: &str) -> bool {
    r.len() <= redirect::MAX_LEN && !r.contains('#') && Url::parse(r).is_ok()
}

/// The browser's binding token from its cookie, or a new one with the `Set-Cookie` header.
fn browser_binding(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(existing) = read_cookie(headers) {
        return (existing, None);
    }
    let token = tokens::random_token("");
    let secure = if state.issuer().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{BROWSER_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}");
    (token, HeaderValue::from_str(&cookie).ok())
}

/// Reads the binding cookie; only values shaped like our tokens are accepted.
fn read_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Handles a login or consent form submission.
async fn interact(state: &AppState, headers: &HeaderMap, params: &Params) -> Response {
    let (Some(request_id), Some(csrf_token)) = (params.get("request_id"), params.get("csrf_token"))
    else {
        return html::bad_request(INTERACTION_INVALID);
    };
    let id_hash = hash_secret(request_id);
    let now = now();
    let pending = match state.storage().get_pending(&id_hash, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return html::bad_request(INTERACTION_INVALID),
        Err(e) => return server_error(e),
    };
    let browser_ok = read_cookie(headers)
        .is_some_and(|c| constant_time_eq(&hash_secret(&c), &pending.browser_hash));
    let csrf_ok = constant_time_eq(&hash_secret(csrf_token), &pending.csrf_hash);
    if !(browser_ok & csrf_ok) {
        return html::bad_request(INTERACTION_INVALID);
    }
    let client = match state.storage().get_client(&pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return html::bad_request(INTERACTION_INVALID),
        Err(e) => return server_error(e),
    };
    match pending.stage {
        InteractionStage::Login => {
            login(state, params, &client, &pending, request_id, csrf_token).await
        }
        InteractionStage::Consent => consent(state, params, &pending, now).await,
    }
}

async fn login(
    state: &AppState,
    params: &Params,
    client: &Client,
    pending: &PendingAuthorization,
    request_id: &str,
    csrf_token: &str,
) -> Response {
    let username = params.get("username").unwrap_or_default().to_owned();
    let password = params.get("password").unwrap_or_default().to_owned();
    // Argon2 takes tens of milliseconds of CPU: keep it off the async worker threads.
    let users = state.users().clone();
    let user =
        tokio::task::spawn_blocking(move || users.authenticate(&username, &password).cloned())
            .await
            .ok()
            .flatten();
    let Some(user) = user else {
        let page = html::login_page(&LoginView {
            client_name: display_name(client),
            scope: &pending.scope,
            resource: pending.resource.as_deref(),
            request_id,
            csrf_token,
            error: Some(LOGIN_FAILED),
        });
        return html::response(StatusCode::OK, page, None);
    };

    let requested = scope::set(&pending.scope);
    let granted = scope::join(requested.iter().filter(|s| user.scopes.contains(s)));
    let now = now();
    if granted.is_empty() {
        return match state
            .storage()
            .take_pending(&pending.id_hash, InteractionStage::Login, now)
            .await
        {
            Ok(Some(p)) => decision_redirect(
                state,
                &p,
                Err((
                    "access_denied",
                    "the user holds none of the requested scopes",
                )),
            ),
            Ok(None) => html::bad_request(INTERACTION_INVALID),
            Err(e) => server_error(e),
        };
    }
    let new_csrf = tokens::random_token("");
    match state
        .storage()
        .complete_login(
            &pending.id_hash,
            &user.username,
            &granted,
            &hash_secret(&new_csrf),
            now,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return html::bad_request(INTERACTION_INVALID),
        Err(e) => return server_error(e),
    }
    let page = html::consent_page(&ConsentView {
        client_name: display_name(client),
        username: &user.username,
        scope: &granted,
        resource: pending.resource.as_deref(),
        request_id,
        csrf_token: &new_csrf,
    });
    html::response(StatusCode::OK, page, None)
}

async fn consent(
    state: &AppState,
    params: &Params,
    pending: &PendingAuthorization,
    now: i64,
) -> Response {
    let approve = match params.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return html::bad_request("Please choose Approve or Deny."),
    };
    let taken = match state
        .storage()
        .take_pending(&pending.id_hash, InteractionStage::Consent, now)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return html::bad_request(INTERACTION_INVALID),
        Err(e) => return server_error(e),
    };
    if !approve {
        return decision_redirect(
            state,
            &taken,
            Err(("access_denied", "the user denied the request")),
        );
    }
    let (Some(subject), Some(scope)) = (taken.subject.clone(), taken.granted_scope.clone()) else {
        return html::bad_request(INTERACTION_INVALID);
    };
    let code = tokens::random_token(tokens::CODE_PREFIX);
    let record = AuthorizationCode {
        code_hash: hash_secret(&code),
        client_id: taken.client_id.clone(),
        redirect_uri: taken.redirect_uri.clone(),
        subject,
        scope,
        resource: taken.resource.clone(),
        code_challenge: taken.code_challenge.clone(),
        family_id: tokens::random_id(),
        issued_at: now,
        expires_at: now + secs(state.lifetimes().authorization_code),
        consumed: false,
    };
    if let Err(e) = state.storage().put_code(&record).await {
        return server_error(e);
    }
    tracing::info!(client_id = %record.client_id, subject = %record.subject, family = %record.family_id, "authorization code issued");
    decision_redirect(state, &taken, Ok(&code))
}

/// Redirects the user agent back to the client after the decision (303 after a POST).
fn decision_redirect(
    state: &AppState,
    p: &PendingAuthorization,
    outcome: Result<&str, (&str, &str)>,
) -> Response {
    let mut params: Vec<(&str, &str)> = match outcome {
        Ok(code) => vec![("code", code)],
        Err((error, description)) => vec![("error", error), ("error_description", description)],
    };
    if let Some(s) = p.state.as_deref() {
        params.push(("state", s));
    }
    params.push(("iss", state.issuer()));
    redirect_with(&p.redirect_uri, &params, StatusCode::SEE_OTHER)
}

fn server_error(err: crate::storage::StorageError) -> Response {
    tracing::error!(error = %err, "storage failure at the authorization endpoint");
    html::response(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::error_page("The server failed. Please try again later."),
        None,
    )
}
