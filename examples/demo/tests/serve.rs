//! The serving helper's limits, against real sockets on loopback: `TCP_NODELAY`, the header-read
//! timeout (slowloris and idle keep-alive), the idle timeout (stalled bodies, silent HTTP/2) and
//! the bound on concurrent connections.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tower_introspect_demo::serve::{Protocol, ServeOptions, serve};

/// Far above every limit the tests configure: reaching it means the server did not act.
const DEADLINE: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(400);

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/upload",
        post(|body: Bytes| async move { body.len().to_string() }),
    )
}

struct Running {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(options: ServeOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(serve(listener, app(), options));
    Running { addr, task }
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) and returns its body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a full response");
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("content-length");
            if buffer.len() >= end + 4 + length {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return text[end + 4..end + 4 + length].to_owned();
            }
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset), returning how long it took; reading
/// discards anything the server still sends.
async fn wait_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut chunk = [0_u8; 1024];
    timeout(DEADLINE, async {
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the server never closed the connection");
    started.elapsed()
}

#[tokio::test]
async fn accepted_sockets_have_tcp_nodelay() {
    let (seen, mut nodelay) = mpsc::unbounded_channel();
    let server = start(
        ServeOptions::default().on_accept(move |stream: &TcpStream| {
            seen.send(stream.nodelay().unwrap()).unwrap();
        }),
    )
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut client).await, "ok");
    assert_eq!(nodelay.recv().await, Some(true));
}

#[tokio::test]
async fn slowloris_connection_is_closed_after_the_header_read_timeout() {
    let server = start(ServeOptions::default().header_read_timeout(SHORT)).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // One more header line every 50 ms: bytes keep arriving, the head never completes.
    let mut chunk = [0_u8; 1024];
    let mut lines = 0;
    let closed_after = timeout(DEADLINE, async {
        loop {
            tokio::select! {
                read = client.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if client.write_all(format!("x-slow-{lines}: 1\r\n").as_bytes()).await.is_err() {
                        return started.elapsed();
                    }
                    lines += 1;
                }
            }
        }
    })
    .await
    .expect("a slowloris connection was kept open");
    assert!(
        closed_after >= SHORT - Duration::from_millis(50),
        "closed after {closed_after:?}"
    );
    assert!(lines >= 4, "the client trickled only {lines} lines");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let server = start(ServeOptions::default().header_read_timeout(SHORT)).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut client).await, "ok");
    }
    // Keep-alive: the connection stays open after the responses, until the next head is overdue.
    let idle = wait_closed(&mut client).await;
    assert!(
        idle >= SHORT - Duration::from_millis(50),
        "closed after {idle:?}"
    );
}

#[tokio::test]
async fn stalled_request_body_is_closed_after_the_idle_timeout() {
    let server = start(
        ServeOptions::default()
            .header_read_timeout(DEADLINE * 2)
            .idle_timeout(SHORT),
    )
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345")
        .await
        .unwrap();
    let silent = wait_closed(&mut client).await;
    assert!(
        silent >= SHORT - Duration::from_millis(50),
        "closed after {silent:?}"
    );
}

#[tokio::test]
async fn silent_http2_connection_is_closed_after_the_idle_timeout() {
    let server = start(
        ServeOptions::default()
            .protocol(Protocol::Http2)
            .idle_timeout(SHORT),
    )
    .await;
    // Never sends the client preface: the header-read timeout is HTTP/1 only, the idle timeout
    // is what ends this connection.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let silent = wait_closed(&mut client).await;
    assert!(
        silent >= SHORT - Duration::from_millis(50),
        "closed after {silent:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let (accepted, mut accepts) = mpsc::unbounded_channel();
    let server = start(
        ServeOptions::default()
            .max_connections(2)
            .on_accept(move |_: &TcpStream| accepted.send(()).unwrap()),
    )
    .await;
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    for client in [&mut first, &mut second] {
        client.write_all(request).await.unwrap();
        assert_eq!(read_response(client).await, "ok");
    }
    assert_eq!(accepts.recv().await, Some(()));
    assert_eq!(accepts.recv().await, Some(()));

    // The kernel completes the third handshake, but the server does not accept it.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut byte = [0_u8; 1];
    assert!(
        timeout(SHORT, third.read(&mut byte)).await.is_err(),
        "the third connection was answered while two were open"
    );
    assert!(
        accepts.try_recv().is_err(),
        "a third connection was accepted"
    );

    // A slot frees up: the waiting connection is accepted and served.
    drop(first);
    timeout(DEADLINE, accepts.recv())
        .await
        .expect("the waiting connection was never accepted");
    assert_eq!(
        timeout(DEADLINE, read_response(&mut third)).await.unwrap(),
        "ok"
    );
    // The second connection was never disturbed.
    second.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut second).await, "ok");
}
