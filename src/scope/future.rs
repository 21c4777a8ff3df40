//! The response future of the scope layers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`RequireScope`](super::RequireScope) and [`PathScope`](super::PathScope): the inner service's future, or a
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
