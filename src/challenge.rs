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
//! gRPC is recognised by the request's `content-type`: `application/grpc` and
//! `application/grpc+<codec>` get a gRPC trailers-only response (`content-type: application/grpc`);
//! gRPC-Web (`application/grpc-web`, `application/grpc-web+<codec>`, `application/grpc-web-text`,
//! `application/grpc-web-text+<codec>`) gets the same trailers-only response in the request's own
//! content type, which the gRPC-Web protocol allows ("trailers may be sent together with response
//! headers, with no message in the body") and gRPC-Web clients read as the call's status.
//!
//! Every parameter value is emitted as an escaped quoted-string with anything outside visible ASCII
//! dropped, so no configured or derived value can inject a header or a parameter.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::dpop::{DPOP_NONCE, DpopPolicy, NonceSource, ProofError};
use crate::scope::{OFFLINE_ACCESS, ScopeHierarchy, StepUpScopes};
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
    /// The token could not be checked because the authorization server asked us to slow down;
    /// carries the seconds after which to retry (the response's `Retry-After`).
    Throttled(u32),
    /// This client presented more new tokens than its budget allows (HTTP 429, gRPC
    /// `RESOURCE_EXHAUSTED`); carries the seconds after which to retry. Only that client is
    /// slowed: a flood of garbage tokens cannot make the authorization server throttle everyone.
    TooManyRequests(u32),
    /// The DPoP proof is not acceptable (RFC 9449 §7.1 `invalid_dpop_proof`, or `use_dpop_nonce`
    /// with a fresh nonce in `DPoP-Nonce`). [`ProofError::ReplayStoreFull`] is a server problem:
    /// 503 without a challenge.
    InvalidDpopProof(ProofError),
}

impl Rejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidDpopProof(ProofError::ReplayStoreFull) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingToken | Self::InvalidToken(_) | Self::InvalidDpopProof(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::Unavailable | Self::Throttled(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The gRPC status code (`grpc-status`) of this rejection.
    pub fn grpc_status(&self) -> u8 {
        match self {
            Self::InvalidDpopProof(ProofError::ReplayStoreFull) => 14,
            Self::MissingToken
            | Self::InvalidRequest(_)
            | Self::InvalidToken(_)
            | Self::InvalidDpopProof(_) => 16,
            Self::InsufficientScope(_) => 7,
            Self::Unavailable | Self::Throttled(_) => 14,
            Self::TooManyRequests(_) => 8,
        }
    }

    fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken
            | Self::Unavailable
            | Self::Throttled(_)
            | Self::TooManyRequests(_)
            | Self::InvalidDpopProof(ProofError::ReplayStoreFull) => None,
            Self::InvalidDpopProof(error) => Some(error.error_code()),
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
            Self::Unavailable | Self::Throttled(_) => {
                "The access token could not be verified, try again later"
            }
            Self::TooManyRequests(_) => "Too many new tokens from this client, try again later",
            Self::InvalidDpopProof(error) => error.description(),
        }
    }

    /// Whether the `DPoP` challenge carries this rejection's error: a proof problem, or a token
    /// whose binding does not fit the scheme it came with.
    fn concerns_dpop(&self) -> bool {
        matches!(
            self,
            Self::InvalidDpopProof(_)
                | Self::InvalidToken(
                    InvalidToken::BoundToKey | InvalidToken::NotBound | InvalidToken::DpopRequired
                )
        )
    }

    /// A server problem rather than a refusal of the client: 503 without a challenge.
    fn is_server_problem(&self) -> bool {
        matches!(
            self,
            Self::Unavailable
                | Self::Throttled(_)
                | Self::TooManyRequests(_)
                | Self::InvalidDpopProof(ProofError::ReplayStoreFull)
        )
    }
}

/// An authorization scheme a challenge is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }

    /// The scheme of the request's `Authorization` header, when it is one of ours.
    fn of_request(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
        let scheme = value.split(|&b| b == b' ').next()?;
        if scheme.eq_ignore_ascii_case(b"dpop") {
            Some(Self::Dpop)
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            Some(Self::Bearer)
        } else {
            None
        }
    }
}

/// What the `DPoP` challenge says, when the layer accepts DPoP.
#[derive(Debug, Clone)]
pub(crate) struct DpopChallenge {
    pub(crate) policy: DpopPolicy,
    /// The `algs` parameter: the proof algorithms accepted, space-separated.
    pub(crate) algs: String,
    /// Where a fresh `DPoP-Nonce` comes from, when nonces are required.
    pub(crate) nonces: Option<NonceSource>,
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
    pub(crate) step_up: StepUpScopes,
    /// How granted scopes satisfy required ones, for every check inside the bearer layer.
    pub(crate) hierarchy: Arc<ScopeHierarchy>,
    /// The DPoP challenge, when the layer accepts DPoP (`None`: bearer only).
    pub(crate) dpop: Option<DpopChallenge>,
    /// Pre-rendered from the fields above; see [`reconfigure`](Self::reconfigure).
    missing_token: HeaderValue,
}

impl Default for Challenger {
    fn default() -> Self {
        Self::new(None, None, None, DEFAULT_RETRY_AFTER_SECS)
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
    ) -> Self {
        let mut challenger = Self {
            realm,
            resource_metadata,
            scope,
            retry_after: HeaderValue::from(retry_after_secs),
            missing_token: HeaderValue::from_static("Bearer"),
            step_up: StepUpScopes::default(),
            hierarchy: Arc::default(),
            dpop: None,
        };
        challenger.missing_token = challenger.render(&Rejection::MissingToken, None);
        challenger
    }

    /// Applies `change` to the parameters and re-renders the pre-rendered challenge.
    pub(crate) fn reconfigure(&mut self, change: impl FnOnce(&mut Challenger)) {
        change(self);
        self.missing_token = self.render(&Rejection::MissingToken, None);
    }

    /// The challenger of the [`BearerAuth`](crate::layer::BearerAuth) that let `request` through, so that
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

    /// Which scopes `insufficient_scope` challenges name (see
    /// [`BearerAuthLayer::step_up_scopes`](crate::BearerAuthLayer::step_up_scopes)).
    pub fn step_up_scopes(&self) -> StepUpScopes {
        self.step_up
    }

    /// How granted scopes satisfy required ones (see
    /// [`BearerAuthLayer::scope_hierarchy`](crate::BearerAuthLayer::scope_hierarchy)).
    pub fn scope_hierarchy(&self) -> &ScopeHierarchy {
        &self.hierarchy
    }

    /// The `resource_metadata` URL advertised in challenges, if any.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.resource_metadata.as_deref()
    }

    /// The `WWW-Authenticate` value for `rejection` of a request that used the `Bearer` scheme (or
    /// none), or `None` for a server problem (which is not a challenge: the client did nothing
    /// wrong). See [`www_authenticate_for`](Self::www_authenticate_for).
    pub fn www_authenticate(&self, rejection: &Rejection) -> Option<HeaderValue> {
        self.www_authenticate_for(rejection, &HeaderMap::new())
    }

    /// The `WWW-Authenticate` value for `rejection` of the request with headers `request`, or
    /// `None` for a server problem.
    ///
    /// One challenge per scheme the layer accepts (`Bearer`, then `DPoP` with its `algs`, RFC 9449
    /// §7.1), joined as one header value. The error goes with the scheme it concerns: a proof
    /// problem or a binding mismatch with `DPoP`, anything else with the scheme the request used.
    pub fn www_authenticate_for(
        &self,
        rejection: &Rejection,
        request: &HeaderMap,
    ) -> Option<HeaderValue> {
        if rejection.is_server_problem() {
            return None;
        }
        if *rejection == Rejection::MissingToken {
            return Some(self.missing_token.clone());
        }
        Some(self.render(rejection, Some(request)))
    }

    /// The schemes challenges are issued for, in order.
    fn offered(&self) -> &'static [Scheme] {
        match self.dpop.as_ref().map(|d| d.policy) {
            None | Some(DpopPolicy::Disabled) => &[Scheme::Bearer],
            Some(DpopPolicy::Allowed) => &[Scheme::Bearer, Scheme::Dpop],
            Some(DpopPolicy::Required) => &[Scheme::Dpop],
        }
    }

    fn render(&self, rejection: &Rejection, request: Option<&HeaderMap>) -> HeaderValue {
        let offered = self.offered();
        let erring = rejection.error_code().map(|_| {
            let wanted = if rejection.concerns_dpop() {
                Scheme::Dpop
            } else {
                request
                    .and_then(Scheme::of_request)
                    .unwrap_or(Scheme::Bearer)
            };
            // A scheme the layer does not offer cannot carry it: the first one that is does.
            if offered.contains(&wanted) {
                wanted
            } else {
                offered[0]
            }
        });
        let mut value = String::new();
        for &scheme in offered {
            if !value.is_empty() {
                value.push_str(", ");
            }
            let shown = if erring == Some(scheme) {
                rejection
            } else {
                &Rejection::MissingToken
            };
            self.render_one(&mut value, scheme, shown);
        }
        HeaderValue::try_from(value).expect("escaped parameters are visible ASCII")
    }

    /// Appends one scheme's challenge for `rejection` to `value`.
    fn render_one(&self, value: &mut String, scheme: Scheme, rejection: &Rejection) {
        value.push_str(scheme.name());
        let mut params = Params {
            out: value,
            first: true,
        };
        params.push("realm", self.realm.as_deref());
        params.push("error", rejection.error_code());
        if rejection.error_code().is_some() {
            params.push("error_description", Some(rejection.description()));
        }
        match rejection {
            Rejection::InsufficientScope(required) => {
                params.push("scope", Some(&scope_parameter(required)));
            }
            Rejection::MissingToken => params.push("scope", self.scope.as_deref()),
            _ => {}
        }
        params.push("resource_metadata", self.resource_metadata.as_deref());
        if scheme == Scheme::Dpop {
            params.push("algs", self.dpop.as_ref().map(|d| d.algs.as_str()));
        }
    }

    /// The full response for `rejection`: gRPC-shaped when the request headers say gRPC or
    /// gRPC-Web.
    pub fn response<B: Default>(&self, rejection: &Rejection, request: &HeaderMap) -> Response<B> {
        let mut response = match GrpcKind::of(request) {
            None => self.http_response(rejection),
            Some(GrpcKind::Grpc) => {
                self.grpc_response(rejection, HeaderValue::from_static("application/grpc"))
            }
            Some(GrpcKind::Web(content_type)) => self.grpc_response(rejection, content_type),
        };
        let headers = response.headers_mut();
        if let Some(challenge) = self.www_authenticate_for(rejection, request) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if *rejection == Rejection::InvalidDpopProof(ProofError::UseNonce)
            && let Some(nonces) = self.dpop.as_ref().and_then(|d| d.nonces.as_ref())
        {
            headers.insert(
                DPOP_NONCE,
                HeaderValue::try_from(nonces.current()).expect("a nonce is base64url"),
            );
        }
        response
    }

    fn http_response<B: Default>(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        match rejection {
            Rejection::Unavailable | Rejection::InvalidDpopProof(ProofError::ReplayStoreFull) => {
                headers.insert(RETRY_AFTER, self.retry_after.clone());
            }
            Rejection::Throttled(seconds) | Rejection::TooManyRequests(seconds) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*seconds));
            }
            _ => {}
        }
        response
    }

    /// A trailers-only gRPC (or gRPC-Web) response: HTTP 200 whose headers carry the status, which
    /// every gRPC client reads as the call's outcome.
    fn grpc_response<B: Default>(
        &self,
        rejection: &Rejection,
        content_type: HeaderValue,
    ) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_status())),
        );
        if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(rejection.description())) {
            headers.insert("grpc-message", message);
        }
        response
    }
}

/// The request extension by which [`BearerAuth`](crate::BearerAuth) passes its challenger inward
/// when it lets a request through without a principal (authenticated requests carry it in the
/// [`Principal`](crate::Principal)).
#[derive(Clone)]
pub(crate) struct ChallengeContext(pub(crate) Arc<Challenger>);

/// Appends ` name="value"` (the first) or `, name="value"` parameters to a challenge.
struct Params<'a> {
    out: &'a mut String,
    first: bool,
}

impl Params<'_> {
    fn push(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        let separator = if self.first { " " } else { ", " };
        self.first = false;
        let _ = write!(self.out, "{separator}{name}=\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    self.out.push('\\');
                    self.out.push(c);
                }
                ' '..='~' => self.out.push(c),
                // Control characters and non-ASCII cannot appear in a header safely: drop them.
                _ => {}
            }
        }
        self.out.push('"');
    }
}

/// The `scope` parameter naming `scopes`: only valid `scope-token`s, which need no escaping. A
/// scope that is not one (a custom verifier's odd grant, step-up with granted scopes) is left out
/// rather than shown mangled: a client would request the mangled name and loop. `offline_access`
/// (a granted one, with step-up naming granted scopes) is left out too: see [`OFFLINE_ACCESS`].
fn scope_parameter(scopes: &Scopes) -> String {
    let mut out = String::with_capacity(scopes.as_str().len());
    for scope in scopes
        .iter()
        .filter(|s| Scopes::is_scope_token(s) && *s != OFFLINE_ACCESS)
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(scope);
    }
    out
}

/// Which gRPC flavour a request speaks, by its `content-type`.
#[derive(Debug, PartialEq, Eq)]
enum GrpcKind {
    /// `application/grpc`, `application/grpc+<codec>`.
    Grpc,
    /// `application/grpc-web[-text][+<codec>]`; carries the media type to answer in.
    Web(HeaderValue),
}

impl GrpcKind {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(CONTENT_TYPE)?;
        let media_type = value.to_str().ok()?.split(';').next()?.trim();
        let subtype = strip_prefix_ignore_case(media_type, "application/grpc")?;
        let (web, codec) = if let Some(rest) = strip_prefix_ignore_case(subtype, "-web-text") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(subtype, "-web") {
            (true, rest)
        } else {
            (false, subtype)
        };
        // Nothing, or `+codec`: `application/grpcfoo` is not gRPC.
        if !(codec.is_empty() || codec.starts_with('+')) {
            return None;
        }
        if !web {
            return Some(Self::Grpc);
        }
        // The media type came from a header value and is a prefix of it: a valid value as well.
        HeaderValue::from_str(media_type).ok().map(Self::Web)
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
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
    fn odd_scopes_are_left_out_of_challenges_not_mangled() {
        let granted = Scopes::parse("write tenant:x\tadmin caf\u{e9}");
        assert_eq!(
            header(
                &Challenger::default(),
                &Rejection::InsufficientScope(granted)
            ),
            r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="write""#
        );
    }

    #[test]
    fn values_are_escaped() {
        let c = Challenger::new(Some("a\"b\\c\r\nX-Injected: 1é".into()), None, None, 1);
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
    fn throttled_is_unavailable_with_the_servers_retry_after() {
        let c = challenger();
        let throttled = Rejection::Throttled(30);
        assert!(c.www_authenticate(&throttled).is_none());
        let r: Response<()> = c.response(&throttled, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "30");
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(throttled.grpc_status(), 14);
    }

    fn kind(content_type: &'static str) -> Option<GrpcKind> {
        let mut req = HeaderMap::new();
        req.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        GrpcKind::of(&req)
    }

    #[test]
    fn grpc_flavours_by_content_type() {
        assert_eq!(kind("application/grpc"), Some(GrpcKind::Grpc));
        assert_eq!(kind("Application/GRPC+proto"), Some(GrpcKind::Grpc));
        assert_eq!(kind("application/grpc; charset=x"), Some(GrpcKind::Grpc));
        for web in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
        ] {
            assert_eq!(
                kind(web),
                Some(GrpcKind::Web(HeaderValue::from_static(web))),
                "{web}"
            );
        }
        assert_eq!(
            kind("application/grpc-web+proto; charset=utf-8"),
            Some(GrpcKind::Web(HeaderValue::from_static(
                "application/grpc-web+proto"
            )))
        );
        for http in [
            "application/grpcfoo",
            "application/grpc-webx",
            "application/json",
            "application/grp",
        ] {
            assert_eq!(kind(http), None, "{http}");
        }
    }

    #[test]
    fn grpc_shape() {
        let mut req = HeaderMap::new();
        req.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
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
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Splits a rendered challenge into its parameters, undoing quoted-string escapes; `None`
        /// when it is not exactly `Bearer` followed by `name="value"` pairs joined by `, `.
        fn parameters(challenge: &str) -> Option<Vec<(String, String)>> {
            let rest = challenge.strip_prefix("Bearer")?;
            let mut rest = match rest.strip_prefix(' ') {
                Some(rest) => rest,
                None if rest.is_empty() => return Some(Vec::new()),
                None => return None,
            };
            let mut params = Vec::new();
            loop {
                let (name, after) = rest.split_once("=\"")?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return None;
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => value.push(chars.next()?.1),
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                params.push((name.to_owned(), value));
                rest = &after[end + 1..];
                if rest.is_empty() {
                    return Some(params);
                }
                rest = rest.strip_prefix(", ")?;
            }
        }

        /// What a configured value becomes in a challenge: visible ASCII and spaces only.
        fn shown(value: &str) -> String {
            value.chars().filter(|c| (' '..='~').contains(c)).collect()
        }

        fn rejection() -> impl Strategy<Value = Rejection> {
            prop_oneof![
                Just(Rejection::MissingToken),
                Just(Rejection::InvalidRequest("The bearer token is missing")),
                Just(Rejection::InvalidToken(InvalidToken::Expired)),
                prop::collection::vec("[ -~]{1,8}|\\PC{1,4}", 0..5)
                    .prop_map(|s| Rejection::InsufficientScope(s.into_iter().collect())),
            ]
        }

        proptest! {
            /// Whatever is configured and whatever is refused, the challenge is a valid header
            /// value holding exactly the intended parameters, in order, with the intended values.
            #[test]
            fn challenges_hold_exactly_the_intended_parameters(
                realm in proptest::option::of("\\PC{0,12}|[\\x00-\\x7f]{0,12}"),
                metadata in proptest::option::of("\\PC{0,12}|[\\x00-\\x7f]{0,12}"),
                scope in proptest::option::of("[!#-\\[\\]-~]{1,8}( [!#-\\[\\]-~]{1,8}){0,2}"),
                rejection in rejection(),
            ) {
                let challenger = Challenger::new(realm.clone(), metadata.clone(), scope.clone(), 1);
                let value = challenger.www_authenticate(&rejection).unwrap();
                let text = value.to_str().expect("visible ASCII");
                let mut expected = Vec::new();
                if let Some(realm) = &realm {
                    expected.push(("realm".to_owned(), shown(realm)));
                }
                if let Some(code) = rejection.error_code() {
                    expected.push(("error".to_owned(), code.to_owned()));
                    expected.push(("error_description".to_owned(), rejection.description().to_owned()));
                }
                match &rejection {
                    Rejection::InsufficientScope(required) => {
                        let valid: Vec<&str> =
                            required.iter().filter(|s| Scopes::is_scope_token(s)).collect();
                        expected.push(("scope".to_owned(), valid.join(" ")));
                    }
                    Rejection::MissingToken => {
                        if let Some(scope) = &scope {
                            expected.push(("scope".to_owned(), scope.clone()));
                        }
                    }
                    _ => {}
                }
                if let Some(metadata) = &metadata {
                    expected.push(("resource_metadata".to_owned(), shown(metadata)));
                }
                prop_assert_eq!(parameters(text), Some(expected), "{}", text);
            }
        }
    }
}
