//! An inner service that records what reached it: the fuzz targets' witness that a layer let a
//! request through.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

/// What the inner service received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request head (extensions included).
    pub parts: http::request::Parts,
    /// The body, as collected.
    pub body: Bytes,
}

/// Records every request; answers with whatever `respond` makes of it.
#[derive(Clone)]
pub struct Recorder<F> {
    /// Every request that reached this service, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
    respond: F,
}

impl<F> Recorder<F>
where
    F: Fn(&Received) -> Response<()> + Clone + Send + 'static,
{
    /// A recorder answering with `respond`.
    pub fn new(respond: F) -> Self {
        Self {
            received: Arc::default(),
            respond,
        }
    }

    /// How many requests got through.
    pub fn count(&self) -> usize {
        self.received.lock().expect("recorder lock").len()
    }
}

impl<F> Service<Request<Full<Bytes>>> for Recorder<F>
where
    F: Fn(&Received) -> Response<()> + Clone + Send + 'static,
{
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let received = self.received.clone();
        let respond = self.respond.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.expect("Full never fails").to_bytes();
            let request = Received { parts, body };
            let response = respond(&request);
            received.lock().expect("recorder lock").push(request);
            Ok(response)
        })
    }
}
