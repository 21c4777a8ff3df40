//! OpenID Shared Signals Framework 1.0 transmitter: security events about tokens, sessions and
//! users, signed as SETs (RFC 8417) and delivered by push (RFC 8935) or poll (RFC 8936) from a
//! durable outbox.

pub mod deliver;
pub mod endpoints;
pub mod events;
pub mod pacing;
pub mod set;

use std::time::Duration;

/// The transmitter's bounds and timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsfSettings {
    /// Development only: push endpoints may be at a loopback host (127.0.0.0/8, ::1,
    /// localhost), over `http://` too. Otherwise only `https://`, to public addresses.
    pub allow_http_loopback: bool,
    /// Push endpoints may be at any address (default: public addresses only, loopback too with
    /// `allow_http_loopback`; see [`crate::outbound`]). A stream's owner chooses its endpoint, so
    /// without this the provider cannot be made to POST into its own network. Turn it on when
    /// receivers live on a private network; proxies from the environment are then honoured.
    pub allow_private_endpoints: bool,
    /// Streams one client may own (default 10).
    pub max_streams_per_client: u64,
    /// Pending events one stream may hold (default 10 000); events beyond are dropped, logged
    /// and counted.
    pub max_pending_per_stream: u64,
    /// Whether this instance runs a push deliverer (default true).
    pub deliver: bool,
    /// First retry delay after a failed push (default 1 s); doubled per attempt, with jitter.
    pub retry_initial: Duration,
    /// Longest retry delay (default 60 s).
    pub retry_max: Duration,
    /// An event still undelivered this long after it was queued is given up (marked failed;
    /// default 24 h).
    pub max_age: Duration,
    /// How often the deliverer looks for due events queued by other instances or due for a
    /// retry (default 500 ms); a local enqueue wakes it at once.
    pub poll_interval: Duration,
    /// Pushes in flight at once per instance (default 8).
    pub push_concurrency: usize,
    /// TCP/TLS connect timeout of a push (default 5 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout of a push (default 10 s).
    pub request_timeout: Duration,
    /// How long a claimed event is reserved for the instance pushing it (default 30 s). An
    /// instance that dies mid-push leaves the event to others after this. A push's timeout is
    /// capped at the lease, so an instance never pushes an event another may have claimed.
    pub lease: Duration,
    /// Longest wait of a poll request with `returnImmediately: false` (default 5 s).
    pub long_poll: Duration,
    /// Shortest time between two verification requests for one stream (default 5 s; zero: no
    /// bound), announced as the stream's `min_verification_interval`; sooner ones get `429`.
    pub min_verification_interval: Duration,
}

impl Default for SsfSettings {
    fn default() -> Self {
        Self {
            allow_http_loopback: false,
            allow_private_endpoints: false,
            max_streams_per_client: 10,
            max_pending_per_stream: 10_000,
            deliver: true,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_age: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_millis(500),
            push_concurrency: 8,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            long_poll: Duration::from_secs(5),
            min_verification_interval: Duration::from_secs(5),
        }
    }
}

/// The outbox clock: Unix milliseconds of the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in milliseconds (saturating).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
