//! The login and consent steps of `POST /authorize` (see [`crate::endpoints::authorize`] for the
//! flow and the CSRF design).
//!
//! Every submission must carry the interaction id, the CSRF token of the current stage and the
//! browser-binding cookie of the browser that started the request; anything else gets the same
//! generic error page and changes nothing.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::endpoints::authorize::{
    display_name, read_cookie, redirect_host, redirect_with, scope_lines, server_error,
};
use crate::html::{self, ConsentView, LoginView};
use crate::limits::{ClientAddr, retry_after_secs};
use crate::model::{AuthorizationCode, Client, InteractionStage, PendingAuthorization};
use crate::params::Params;
use crate::scope;
use crate::state::{AppState, secs};
use crate::tokens::{self, constant_time_eq, hash_secret};

/// Generic message after a failed login (never says which of username/password was wrong).
const LOGIN_FAILED: &str = "Invalid username or password.";
/// Message when the account or the address used up its failed logins (followed by the wait).
pub const LOGIN_THROTTLED: &str = "Too many failed sign-in attempts.";
/// Message when every password-hashing slot stayed busy for the whole wait.
pub const LOGIN_BUSY: &str = "The server is busy. Please try again in a moment.";
/// Message for any problem with a form submission.
const INTERACTION_INVALID: &str =
    "This sign-in request is invalid or has expired. Please start again from the application.";

/// Handles a login or consent form submission.
pub(crate) async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    addr: ClientAddr,
) -> Response {
    let (Some(request_id), Some(csrf_token)) = (params.get("request_id"), params.get("csrf_token"))
    else {
        return html::bad_request(INTERACTION_INVALID);
    };
    let id_hash = hash_secret(request_id);
    let now = state.now();
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
            let form = LoginForm {
                state,
                client: &client,
                pending: &pending,
                request_id,
                csrf_token,
            };
            login(state, params, &form, addr).await
        }
        InteractionStage::Consent => consent(state, params, &pending, now).await,
    }
}

/// What the login page is re-rendered from.
struct LoginForm<'a> {
    state: &'a AppState,
    client: &'a Client,
    pending: &'a PendingAuthorization,
    request_id: &'a str,
    csrf_token: &'a str,
}

impl LoginForm<'_> {
    /// The login form again, with a message, the given status and an optional `Retry-After`.
    fn again(&self, status: StatusCode, error: &str, retry_after: Option<Duration>) -> Response {
        let page = html::login_page(&LoginView {
            client_name: &display_name(self.client),
            redirect_host: &redirect_host(&self.pending.redirect_uri),
            scopes: &scope_lines(self.state, &self.pending.scope),
            resource: self.pending.resource.as_deref(),
            request_id: self.request_id,
            csrf_token: self.csrf_token,
            error: Some(error),
        });
        let mut response = html::response(status, page, None);
        if let Some(wait) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        response
    }
}

async fn login(
    state: &AppState,
    params: &Params,
    form: &LoginForm<'_>,
    addr: ClientAddr,
) -> Response {
    let pending = form.pending;
    let username = params.get("username").unwrap_or_default().to_owned();
    let password = params.get("password").unwrap_or_default().to_owned();
    // Counted before hashing, so concurrent guesses cannot overrun the limit; a banned account
    // or address is refused without hashing at all.
    if let Err(throttled) = state
        .login_throttle()
        .begin(&username, addr, state.instant())
    {
        let seconds = retry_after_secs(throttled.retry_after);
        let message = if throttled.slowed {
            format!("{LOGIN_THROTTLED} Please try again in {seconds} second(s).")
        } else {
            let minutes = seconds.div_ceil(60);
            format!("{LOGIN_THROTTLED} Please try again in {minutes} minute(s).")
        };
        tracing::debug!(%addr, "login refused: too many failed attempts");
        return form.again(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            Some(throttled.retry_after),
        );
    }
    // Argon2 takes tens of milliseconds of CPU and ~19 MiB: run it off the async worker threads,
    // a bounded number at a time.
    // The user's runtime state (a changed password, disabled) from storage, shared by every
    // instance.
    let runtime = match state.storage().get_user_override(&username).await {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, "reading the user's runtime state failed");
            state.login_throttle().abandoned(&username, addr);
            return form.again(
                StatusCode::SERVICE_UNAVAILABLE,
                LOGIN_BUSY,
                Some(crate::storage::UNAVAILABLE_RETRY_AFTER),
            );
        }
    };
    let users = state.users_shared();
    let name = username.clone();
    let verified = state
        .password_gate()
        .run(move |memory| {
            users
                .authenticate_over(&name, &password, runtime.as_ref(), memory)
                .cloned()
        })
        .await;
    let user = match verified {
        Ok(user) => user.flatten(),
        Err(busy) => {
            state.login_throttle().abandoned(&username, addr);
            return form.again(
                StatusCode::SERVICE_UNAVAILABLE,
                LOGIN_BUSY,
                Some(busy.retry_after),
            );
        }
    };
    let Some(user) = user else {
        return form.again(StatusCode::OK, LOGIN_FAILED, None);
    };
    state.login_throttle().succeeded(&username, addr);

    let requested = scope::set(&pending.scope);
    let granted = scope::join(requested.iter().filter(|s| user.scopes.contains(s)));
    let now = state.now();
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
        client_name: &display_name(form.client),
        redirect_host: &redirect_host(&pending.redirect_uri),
        username: &user.username,
        scopes: &scope_lines(state, &granted),
        resource: pending.resource.as_deref(),
        request_id: form.request_id,
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
        dpop_jkt: taken.dpop_jkt.clone(),
    };
    if let Err(e) = state.storage().put_code(&record).await {
        return server_error(e);
    }
    // An anonymously registered client that a user approved is in use: it no longer expires.
    if let Err(e) = state.storage().mark_client_used(&record.client_id).await {
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
