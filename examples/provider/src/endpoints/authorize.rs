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
//!    The browser only carries the id and a CSRF token in hidden form fields. Live records are
//!    capped per client address and in total ([`crate::limits::Limits::pending_per_address`],
//!    [`crate::limits::Limits::max_pending`]: `429` / `503` with `Retry-After` beyond), and a
//!    `HEAD` request stores nothing (no pending record, no client).
//!
//! A client metadata document's client ([`crate::cimd`]) is stored only once the request has
//! passed every check (redirect URI, PKCE, scope, resource) and is not a `HEAD`. A new one is
//! an anonymous registration: it counts against the same per-address limit as `POST /register`
//! ([`crate::limits::Limits::registrations_per_address`], `429` with `Retry-After` beyond) and
//! the server-wide cap of unused clients (`503`).
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
//! Requested scopes must be in `scopes_supported` and in the client's registered scope; a blank
//! `scope` is `invalid_scope`. Without a `scope` parameter the client's registered scope is
//! requested. The user grants the requested scope ∩ the user's own scopes; when that is empty the
//! request ends with `access_denied`.
//!
//! # Exactness
//!
//! `redirect_uri` is matched as a string ([`crate::redirect`]); `state` must be `VSCHAR` and is
//! echoed byte for byte; `resource` must be one of the known resources ([`crate::resource`]).
//! The login and consent pages show the redirect URI's host beside the client's self-chosen name,
//! and each scope's configured description.
//!
//! # DPoP
//!
//! `dpop_jkt` (RFC 9449 §10), when present, must be an RFC 7638 thumbprint (43 base64url
//! characters; otherwise `invalid_request`). The code the request yields is then redeemed only
//! with a DPoP proof signed by that key.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::cimd;
use crate::endpoints::interaction;
use crate::error::safe_description;
use crate::html::{self, LoginView, ScopeLine};
use crate::limits::{ClientAddr, retry_after_secs};
use crate::model::{Client, InteractionStage, PendingAuthorization};
use crate::params::{self, Params};
use crate::pkce;
use crate::redirect;
use crate::resource;
use crate::scope;
use crate::state::{AppState, secs};
use crate::storage::{Admission, PendingCaps};
use crate::tokens::{self, hash_secret};

/// Name of the browser-binding cookie.
pub const BROWSER_COOKIE: &str = "oauth_browser";
/// Longest accepted `state` (longer ones are refused, not truncated).
const MAX_STATE_LEN: usize = 2048;

/// `GET /authorize` (and `HEAD`, which validates the same way but stores nothing).
pub async fn get(
    State(state): State<AppState>,
    method: Method,
    addr: ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let origin = Origin {
        addr,
        head: method == Method::HEAD,
    };
    start(&state, &headers, &params, origin).await
}

/// `POST /authorize`: either an authorization request sent as a form (RFC 6749 §3.1 allows POST)
/// or a submission of the login / consent form (recognised by its `request_id`).
pub async fn post(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !params::is_form(&headers) {
        return html::bad_request("Expected a form submission.");
    }
    let params = Params::parse(&body);
    if params.get("request_id").is_some() || params.is_repeated("request_id") {
        interaction::submit(&state, &headers, &params, addr).await
    } else {
        let origin = Origin { addr, head: false };
        start(&state, &headers, &params, origin).await
    }
}

/// Where an authorization request came from.
#[derive(Clone, Copy)]
struct Origin {
    /// The client address its pending record counts against.
    addr: ClientAddr,
    /// A `HEAD` request: answered like `GET`, without storing anything.
    head: bool,
}

/// An error answered by redirecting to the (trusted) redirect URI.
struct ErrorRedirect<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
}

impl ErrorRedirect<'_> {
    /// `description` is written in the code, never request input (see [`crate::error`]).
    fn send(&self, error: &str, description: &'static str) -> Response {
        let description = safe_description(description);
        let mut params = vec![
            ("error", error),
            ("error_description", description.as_str()),
        ];
        if let Some(s) = self.state {
            params.push(("state", s));
        }
        params.push(("iss", self.issuer));
        redirect_with(self.redirect_uri, &params, StatusCode::FOUND)
    }
}

/// Redirects to `uri` with `params` appended to its query.
pub(crate) fn redirect_with(uri: &str, params: &[(&str, &str)], status: StatusCode) -> Response {
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

/// The client of an authorization request: a client metadata document for an `https` URL
/// (fetched or cached, see [`crate::cimd`]; stored by [`store_document_client`] only once the
/// request passed every check), otherwise a registered client. Failures are pages for the
/// user, never redirects.
async fn find_client(state: &AppState, client_id: &str) -> Result<Client, Response> {
    if !cimd::is_document_url(client_id) {
        return match state.storage().get_client(client_id).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(html::bad_request("Unknown client.")),
            Err(e) => Err(server_error(e)),
        };
    }
    let client = state
        .cimd()
        .client(client_id, state.scopes_supported(), state.now())
        .await
        .map_err(|e| {
            tracing::debug!(error = ?e, "client metadata document refused");
            if e == cimd::CimdError::Busy {
                // Fetches end within the fetch time bound: retry after it.
                let wait = state
                    .cimd()
                    .settings()
                    .timeout
                    .clamp(Duration::from_secs(1), Duration::from_secs(60));
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), wait);
            }
            html::bad_request(&e.to_string())
        })?;
    Ok(client)
}

/// Stores a document's client: updated when known, otherwise admitted like an anonymous
/// registration (counted against [`crate::limits::Limits::registrations_per_address`] for
/// `addr`, capped by [`crate::limits::Limits::max_unused_clients`] and deleted when no user
/// approves it within [`crate::limits::Limits::unused_client_ttl`]), since anyone can publish
/// documents at as many URLs as they like.
async fn store_document_client(
    state: &AppState,
    client: &Client,
    addr: ClientAddr,
) -> Result<(), Response> {
    let storage = state.storage();
    if storage
        .get_client(&client.client_id)
        .await
        .map_err(server_error)?
        .is_some()
    {
        return storage.put_client(client).await.map_err(server_error);
    }
    if let Err(wait) = state.registrations().try_record(&addr, Instant::now()) {
        tracing::debug!(%addr, "client metadata document refused: per-address limit");
        return Err(retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many new clients come from your network. Please try again later.",
            wait,
        ));
    }
    let limits = state.limits();
    let unused_until = client.issued_at + secs(limits.unused_client_ttl);
    match storage
        .register_client(client, unused_until, limits.max_unused_clients, state.now())
        .await
    {
        Ok(Admission::Stored) => Ok(()),
        Ok(_) => {
            tracing::debug!("client metadata document refused: too many unused clients");
            Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server cannot accept new clients now. Please try again later.",
                crate::limits::FULL_RETRY_AFTER,
            ))
        }
        Err(e) => Err(server_error(e)),
    }
}

/// An error page with `status` and `Retry-After`.
pub(crate) fn retry_later(status: StatusCode, message: &str, wait: Duration) -> Response {
    let mut response = html::response(status, html::error_page(message), None);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
    response
}

/// What the login and consent pages call the client. A client metadata document's client is
/// named by its URL's host, which it cannot choose freely, before its self-chosen name.
pub(crate) fn display_name(client: &Client) -> String {
    let name = client.client_name.as_deref();
    if cimd::is_document_url(&client.client_id)
        && let Some(host) = cimd::host_of(&client.client_id)
    {
        return match name {
            Some(name) => format!("{host} (calls itself \u{201c}{name}\u{201d})"),
            None => host,
        };
    }
    name.unwrap_or(&client.client_id).to_owned()
}

/// Where the user will be sent back to, for the login and consent pages: the redirect URI's host
/// (`127.0.0.1`, `app.example`), or its scheme for private-use URIs (`com.example.app`). Shown
/// beside the client's self-chosen name, which alone proves nothing.
pub(crate) fn redirect_host(redirect_uri: &str) -> String {
    match Url::parse(redirect_uri) {
        Ok(url) => url
            .host_str()
            .map_or_else(|| url.scheme().to_owned(), str::to_owned),
        Err(_) => String::new(),
    }
}

/// The scopes of `scope`, each with its configured description, for the pages.
pub(crate) fn scope_lines<'a>(state: &'a AppState, scope: &'a str) -> Vec<ScopeLine<'a>> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|name| ScopeLine {
            name,
            description: state.scope_description(name),
        })
        .collect()
}

/// An RFC 7638 SHA-256 thumbprint: 32 bytes in base64url without padding, 43 characters.
fn is_thumbprint(jkt: &str) -> bool {
    jkt.len() == 43
        && jkt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 6749 Appendix A.5: `state` is `1*VSCHAR` (printable ASCII and space).
fn is_valid_state(state: &str) -> bool {
    state.len() <= MAX_STATE_LEN && state.bytes().all(|b| (0x20..=0x7E).contains(&b))
}

/// Validates an authorization request and shows the login form.
async fn start(state: &AppState, headers: &HeaderMap, params: &Params, origin: Origin) -> Response {
    // Until the redirect URI is trusted, errors are shown to the user, never redirected.
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return html::bad_request("The request repeats client_id or redirect_uri.");
    }
    let Some(client_id) = params.get("client_id") else {
        return html::bad_request("The request has no client_id.");
    };
    let client = match find_client(state, client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return html::bad_request("The request has no redirect_uri.");
    };
    if !redirect::matches(&client.redirect_uris, redirect_uri) {
        return html::bad_request("The redirect_uri is not registered for this client.");
    }

    // A `state` that cannot be echoed byte for byte is not echoed at all; without it the client
    // could not match an error redirect, so the user sees the error instead.
    if params.is_repeated("state") || params.get("state").is_some_and(|s| !is_valid_state(s)) {
        return html::bad_request("The request's state parameter is invalid.");
    }
    let reply = ErrorRedirect {
        redirect_uri,
        state: params.get("state"),
        issuer: state.issuer(),
    };
    // Checked before the generic repetition rule: RFC 8707 asks for `invalid_target`.
    if params.is_repeated("resource") {
        return reply.send(
            "invalid_target",
            "several resource parameters are not supported",
        );
    }
    if params.first_repeated().is_some() {
        return reply.send("invalid_request", "a parameter is repeated");
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
    let resource = match resource::requested(state, &client, params) {
        Ok(r) => r,
        Err(why) => return reply.send("invalid_target", why),
    };
    // RFC 9449 §10: the thumbprint of the key the code must be redeemed with.
    let dpop_jkt = params.get("dpop_jkt");
    if dpop_jkt.is_some_and(|jkt| !is_thumbprint(jkt)) {
        return reply.send("invalid_request", "dpop_jkt is malformed");
    }

    if origin.head {
        // Same status and headers as a GET would get, but no pending record, no client and no
        // cookie: a HEAD must not create state (RFC 9110 §9.3.2 makes it safe).
        return html::response(StatusCode::OK, String::new(), None);
    }
    // Every check passed: only now is a document's client stored (or counted as a new one).
    if cimd::is_document_url(&client.client_id)
        && let Err(page) = store_document_client(state, &client, origin.addr).await
    {
        return page;
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
        dpop_jkt: dpop_jkt.map(str::to_owned),
        expires_at: state.now() + secs(state.lifetimes().interaction),
    };
    let limits = state.limits();
    let caps = PendingCaps {
        per_address: limits.pending_per_address,
        total: limits.max_pending,
    };
    let address = origin.addr.to_string();
    match state
        .storage()
        .put_pending(&pending, &address, caps, state.now())
        .await
    {
        Ok(Admission::Stored) => {}
        Ok(full) => return too_many_pending(state, full),
        Err(e) => return server_error(e),
    }
    let host = redirect_host(redirect_uri);
    let page = html::login_page(&LoginView {
        client_name: &display_name(&client),
        redirect_host: &host,
        scopes: &scope_lines(state, &scope),
        resource,
        request_id: &request_id,
        csrf_token: &csrf_token,
        error: None,
    });
    html::response(StatusCode::OK, page, set_cookie)
}

/// The answer when the address or the server holds as many unfinished sign-ins as allowed. No
/// redirect: the client did nothing wrong, and the user can simply retry later.
fn too_many_pending(state: &AppState, full: Admission) -> Response {
    let (status, message) = if full == Admission::AddressFull {
        (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in requests are open from your network. Finish or abandon one, or \
             try again later.",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server has too many open sign-in requests. Please try again later.",
        )
    };
    tracing::debug!(?full, "pending authorization refused");
    let mut response = html::response(status, html::error_page(message), None);
    let retry_after = state.lifetimes().interaction.as_secs().clamp(1, 60);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
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
pub(crate) fn read_cookie(headers: &HeaderMap) -> Option<String> {
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

/// A storage failure's page: `503` with `Retry-After` when the database is unavailable for now,
/// `500` otherwise.
pub(crate) fn server_error(err: crate::storage::StorageError) -> Response {
    if err.is_unavailable() {
        tracing::warn!(error = %err, "database unavailable at the authorization endpoint");
        let mut response = html::response(
            StatusCode::SERVICE_UNAVAILABLE,
            html::error_page("The server is temporarily unavailable. Please try again shortly."),
            None,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::limits::retry_after_secs(
                crate::storage::UNAVAILABLE_RETRY_AFTER,
            )),
        );
        return response;
    }
    tracing::error!(error = %err, "storage failure at the authorization endpoint");
    html::response(
        StatusCode::INTERNAL_SERVER_ERROR,
        html::error_page("The server failed. Please try again later."),
        None,
    )
}
