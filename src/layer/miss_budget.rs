//! Per-client budgets of new tokens, so that one client's flood of garbage tokens is that client's
//! problem: it gets 429, while everyone else's new tokens still reach the authorization server
//! (which would otherwise answer the flood with 429 for every caller).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Default number of new tokens (cache misses that start a verification) a client may present
/// per [`DEFAULT_MISS_WINDOW`].
pub const DEFAULT_MISSES_PER_WINDOW: u32 = 20;
/// Default window of the miss budget.
pub const DEFAULT_MISS_WINDOW: Duration = Duration::from_secs(1);
/// Most clients whose budgets are tracked at once; the least recently seen are forgotten first.
pub const DEFAULT_MAX_TRACKED_CLIENTS: u64 = 100_000;

/// Who a request comes from, for its miss budget: the peer address by default, or what a
/// [`ClientKeyFn`] says (for example a trusted proxy's forwarded address, or an API key's id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(Arc<str>);

impl ClientKey {
    /// A key from any text that identifies a client.
    pub fn new(key: impl AsRef<str>) -> Self {
        Self(Arc::from(key.as_ref()))
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        Self::new(ip.to_string())
    }
}

/// Finds a request's [`ClientKey`] from its headers and extensions; `None` when the client cannot
/// be told apart (such requests are not budgeted).
pub type ClientKeyFn =
    Arc<dyn Fn(&http::HeaderMap, &http::Extensions) -> Option<ClientKey> + Send + Sync>;

/// The peer's IP address, from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) or from a `SocketAddr` extension that a
/// custom server inserts.
pub fn peer_address(
    _headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Option<ClientKey> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip().into());
    }
    extensions
        .get::<SocketAddr>()
        .map(|addr| ClientKey::from(addr.ip()))
}

/// How many new tokens each client may present per window (set with
/// [`BearerAuthLayer::miss_budget`](super::BearerAuthLayer::miss_budget)).
///
/// A *miss* is a token the verdict cache does not know and no call is under way for: one that
/// would make a call to the authorization server (or a new signature check). Hits and requests
/// that join a call in flight cost nothing. Beyond the budget the client gets 429 with
/// `Retry-After` until its window ends, and nothing is sent for it. Requests whose client cannot
/// be identified are not budgeted: give the layer the peer address (see [`peer_address`]) or a
/// key function.
#[derive(Clone)]
pub struct MissBudget {
    misses: u32,
    window: Duration,
    key: ClientKeyFn,
    max_clients: u64,
}

impl fmt::Debug for MissBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MissBudget")
            .field("misses", &self.misses)
            .field("window", &self.window)
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

impl Default for MissBudget {
    fn default() -> Self {
        Self::per_client(DEFAULT_MISSES_PER_WINDOW, DEFAULT_MISS_WINDOW)
    }
}

impl MissBudget {
    /// `misses` new tokens per `window` for each client, identified by [`peer_address`].
    pub fn per_client(misses: u32, window: Duration) -> Self {
        Self {
            misses,
            window,
            key: Arc::new(peer_address),
            max_clients: DEFAULT_MAX_TRACKED_CLIENTS,
        }
    }

    /// Identifies clients with `key` instead of the peer address (for example from a header
    /// that a proxy you trust sets; never from one a client may set itself).
    pub fn key_by(
        mut self,
        key: impl Fn(&http::HeaderMap, &http::Extensions) -> Option<ClientKey> + Send + Sync + 'static,
    ) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Most clients tracked at once (default 100,000).
    pub fn max_tracked_clients(mut self, clients: u64) -> Self {
        self.max_clients = clients;
        self
    }

    pub(crate) fn tracker(&self) -> MissTracker {
        MissTracker {
            budget: self.clone(),
            windows: Cache::builder()
                .max_capacity(self.max_clients)
                .time_to_idle(self.window.saturating_mul(2))
                .build(),
        }
    }
}

/// The budgets in use: one fixed window per client.
#[derive(Clone)]
pub(crate) struct MissTracker {
    budget: MissBudget,
    windows: Cache<ClientKey, Arc<Mutex<Window>>>,
}

impl fmt::Debug for MissTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MissTracker")
            .field("budget", &self.budget)
            .field("clients", &self.windows.entry_count())
            .finish()
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    misses: u32,
}

impl MissTracker {
    /// Charges one miss to the request's client: `Err(seconds)` to wait when its budget is spent.
    pub(crate) fn charge(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<(), u32> {
        let Some(key) = (self.budget.key)(headers, extensions) else {
            return Ok(());
        };
        let now = Instant::now();
        let window = self.windows.get_with(key, || {
            Arc::new(Mutex::new(Window {
                started: now,
                misses: 0,
            }))
        });
        let mut window = window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(window.started) >= self.budget.window {
            window.started = now;
            window.misses = 0;
        }
        if window.misses >= self.budget.misses {
            let left = self.budget.window - now.duration_since(window.started);
            // Rounded up: a client that retries when told never arrives early.
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(u32::try_from(seconds).unwrap_or(u32::MAX).max(1));
        }
        window.misses += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(SocketAddr::new(ip.parse().unwrap(), 1234));
        extensions
    }

    #[test]
    fn each_client_has_its_own_budget() {
        let tracker = MissBudget::per_client(3, Duration::from_secs(60)).tracker();
        let headers = http::HeaderMap::new();
        let flooder = from("127.0.0.2");
        for _ in 0..3 {
            assert_eq!(tracker.charge(&headers, &flooder), Ok(()));
        }
        assert_eq!(tracker.charge(&headers, &flooder), Err(60));
        assert_eq!(tracker.charge(&headers, &from("127.0.0.3")), Ok(()));
        // Unidentified requests are not budgeted.
        for _ in 0..10 {
            assert_eq!(tracker.charge(&headers, &http::Extensions::new()), Ok(()));
        }
    }

    #[test]
    fn a_key_function_replaces_the_peer_address() {
        let tracker = MissBudget::per_client(1, Duration::from_secs(60))
            .key_by(|headers, _| {
                headers
                    .get("x-client")
                    .and_then(|v| v.to_str().ok())
                    .map(ClientKey::new)
            })
            .tracker();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-client", "a".parse().unwrap());
        let same_peer = from("127.0.0.2");
        assert_eq!(tracker.charge(&headers, &same_peer), Ok(()));
        assert!(tracker.charge(&headers, &same_peer).is_err());
        headers.insert("x-client", "b".parse().unwrap());
        assert_eq!(tracker.charge(&headers, &same_peer), Ok(()));
    }
}
