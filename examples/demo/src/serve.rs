//! Serving a tower HTTP service on a TCP listener with the limits a public server needs.
//!
//! `axum::serve` (and tonic's default server) accept every connection, leave Nagle's algorithm on,
//! and wait forever for a request head and between requests. On a real network that means:
//!
//! - every response on a keep-alive connection waits for the client's delayed ACK (~40 ms on
//!   Linux) before its last segment leaves, because the response is written in more than one
//!   segment and Nagle holds the tail back: hence `TCP_NODELAY` on every accepted socket;
//! - a client that opens connections and sends nothing (or one header byte at a time, "slowloris")
//!   holds a file descriptor each until the process runs out and legitimate calls stall: hence a
//!   header-read timeout, an idle timeout and a bound on concurrent connections.
//!
//! [`serve`] is a small accept loop over hyper's connection builders that applies all of these
//! ([`ServeOptions`] documents each limit and its default). The examples' MCP and gRPC servers and
//! the demo share it.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_service::Service;

/// Default time a client has to send a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay silent in both directions.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long to pause accepting after `accept` fails (e.g. `EMFILE`), so that a full descriptor
/// table does not turn the accept loop into a busy loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The HTTP version a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (MCP's streamable HTTP transport, REST).
    Http1,
    /// HTTP/2 with prior knowledge (gRPC over cleartext).
    Http2,
}

/// Called with every accepted socket, after the server has configured it.
pub type AcceptHook = Arc<dyn Fn(&TcpStream) + Send + Sync>;

/// The limits [`serve`] applies.
#[derive(Clone)]
pub struct ServeOptions {
    protocol: Protocol,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    on_accept: Option<AcceptHook>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            protocol: Protocol::Http1,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            on_accept: None,
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("protocol", &self.protocol)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("on_accept", &self.on_accept.is_some())
            .finish()
    }
}

impl ServeOptions {
    /// HTTP/1.1 (the default) or HTTP/2 with prior knowledge (gRPC).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// HTTP/1.1: the time allowed to receive a complete request head (default 10 s), counted from
    /// when the connection starts waiting for it: after the accept, and after each response on a
    /// keep-alive connection. A client trickling header bytes (slowloris) is cut off when it runs
    /// out, however steadily it sends, and so is a keep-alive connection that sends no next request.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Any protocol: a connection on which no byte has been read or written for this long is
    /// closed (default 60 s). This covers what the header timeout does not: an idle HTTP/2
    /// connection, a request body that stops arriving, a client that stops reading the response.
    /// It must exceed the longest silence of a legitimate response: rmcp's event streams send a
    /// keep-alive every 15 s by default, so they stay open.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// At most this many connections are served at once (default 1,024). When the bound is
    /// reached the server stops accepting: further connections wait in the kernel's listen queue
    /// (their clients see a slow connect, never a reset) until a served connection closes. This
    /// keeps the process's file descriptors bounded whatever the number of clients.
    ///
    /// # Panics
    ///
    /// When `connections` is zero (the server could never serve anyone).
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        assert!(connections > 0, "max_connections must be at least 1");
        self.max_connections = connections;
        self
    }

    /// Calls `hook` with every accepted socket once it is configured (to inspect it, set more
    /// socket options, or count connections).
    #[must_use]
    pub fn on_accept(mut self, hook: impl Fn(&TcpStream) + Send + Sync + 'static) -> Self {
        self.on_accept = Some(Arc::new(hook));
        self
    }
}

/// Serves `service` on `listener` with `options`, until the task running it is dropped.
///
/// Accepted sockets get `TCP_NODELAY`. Errors of a single connection (a client that went away, a
/// timeout) are logged at debug level and end only that connection; accept errors are logged and
/// retried after a short pause.
pub async fn serve<S, B>(listener: TcpListener, service: S, options: ServeOptions)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        if let Some(hook) = &options.on_accept {
            hook(&stream);
        }
        let service = service.clone();
        let options = options.clone();
        tokio::spawn(async move {
            serve_connection(stream, service, &options).await;
            drop(permit);
        });
    }
}

/// Serves one connection until it ends or stays silent for the idle timeout.
async fn serve_connection<S, B>(stream: TcpStream, service: S, options: &ServeOptions)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = TowerToHyperService::new(service);
    let result = match options.protocol {
        Protocol::Http1 => {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .serve_connection(io, service);
            tokio::select! {
                result = connection => result,
                () = activity.silent_for(options.idle_timeout) => Ok(()),
            }
        }
        Protocol::Http2 => {
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, service);
            tokio::select! {
                result = connection => result,
                () = activity.silent_for(options.idle_timeout) => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `idle`.
    async fn silent_for(&self, idle: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.start + Duration::from_millis(last) + idle).await;
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// A socket that records when it last read or wrote a byte.
struct Tracked {
    stream: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connection-limit flags the examples share (each with an environment fallback).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Seconds a client has to send a complete request head (HTTP/1.1; also the keep-alive limit).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay silent in both directions before it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, env = "MAX_CONNECTIONS",
          default_value_t = NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS).expect("non-zero default"))]
    pub max_connections: NonZeroUsize,
}

impl ServeArgs {
    /// The options these flags describe.
    pub fn options(&self) -> ServeOptions {
        ServeOptions::default()
            .header_read_timeout(Duration::from_secs(self.header_read_timeout_secs))
            .idle_timeout(Duration::from_secs(self.idle_timeout_secs))
            .max_connections(self.max_connections.get())
    }
}
