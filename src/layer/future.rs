//! The response future of [`BearerAuth`](super::BearerAuth).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Settings;
use super::admission::{admit, refusal};
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
            inner: Option<S>,
            request: Option<Request<ReqBody>>,
            settings: Arc<Settings>,
        },
        Calling { #[pin] future: S::Future },
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

    pub(crate) fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    pub(crate) fn verifying(
        verification: Verification,
        span: VerificationSpan,
        inner: S,
        request: Request<ReqBody>,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            state: State::Verifying {
                verification,
                span,
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
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Verifying {
                    verification,
                    span,
                    inner,
                    request,
                    settings,
                } => {
                    let verdict = ready!(verification.as_mut().poll(cx));
                    let span = span.finish(CacheResult::Miss, &verdict).clone();
                    let _entered = span.enter();
                    let mut request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match verdict {
                        Ok(principal) => {
                            admit(&mut request, principal, settings);
                            let mut inner = inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            state.set(State::Calling { future });
                        }
                        Err(error) => {
                            let response = settings
                                .challenger
                                .response(&refusal(error), request.headers());
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
            }
        }
    }
}
