//! Rejection responses: RFC 6750 challenges for HTTP, trailers-only status for gRPC.
//!
//! | rejection | HTTP | gRPC (`grpc-status`) |
//! |---|---|---|
//! | no token | 401, challenge without `error` | 16 `UNAUTHENTICATED` |
//! | malformed request | 400 `invalid_request` | 16 `UNAUTHENTICATED` |
//! | invalid token | 401 `invalid_token` | 16 `UNAUTHENTICATED` |
//! | missing scope | 403 `insufficient_scope` | 7 `PERMISSION_DENIED` |
//! | authorization server down | 503 + `Retry-After`, no challenge | 14 `UNAVAILABLE` |
//!
//! Every parameter value is emitted as an escaped quoted-string with anything outside visible ASCII
//! dropped, so no configured or derived value can inject a header or a parameter.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::{InvalidToken, Scopes};

/// Default `Retry-After` (seconds) sent with a 503 when the authorization server is unavailable.
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 5;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No bearer token was presented although one is required.
    MissingToken,
    /// The request is malformed (RFC 6750 `invalid_request`), e.g. two `Authorization` headers.
    InvalidRequest(&'static str),
    /// The token is not acceptable (RFC 6750 `invalid_token`).
    InvalidToken(InvalidToken),
    /// The token lacks scopes (RFC 6750 `insufficient_scope`); carries every scope required.
    InsufficientScope(Scopes),
    /// The token could not be checked because the authorization server failed.
    Unavailable,
}

impl Rejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code (`grpc-status`) of this rejection.
    pub fn grpc_status(&self) -> u8 {
        match self {
            Self::MissingToken | Self::InvalidRequest(_) | Self::InvalidToken(_) => 16,
            Self::InsufficientScope(_) => 7,
            Self::Unavailable => 14,
        }
    }

    fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::Unavailable => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }

    /// A human-readable explanation (the `error_description` / `grpc-message`).
    pub fn description(&self) -> &'static str {
        match self {
            Self::MissingToken => "A bearer token is required",
            Self::InvalidRequest(reason) => reason,
            Self::InvalidToken(reason) => reason.description(),
            Self::InsufficientScope(_) => "The access token lacks a scope this request requires",
            Self::Unavailable => "The access token could not be verified, try again later",
        }
    }
}

/// How rejections are worded: the parameters every challenge carries.
///
/// Built once per layer; the no-token challenge, the most frequent one, is pre-rendered.
#[derive(Debug, Clone)]
pub struct Challenger {
    pub(crate) realm: Option<String>,
    pub(crate) resource_metadata: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) retry_after: HeaderValue,
    pub(crate) step_up_with_granted: bool,
    /// Pre-rendered from the fields above; see [`reconfigure`](Self::reconfigure).
    missing_token: HeaderValue,
}

impl Default for Challenger {
    fn default() -> Self {
        Self::new(None, None, None, DEFAULT_RETRY_AFTER_SECS, false)
    }
}

impl Challenger {
    /// A challenger with the given parameters.
    ///
    /// `scope` is the scope advertised in the no-token challenge (the MCP specification recommends
    /// naming what a client should request).
    pub(crate) fn new(
        realm: Option<String>,
        resource_metadata: Option<String>,
        scope: Option<String>,
        retry_after_secs: u32,
        step_up_with_granted: bool,
    ) -> Self {
        let mut challenger = Self {
            realm,
            resource_metadata,
            scope,
            retry_after: HeaderValue::from(retry_after_secs),
            missing_token: HeaderValue::from_static("Bearer"),
            step_up_with_granted,
        };
        challenger.missing_token = challenger.render(&Rejection::MissingToken);
        challenger
    }

    /// Applies `change` to the parameters and re-renders the pre-rendered challenge.
    pub(crate) fn reconfigure(&mut self, change: impl FnOnce(&mut Challenger)) {
        change(self);
        self.missing_token = self.render(&Rejection::MissingToken);
    }

    /// The challenger of the [`BearerAuth`](crate::BearerAuth) that let `request` through, so that
    /// layers inside it (scope checks, extractors) word their challenges the same way; a bare one
    /// when there is none.
    pub fn of<B>(request: &Request<B>) -> &Challenger {
        Self::from_extensions(request.extensions())
    }

    /// Like [`of`](Self::of), from request extensions (e.g. `http::request::Parts::extensions`).
    pub fn from_extensions(extensions: &http::Extensions) -> &Challenger {
        static BARE: OnceLock<Challenger> = OnceLock::new();
        extensions
            .get::<crate::Principal>()
            .and_then(crate::Principal::challenger)
            .or_else(|| extensions.get::<ChallengeContext>().map(|c| &*c.0))
            .unwrap_or_else(|| BARE.get_or_init(Challenger::default))
    }

    /// Whether `insufficient_scope` challenges name the scopes already granted besides the
    /// missing ones (see
    /// [`BearerAuthLayer::step_up_with_granted_scopes`](crate::BearerAuthLayer::step_up_with_granted_scopes)).
    pub fn step_up_with_granted(&self) -> bool {
        self.step_up_with_granted
    }

    /// The `resource_metadata` URL advertised in challenges, if any.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.resource_metadata.as_deref()
    }

    /// The `WWW-Authenticate` value for `rejection`, or `None` for a server problem (which is not a
    /// challenge: the client did nothing wrong).
    pub fn www_authenticate(&self, rejection: &Rejection) -> Option<HeaderValue> {
        match rejection {
            Rejection::MissingToken => Some(self.missing_token.clone()),
            Rejection::Unavailable => None,
            _ => Some(self.render(rejection)),
        }
    }

    fn render(&self, rejection: &Rejection) -> HeaderValue {
        let mut value = String::from("Bearer");
        let mut params = Params(&mut value);
        params.push("realm", self.realm.as_deref());
        params.push("error", rejection.error_code());
        if rejection.error_code().is_some() {
            params.push("error_description", Some(rejection.description()));
        }
        match rejection {
            Rejection::InsufficientScope(required) => {
                params.push("scope", Some(&required.to_string()));
            }
            Rejection::MissingToken => params.push("scope", self.scope.as_deref()),
            _ => {}
        }
        params.push("resource_metadata", self.resource_metadata.as_deref());
        HeaderValue::try_from(value).expect("escaped parameters are visible ASCII")
    }

    /// The full response for `rejection`: gRPC-shaped when the request headers say gRPC.
    pub fn response<B: Default>(&self, rejection: &Rejection, request: &HeaderMap) -> Response<B> {
        if is_grpc(request) {
            self.grpc_response(rejection)
        } else {
            self.http_response(rejection)
        }
    }

    fn http_response<B: Default>(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        if let Some(challenge) = self.www_authenticate(rejection) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if *rejection == Rejection::Unavailable {
            headers.insert(RETRY_AFTER, self.retry_after.clone());
        }
        response
    }

    /// A trailers-only gRPC response: HTTP 200 whose headers carry the status, which every gRPC
    /// client reads as the call's outcome.
    fn grpc_response<B: Default>(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_status())),
        );
        if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(rejection.description())) {
            headers.insert("grpc-message", message);
        }
        if let Some(challenge) = self.www_authenticate(rejection) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The request extension by which [`BearerAuth`](crate::BearerAuth) passes its challenger inward
/// when it lets a request through without a principal (authenticated requests carry it in the
/// [`Principal`](crate::Principal)).
#[derive(Clone)]
pub(crate) struct ChallengeContext(pub(crate) Arc<Challenger>);

/// Appends `, name="value"` parameters to a challenge.
struct Params<'a>(&'a mut String);

impl Params<'_> {
    fn push(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        let separator = if self.0.len() == "Bearer".len() {
            " "
        } else {
            ", "
        };
        let _ = write!(self.0, "{separator}{name}=\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    self.0.push('\\');
                    self.0.push(c);
                }
                ' '..='~' => self.0.push(c),
                // Control characters and non-ASCII cannot appear in a header safely: drop them.
                _ => {}
            }
        }
        self.0.push('"');
    }
}

/// Whether the request is a gRPC call (`content-type: application/grpc`, `application/grpc+proto`…).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.get(.."application/grpc".len())
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
}

/// The gRPC spec's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenger() -> Challenger {
        Challenger::new(
            Some("mcp".into()),
            Some("https://rs.example/.well-known/oauth-protected-resource/mcp".into()),
            Some("read write".into()),
            7,
            false,
        )
    }

    fn header(c: &Challenger, r: &Rejection) -> String {
        c.www_authenticate(r).unwrap().to_str().unwrap().to_owned()
    }

    #[test]
    fn missing_token_has_no_error() {
        assert_eq!(
            header(&challenger(), &Rejection::MissingToken),
            r#"Bearer realm="mcp", scope="read write", resource_metadata="https://rs.example/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            header(&Challenger::default(), &Rejection::MissingToken),
            "Bearer"
        );
    }

    #[test]
    fn invalid_token_and_scope() {
        assert_eq!(
            header(
                &challenger(),
                &Rejection::InvalidToken(InvalidToken::Expired)
            ),
            r#"Bearer realm="mcp", error="invalid_token", error_description="The access token expired", resource_metadata="https://rs.example/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            header(
                &Challenger::default(),
                &Rejection::InsufficientScope(Scopes::parse("write admin"))
            ),
            r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="admin write""#
        );
    }

    #[test]
    fn values_are_escaped() {
        let c = Challenger::new(
            Some("a\"b\\c\r\nX-Injected: 1é".into()),
            None,
            None,
            1,
            false,
        );
        assert_eq!(
            header(&c, &Rejection::MissingToken),
            r#"Bearer realm="a\"b\\cX-Injected: 1""#
        );
    }

    #[test]
    fn unavailable_is_not_a_challenge() {
        let c = challenger();
        assert!(c.www_authenticate(&Rejection::Unavailable).is_none());
        let r: Response<()> = c.response(&Rejection::Unavailable, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "7");
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn grpc_shape() {
        let mut req = HeaderMap::new();
        req.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&req));
        let r: Response<()> =
            challenger().response(&Rejection::InsufficientScope(Scopes::parse("admin")), &req);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(
            r.headers()["grpc-message"],
            "The access token lacks a scope this request requires"
        );
        assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        assert_eq!(grpc_percent_encode("100% é"), "100%25 %C3%A9");
        req.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&req));
    }
}
