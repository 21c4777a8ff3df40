//! Discovery of the introspection endpoint on first use, so that a service can start while its
//! authorization server is down: requests get 503 until discovery succeeds, retried with capped
//! exponential backoff, one attempt at a time.

use std::sync::OnceLock;
use std::time::Duration;

use url::Url;

use crate::discovery;
use crate::{UnavailableCause, VerifyError};

/// Wait after the first failed attempt; doubled after each further failure.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(60);

/// What discovery needs, and what it found.
#[derive(Debug)]
pub(crate) struct LazyDiscovery {
    issuer: String,
    allow_http: bool,
    endpoint: OnceLock<Url>,
    /// Held by the one attempt in flight: the others wait for its outcome instead of starting
    /// their own (no retry storm).
    attempts: tokio::sync::Mutex<Backoff>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    /// No attempt before this instant (tokio's clock, so that tests can drive it).
    next_attempt: Option<tokio::time::Instant>,
}

impl LazyDiscovery {
    pub(crate) fn new(issuer: String, allow_http: bool) -> Self {
        Self {
            issuer,
            allow_http,
            endpoint: OnceLock::new(),
            attempts: tokio::sync::Mutex::new(Backoff::default()),
        }
    }

    /// The endpoint, if discovered.
    pub(crate) fn get(&self) -> Option<&Url> {
        self.endpoint.get()
    }

    /// The endpoint, discovering it now if it is not known and no failure is too recent.
    pub(crate) async fn endpoint(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
        limit: usize,
    ) -> Result<&Url, VerifyError> {
        if let Some(endpoint) = self.endpoint.get() {
            return Ok(endpoint);
        }
        let mut backoff = self.attempts.lock().await;
        // Discovered by the attempt this one waited for.
        if let Some(endpoint) = self.endpoint.get() {
            return Ok(endpoint);
        }
        let now = tokio::time::Instant::now();
        if let Some(next) = backoff.next_attempt.filter(|next| *next > now) {
            return Err(VerifyError::unavailable(
                UnavailableCause::Discovery,
                format!(
                    "authorization server discovery failed; next attempt in {:?}",
                    next - now
                ),
            ));
        }
        match discovery::find_endpoint(
            discovery::Endpoint::Introspection,
            client,
            &self.issuer,
            timeout,
            limit,
            self.allow_http,
        )
        .await
        {
            Ok(endpoint) => {
                tracing::info!(%endpoint, "introspection endpoint discovered");
                Ok(self.endpoint.get_or_init(|| endpoint))
            }
            Err(error) => {
                let wait = FIRST_RETRY
                    .saturating_mul(1_u32 << backoff.failures.min(16))
                    .min(MAX_RETRY);
                backoff.failures = backoff.failures.saturating_add(1);
                backoff.next_attempt = Some(tokio::time::Instant::now() + wait);
                tracing::warn!(%error, retry_in = ?wait, "authorization server discovery failed");
                Err(VerifyError::unavailable(
                    UnavailableCause::Discovery,
                    format!("authorization server discovery failed: {error}"),
                ))
            }
        }
    }
}
