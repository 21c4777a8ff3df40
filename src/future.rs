//! The response future of [`BearerAuth`](crate::BearerAuth).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::layer::Settings;
use crate::telemetry::{CacheResult, VerificationSpan};
use crate::{Principal, Rejection, VerifyError};

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

/// Lets a verified request in: the principal, carrying the layer's challenger, goes into the
/// request extensions for the inner service.
pub(crate) fn admit<B>(request: &mut Request<B>, principal: Principal, settings: &Settings) {
    tracing::debug!(
        subject = principal.subject().unwrap_or_default(),
        client_id = principal.client_id().unwrap_or_default(),
        "bearer token accepted"
    );
    request
        .extensions_mut()
        .insert(principal.with_challenger(&settings.challenger));
}

/// Why a failed verification refuses the request.
pub(crate) fn refusal(error: VerifyError) -> Rejection {
    match error {
        VerifyError::Invalid(reason) => {
            tracing::debug!(%reason, "bearer token rejected");
            Rejection::InvalidToken(reason)
        }
        VerifyError::Unavailable(_) => Rejection::Unavailable,
        // Rounded up: a client that retries when told never arrives early.
        VerifyError::Throttled(wait) => Rejection::Throttled(
            u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                .unwrap_or(u32::MAX)
                .max(1),
        ),
    }
}

pin_project! {
    /// Response future of [`RequireScope`](crate::RequireScope): the inner service's future, or a
    /// rejection that is ready at once.
    pub struct ScopeFuture<F, B> {
        #[pin]
        state: ScopeState<F, B>,
    }
}

pin_project! {
    #[project = ScopeStateProj]
    enum ScopeState<F, B> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B> ScopeFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: ScopeState::Inner { future },
        }
    }

    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            state: ScopeState::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ScopeStateProj::Inner { future } => future.poll(cx),
            ScopeStateProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ScopeFuture polled after completion"))),
        }
    }
}
