//! The response future of [`BearerAuth`](super::BearerAuth).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Settings;
use super::admission::{admit, decide};
use super::binding::Presented;
use crate::dpop::DPOP_NONCE;
use crate::telemetry::{CacheResult, VerificationSpan};
use crate::{Principal, VerifyError};

/// A verification in flight: boxed because the verifier's future type cannot be named.
pub(crate) type Verification = Pin<Box<dyn Future<Output = Result<Principal, VerifyError>> + Send>>;

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth).
    ///
    /// Rejections decided from the header alone, and verdicts the verifier knows at once (cache
    /// hits), are applied in `call`, with no allocation for the verification: the future is then
    /// the rejection or the inner service's own. Otherwise the token is first verified, then the
    /// inner service is called with the [`Principal`] in the request extensions.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Rejected { response: Option<S::Response> },
        Verifying {
            verification: Verification,
            span: VerificationSpan,
            presented: Presented,
            inner: Option<S>,
            request: Option<Request<ReqBody>>,
            settings: Arc<Settings>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // A fresh DPoP nonce for the response, when the client's is about to expire.
            nonce: Option<HeaderValue>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn rejected(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn calling(future: S::Future, nonce: Option<HeaderValue>) -> Self {
        Self {
            state: State::Calling { future, nonce },
        }
    }

    pub(crate) fn verifying(
        verification: Verification,
        span: VerificationSpan,
        presented: Presented,
        inner: S,
        request: Request<ReqBody>,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            state: State::Verifying {
                verification,
                span,
                presented,
                inner: Some(inner),
                request: Some(request),
                settings,
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Calling { future, nonce } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(nonce) = nonce.take() {
                        response.headers_mut().insert(DPOP_NONCE, nonce);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Verifying {
                    verification,
                    span,
                    presented,
                    inner,
                    request,
                    settings,
                } => {
                    let verdict = ready!(verification.as_mut().poll(cx));
                    let mut request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match decide(verdict, presented, span, CacheResult::Miss, settings) {
                        Ok(confirmed) => {
                            let span = span.span().clone();
                            let _entered = span.enter();
                            admit(&mut request, confirmed.principal, settings);
                            let mut inner = inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            state.set(State::Calling {
                                future,
                                nonce: confirmed.nonce,
                            });
                        }
                        Err(rejection) => {
                            let response =
                                settings.challenger.response(&rejection, request.headers());
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
            }
        }
    }
}
