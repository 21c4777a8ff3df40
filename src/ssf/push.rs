//! RFC 8935 push delivery: the endpoint a transmitter POSTs its SETs to.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use subtle::ConstantTimeEq;
use tower_service::Service;

use super::{SetError, SsfReceiver};
use crate::ConfigError;

/// Seconds a transmitter is asked to wait before sending a SET again that could not be checked.
const RETRY_AFTER_SECONDS: u32 = 5;

/// The push endpoint of an [`SsfReceiver`]: a tower service for `POST` requests carrying one SET
/// (`Content-Type: application/secevent+jwt`).
///
/// Answers, following RFC 8935 §2.2–2.4:
///
/// | request | status | body |
/// |---|---|---|
/// | a SET that passes every check | `202 Accepted` | empty |
/// | without the stream's `Authorization` header | `401` with `WWW-Authenticate: Bearer` | `{"err": "authentication_failed", …}` |
/// | not `POST` | `405` with `Allow: POST` | empty |
/// | another content type, a body over the cap, or a SET refused | `400` | `{"err": …, "description": …}` |
/// | keys unavailable, replay store full | `503` with `Retry-After` | `{"err": "temporarily_unavailable", …}` |
///
/// The authorization is checked first, in constant time, so an unauthenticated caller costs a
/// header comparison; the body is never read beyond the cap.
#[derive(Clone)]
pub struct PushEndpoint {
    receiver: SsfReceiver,
    authorization: HeaderValue,
}

impl fmt::Debug for PushEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushEndpoint")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl PushEndpoint {
    pub(crate) fn new(receiver: SsfReceiver) -> Result<Self, ConfigError> {
        let authorization = receiver
            .inner()
            .push_authorization
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
            .ok_or(ConfigError::Missing {
                setting: "push_authorization",
                why: "a push endpoint must authenticate the transmitter (RFC 8935 §2)",
            })?;
        Ok(Self {
            receiver,
            authorization,
        })
    }

    /// A refusal before the SET was read, counted here (the receiver counts the others).
    fn refused(&self, error: SetError) -> Response<Full<Bytes>> {
        crate::metrics::ssf_event("none", error.label());
        self.receiver.push_refused();
        error_response(StatusCode::BAD_REQUEST, &error)
    }

    async fn handle<B>(self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let authorized = presented
            .is_some_and(|presented| bool::from(presented.ct_eq(self.authorization.as_bytes())));
        if !authorized {
            let mut response =
                error_response(StatusCode::UNAUTHORIZED, &SetError::AuthenticationFailed);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            crate::metrics::ssf_event("none", "authentication_failed");
            self.receiver.push_refused();
            return response;
        }
        if request.method() != Method::POST {
            let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            self.receiver.push_refused();
            return response;
        }
        if !is_secevent_content_type(request.headers().get(CONTENT_TYPE)) {
            return self.refused(SetError::InvalidRequest(
                "the content type is not application/secevent+jwt",
            ));
        }
        let max = self.receiver.inner().max_body;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max as u64) {
            return self.refused(SetError::InvalidRequest(
                "the body is larger than this receiver accepts",
            ));
        }
        let body = match Limited::new(request.into_body(), max).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return self.refused(SetError::InvalidRequest(
                    "the body is larger than this receiver accepts, or could not be read",
                ));
            }
        };
        let Ok(set) = std::str::from_utf8(&body) else {
            return self.refused(SetError::InvalidRequest("the body is not a compact JWS"));
        };
        match self.receiver.receive(set).await {
            Ok(_) => empty(StatusCode::ACCEPTED),
            Err(error) if error.is_transient() => {
                let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &error);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
                response
            }
            Err(error) => error_response(StatusCode::BAD_REQUEST, &error),
        }
    }
}

impl<B> Service<Request<B>> for PushEndpoint
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// `application/secevent+jwt`, with or without parameters, in any case.
fn is_secevent_content_type(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("application/secevent+jwt"))
}

fn error_response(status: StatusCode, error: &SetError) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(error.body().to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_is_the_secevent_media_type() {
        let ct = |v: &'static str| is_secevent_content_type(Some(&HeaderValue::from_static(v)));
        assert!(ct("application/secevent+jwt"));
        assert!(ct("Application/SECEVENT+JWT; charset=utf-8"));
        assert!(!ct("application/jwt"));
        assert!(!ct("application/json"));
        assert!(!is_secevent_content_type(None));
    }
}
