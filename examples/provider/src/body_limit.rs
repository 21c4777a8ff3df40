//! Request bodies: bounded, and an oversized one is read off the connection before the `413`.
//!
//! A server that answers `413` while the client is still sending, then closes the connection with
//! the rest of the body unread, makes the kernel reset the connection: the client often sees a
//! broken pipe or a truncated answer instead of the `413` (the reason web servers "linger" before
//! closing). So this layer buffers every body up to the limit; past it, it keeps reading and
//! discarding, within [`DRAIN_BYTES`] and [`DRAIN_TIME`], and only then answers `413`. A client
//! that sends more than that, or too slowly, gets the `413` at once and the connection closes,
//! as before: the drain is bounded so that it cannot be used to hold the server.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// The most bytes of an oversized body read and discarded so that the client can read the `413`.
pub const DRAIN_BYTES: u64 = 1024 * 1024;
/// The longest time spent draining an oversized body.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Middleware: hands the handler the whole body, or answers `413` when it is larger than `limit`.
pub async fn bound_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES) {
        // Not worth reading: the client learns of the limit when the connection closes.
        return too_large();
    }
    match read_bounded(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(ReadError::TooLarge) => too_large(),
        Err(ReadError::Broken) => StatusCode::BAD_REQUEST.into_response(),
    }
}

enum ReadError {
    TooLarge,
    Broken,
}

async fn read_bounded(mut body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                let seen = (buffer.len() + data.len()) as u64;
                drop(buffer);
                drain(body, seen).await;
                return Err(ReadError::TooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// Reads and discards the rest of `body`, within [`DRAIN_BYTES`] in all and [`DRAIN_TIME`].
async fn drain(mut body: Body, mut seen: u64) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
}

/// The framework's plain `413`; the API routes rewrite it as a JSON error.
fn too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
}
