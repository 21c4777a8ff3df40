//! The push deliverer (RFC 8935): one background task per provider instance that claims due
//! outbox rows of enabled push streams and POSTs their SETs to the receivers.
//!
//! - **Claiming.** Rows are claimed with a lease ([`SsfSettings::lease`]) by one atomic
//!   statement (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one `UPDATE … RETURNING` under the
//!   write lock), so instances sharing a database never push the same row at the same time. An
//!   instance that dies mid-push leaves the row to be claimed again when the lease ends: delivery
//!   is at least once, and receivers deduplicate by `jti`.
//! - **Outcome.** `202` (any `2xx`) marks the row delivered. `400` is the receiver refusing the
//!   SET (RFC 8935 §2.3): its `err` and `description` are recorded, the row is failed and never
//!   retried. Anything else (network error, timeout, `5xx`, `429`, other statuses) is retried
//!   with exponential backoff and jitter from [`SsfSettings::retry_initial`] up to
//!   [`SsfSettings::retry_max`], until the row is [`SsfSettings::max_age`] old: then it fails.
//! - **Latency.** A local enqueue wakes the deliverer at once; it also looks for due rows every
//!   [`SsfSettings::poll_interval`] (rows of other instances, retries).
//! - **Bounds.** At most [`SsfSettings::push_concurrency`] pushes in flight, each with a connect
//!   and a whole-request timeout; the receiver's answer is read up to 4 KiB. Pushes in flight
//!   stop with the server (their rows are claimed again when the lease ends).
//! - **Secrecy.** Neither a SET nor a stream's `Authorization` header is ever logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, header};
use tokio::task::{JoinHandle, JoinSet};

use crate::model::{Delivery, OutboxEntry, StreamStatus};
use crate::outbound::{CheckedResolver, literal_allowed, refused_by_address_policy};
use crate::ssf::{SsfSettings, millis, now_ms};
use crate::state::AppState;

/// The media type of a pushed SET (RFC 8935 §2).
pub const SET_MEDIA_TYPE: &str = "application/secevent+jwt";
/// Why a push to a private, loopback (unless allowed), link-local or reserved address is not
/// made, and not retried.
const ADDRESS_REFUSED: &str =
    "the endpoint is at an address this server does not push to (--ssf-allow-private-endpoints)";
/// The most bytes of a receiver's answer read (its error JSON).
pub const MAX_ANSWER_BYTES: usize = 4096;

/// Starts the deliverer of this instance.
pub fn spawn(state: AppState) -> Result<JoinHandle<()>, reqwest::Error> {
    let settings = state.ssf().clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if !settings.allow_private_endpoints {
        // Connect to public addresses only (a proxy would resolve names out of our sight).
        builder = builder
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver::new(settings.allow_http_loopback)));
    }
    let client = builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        // A push outliving its lease could overlap another instance's push of the same event.
        .timeout(settings.request_timeout.min(settings.lease))
        .build()?;
    Ok(tokio::spawn(run(state, client, settings)))
}

async fn run(state: AppState, client: reqwest::Client, settings: SsfSettings) {
    let limit = settings.push_concurrency.max(1);
    let wake = state.ssf_wake().clone();
    // The pushes in flight; aborted with this task when the server stops.
    let mut pushes = JoinSet::new();
    loop {
        while pushes.try_join_next().is_some() {}
        let available = limit.saturating_sub(pushes.len());
        let mut full_batch = false;
        if available > 0 {
            let now = now_ms();
            let claimed = state
                .storage()
                .claim_outbox(
                    now,
                    now + millis(settings.lease),
                    u32::try_from(available).unwrap_or(u32::MAX),
                )
                .await;
            match claimed {
                Ok(rows) => {
                    full_batch = rows.len() == available;
                    for row in rows {
                        let (state, client, settings) =
                            (state.clone(), client.clone(), settings.clone());
                        pushes.spawn(async move { push(&state, &client, &settings, row).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming SSF events failed"),
            }
        }
        if full_batch || pushes.len() >= limit {
            // More may be due: claim again as soon as a push finishes.
            tokio::select! {
                _ = pushes.join_next() => {}
                _ = tokio::time::sleep(settings.poll_interval) => {}
            }
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

/// What became of one push.
enum Outcome {
    Delivered,
    /// Never to be sent: the receiver answered 400, or the event cannot be delivered (its
    /// stream was deleted, its endpoint's address is refused).
    Refused(String),
    /// Try again later; `after` is the receiver's own `Retry-After`, if it sent one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Outcome {
    fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

async fn push(
    state: &AppState,
    client: &reqwest::Client,
    settings: &SsfSettings,
    row: OutboxEntry,
) {
    let storage = state.storage();
    let outcome = attempt(state, client, &row).await;
    let now = now_ms();
    let recorded = match outcome {
        Outcome::Delivered => {
            tracing::debug!(stream_id = %row.stream_id, jti = %row.jti, attempts = row.attempts, "SET delivered");
            storage.finish_outbox(row.id, now, None).await
        }
        Outcome::Refused(reason) => {
            tracing::warn!(stream_id = %row.stream_id, jti = %row.jti, reason = %reason, "SET not delivered and not retried (refused by the receiver, or undeliverable)");
            storage.finish_outbox(row.id, now, Some(&reason)).await
        }
        Outcome::Retry { reason, after } => {
            if now - row.created_at_ms >= millis(settings.max_age) {
                tracing::warn!(stream_id = %row.stream_id, jti = %row.jti, attempts = row.attempts, reason = %reason, "SET undeliverable: given up");
                storage
                    .finish_outbox(row.id, now, Some(&format!("gave up: {reason}")))
                    .await
            } else {
                let delay = retry_delay(settings, row.attempts, after);
                tracing::info!(stream_id = %row.stream_id, jti = %row.jti, attempts = row.attempts, retry_in_ms = delay, reason = %reason, "SET push failed; will retry");
                storage.retry_outbox(row.id, now + delay, &reason).await
            }
        }
    };
    if let Err(e) = recorded {
        // The lease runs out and the row is claimed again: at least once.
        tracing::warn!(error = %e, stream_id = %row.stream_id, jti = %row.jti, "recording an SSF push outcome failed");
    }
}

/// The delay before attempt `attempts + 1`, in milliseconds: `retry_initial × 2^(attempts-1)`,
/// capped at `retry_max`, then a random point in its upper half (jitter).
pub fn backoff(settings: &SsfSettings, attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = millis(settings.retry_initial)
        .saturating_mul(1_i64 << exponent)
        .min(millis(settings.retry_max))
        .max(1);
    base / 2 + rand::random_range(0..=base - base / 2)
}

/// The delay before the next attempt: the backoff, or longer when the receiver asked for more
/// with `Retry-After` — never beyond `retry_max`, so a receiver cannot park its events for longer
/// than the operator's bound.
fn retry_delay(settings: &SsfSettings, attempts: i64, after: Option<Duration>) -> i64 {
    let asked = after.map_or(0, |after| millis(after.min(settings.retry_max)));
    backoff(settings, attempts).max(asked)
}

/// A `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as a delay from
/// `now`. A date in the past is no delay; anything else unreadable is ignored.
pub fn retry_after(headers: &header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturating: a 30-digit delay is simply "very long" (capped by the caller).
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn attempt(state: &AppState, client: &reqwest::Client, row: &OutboxEntry) -> Outcome {
    let stream = match state.storage().get_stream(&row.stream_id).await {
        Ok(Some(stream)) => stream,
        Ok(None) => return Outcome::Refused("the stream was deleted".to_owned()),
        Err(e) => return Outcome::retry(format!("storage: {e}")),
    };
    let Delivery::Push {
        endpoint_url,
        authorization_header,
    } = &stream.delivery
    else {
        return Outcome::retry("the stream is no longer a push stream");
    };
    if stream.status != StreamStatus::Enabled {
        return Outcome::retry("the stream is not enabled");
    }
    let settings = state.ssf();
    // Streams created before private endpoints were disallowed are judged now.
    if !settings.allow_private_endpoints
        && !url::Url::parse(endpoint_url)
            .is_ok_and(|url| literal_allowed(&url, settings.allow_http_loopback))
    {
        return Outcome::Refused(ADDRESS_REFUSED.to_owned());
    }
    let key = match crate::keys::current(state.storage().as_ref(), state.now()).await {
        Ok(key) => key,
        Err(e) => return Outcome::retry(format!("signing key: {e}")),
    };
    let set = match crate::ssf::set::sign(&key, row, &stream.client_id) {
        Ok(set) => set,
        Err(e) => return Outcome::Refused(format!("cannot sign: {e}")),
    };
    let mut request = client
        .post(endpoint_url)
        .header(header::CONTENT_TYPE, SET_MEDIA_TYPE)
        .header(header::ACCEPT, "application/json")
        .body(set);
    if let Some(value) = authorization_header
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if refused_by_address_policy(&e) => {
            return Outcome::Refused(ADDRESS_REFUSED.to_owned());
        }
        // reqwest errors name the URL, never headers or the body.
        Err(e) => return Outcome::retry(network_reason(&e)),
    };
    let status = response.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    if status.as_u16() == 400 {
        let answer = bounded_body(response).await;
        let parsed: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let err = parsed["err"].as_str().unwrap_or("unspecified");
        let description = parsed["description"].as_str().unwrap_or("");
        return Outcome::Refused(crate::ssf::endpoints::receiver_error(err, description));
    }
    let after = matches!(status.as_u16(), 429 | 503)
        .then(|| retry_after(response.headers(), SystemTime::now()))
        .flatten();
    Outcome::Retry {
        reason: format!("HTTP {}", status.as_u16()),
        after,
    }
}

fn network_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "network error".to_owned()
    }
}

async fn bounded_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ANSWER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_bounded_by_retry_max() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let read = |value: &str| {
            let mut headers = header::HeaderMap::new();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(read("120"), Some(Duration::from_secs(120)));
        assert_eq!(read(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            read("999999999999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        let in_90_s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(read(&in_90_s), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(read(&past), Some(Duration::ZERO));
        for garbage in ["", "-5", "1.5", "soon", "0x10"] {
            assert_eq!(read(garbage), None, "{garbage:?}");
        }
        assert_eq!(retry_after(&header::HeaderMap::new(), now), None);

        let settings = SsfSettings::default();
        for _ in 0..100 {
            // Longer than the backoff: honoured.
            assert_eq!(
                retry_delay(&settings, 1, Some(Duration::from_secs(20))),
                20_000
            );
            // Beyond retry_max: capped at it.
            assert_eq!(retry_delay(&settings, 1, Some(Duration::MAX)), 60_000);
            // Shorter than the backoff: the backoff stands.
            let d = retry_delay(&settings, 3, Some(Duration::from_millis(1)));
            assert!((2000..=4000).contains(&d), "{d}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let settings = SsfSettings::default();
        for _ in 0..100 {
            let first = backoff(&settings, 1);
            assert!((500..=1000).contains(&first), "{first}");
            let third = backoff(&settings, 3);
            assert!((2000..=4000).contains(&third), "{third}");
            let late = backoff(&settings, 40);
            assert!((30_000..=60_000).contains(&late), "{late}");
        }
    }
}
