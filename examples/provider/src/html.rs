//! The login, consent and error pages.
//!
//! Every interpolated value goes through [`esc`] (HTML-escapes `& < > " '`, valid in text and
//! in double-quoted attributes). Responses carry a CSP without scripts, `frame-ancestors 'none'`
//! against clickjacking of the consent button, and `no-store`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// HTML-escapes a value.
pub fn esc(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

/// One scope as the pages show it.
pub struct ScopeLine<'a> {
    /// The scope token.
    pub name: &'a str,
    /// What it allows, in words, from the configuration.
    pub description: Option<&'a str>,
}

/// What the login page shows.
pub struct LoginView<'a> {
    /// Client display name (chosen by the client, so never shown alone).
    pub client_name: &'a str,
    /// Host of the redirect URI, shown beside the name.
    pub redirect_host: &'a str,
    /// Requested scopes.
    pub scopes: &'a [ScopeLine<'a>],
    /// Requested resource.
    pub resource: Option<&'a str>,
    /// Interaction id (hidden field).
    pub request_id: &'a str,
    /// CSRF token (hidden field).
    pub csrf_token: &'a str,
    /// Generic error after a failed attempt.
    pub error: Option<&'a str>,
}

/// What the consent page shows.
pub struct ConsentView<'a> {
    /// Client display name (chosen by the client, so never shown alone).
    pub client_name: &'a str,
    /// Host of the redirect URI, shown beside the name.
    pub redirect_host: &'a str,
    /// Logged-in user.
    pub username: &'a str,
    /// Scopes that will be granted.
    pub scopes: &'a [ScopeLine<'a>],
    /// Resource the token will be restricted to.
    pub resource: Option<&'a str>,
    /// Interaction id (hidden field).
    pub request_id: &'a str,
    /// CSRF token (hidden field).
    pub csrf_token: &'a str,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;\
padding:0 1rem}label{display:block;margin:.5rem 0}input[type=text],input[type=password]{width:100%}\
.error{color:#b00020}button{margin:.5rem .5rem 0 0}code{word-break:break-all}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

fn hidden(request_id: &str, csrf_token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"request_id\" value=\"{}\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        esc(request_id),
        esc(csrf_token)
    )
}

fn scope_list(scopes: &[ScopeLine<'_>]) -> String {
    if scopes.is_empty() {
        return "<p>No permissions.</p>".to_owned();
    }
    let items: String = scopes
        .iter()
        .map(|s| match s.description {
            Some(d) => format!("<li><code>{}</code>: {}</li>", esc(s.name), esc(d)),
            None => format!("<li><code>{}</code></li>", esc(s.name)),
        })
        .collect();
    format!("<ul class=\"scopes\">{items}</ul>")
}

/// The client's self-chosen name beside where it will send the user back.
fn client_line(name: &str, redirect_host: &str) -> String {
    format!(
        "<strong>{}</strong> (returns to <code class=\"host\">{}</code>)",
        esc(name),
        esc(redirect_host)
    )
}

fn resource_line(resource: Option<&str>) -> String {
    resource
        .map(|r| format!("<p>For the resource <code>{}</code>.</p>", esc(r)))
        .unwrap_or_default()
}

/// The login form.
pub fn login_page(v: &LoginView<'_>) -> String {
    let error = v
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>{client} requests access:</p>{scopes}{resource}\
{error}<form method=\"post\" action=\"/authorize\">{hidden}\
<label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label>\
<label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
<button type=\"submit\">Sign in</button></form>",
            client = client_line(v.client_name, v.redirect_host),
            scopes = scope_list(v.scopes),
            resource = resource_line(v.resource),
            hidden = hidden(v.request_id, v.csrf_token),
        ),
    )
}

/// The consent form.
pub fn consent_page(v: &ConsentView<'_>) -> String {
    page(
        "Authorize access",
        &format!(
            "<h1>Authorize access</h1><p>Signed in as <strong>{user}</strong>.</p>\
<p>{client} will be able to:</p>{scopes}{resource}\
<form method=\"post\" action=\"/authorize\">{hidden}\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            user = esc(v.username),
            client = client_line(v.client_name, v.redirect_host),
            scopes = scope_list(v.scopes),
            resource = resource_line(v.resource),
            hidden = hidden(v.request_id, v.csrf_token),
        ),
    )
}

/// An error page, used when the request cannot be safely redirected back to the client.
pub fn error_page(message: &str) -> String {
    page(
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p class=\"error\">{}</p>",
            esc(message)
        ),
    )
}

/// Wraps a page in a response with the security headers.
pub fn response(status: StatusCode, body: String, set_cookie: Option<HeaderValue>) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(cookie) = set_cookie {
        h.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A 400 error page.
pub fn bad_request(message: &str) -> Response {
    response(StatusCode::BAD_REQUEST, error_page(message), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_escaped() {
        let html = login_page(&LoginView {
            client_name: "<script>alert(1)</script>",
            redirect_host: "<b>",
            scopes: &[ScopeLine {
                name: "<i>",
                description: Some("<u>"),
            }],
            resource: Some("https://x/\"><img>"),
            request_id: "a\"b",
            csrf_token: "c",
            error: None,
        });
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("<u>"));
        assert!(!html.contains("\"><img>"));
        assert!(html.contains("a&quot;b"));
    }
}
