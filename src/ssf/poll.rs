//! RFC 8936 poll delivery: the receiver fetches SETs from the transmitter, for servers that cannot
//! take inbound calls.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::SsfReceiver;
use crate::remote::{DEFAULT_REQUEST_TIMEOUT, read_capped, request_failed, require_tls};
use crate::{ConfigError, Unavailable, UnavailableCause};

/// Default wait between two polls that found nothing more.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest interval accepted: a poller is not a busy loop against the transmitter.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between two polls after failures (the interval doubles after each failure).
pub const MAX_POLL_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Default and largest `maxEvents` asked for.
const DEFAULT_MAX_EVENTS: u32 = 100;
const MAX_MAX_EVENTS: u32 = 1000;

/// Configures a [`Poller`]; made by [`SsfReceiver::poller`].
#[must_use]
pub struct PollerBuilder {
    receiver: SsfReceiver,
    endpoint: String,
    authorization: String,
    interval: Duration,
    max_events: u32,
    timeout: Duration,
}

impl fmt::Debug for PollerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollerBuilder")
            .field("endpoint", &self.endpoint)
            .field("interval", &self.interval)
            .field("max_events", &self.max_events)
            .finish_non_exhaustive()
    }
}

impl PollerBuilder {
    pub(crate) fn new(receiver: SsfReceiver, endpoint: String, authorization: String) -> Self {
        Self {
            receiver,
            endpoint,
            authorization,
            interval: DEFAULT_POLL_INTERVAL,
            max_events: DEFAULT_MAX_EVENTS,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Wait between polls when the transmitter has nothing more (default
    /// [`DEFAULT_POLL_INTERVAL`], at least [`MIN_POLL_INTERVAL`]). It bounds how late a
    /// revocation is acted on.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Most SETs asked for per poll (default 100, at most 1000).
    pub fn max_events(mut self, max_events: u32) -> Self {
        self.max_events = max_events;
        self
    }

    /// Time allowed for each poll request, response included (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and builds the poller. Nothing is fetched here.
    pub fn build(self) -> Result<Poller, ConfigError> {
        let endpoint = Url::parse(&self.endpoint).map_err(|e| ConfigError::InvalidUrl {
            url: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let http = &self.receiver.inner().http;
        require_tls(&endpoint, http.allow_http)?;
        let authorization = HeaderValue::from_str(&self.authorization)
            .ok()
            .filter(|_| !self.authorization.is_empty())
            .ok_or(ConfigError::Invalid {
                setting: "authorization",
                reason: "not a usable header value".into(),
            })?;
        if self.interval < MIN_POLL_INTERVAL || self.interval > MAX_POLL_BACKOFF {
            return Err(ConfigError::Invalid {
                setting: "interval",
                reason: format!(
                    "between {} s and {} s",
                    MIN_POLL_INTERVAL.as_secs(),
                    MAX_POLL_BACKOFF.as_secs()
                ),
            });
        }
        if self.max_events == 0 || self.max_events > MAX_MAX_EVENTS {
            return Err(ConfigError::Invalid {
                setting: "max_events",
                reason: format!("between 1 and {MAX_MAX_EVENTS}"),
            });
        }
        let client = http.client()?;
        let max_response = (self.max_events as usize)
            .saturating_mul(self.receiver.inner().max_body)
            .saturating_add(64 * 1024);
        Ok(Poller {
            client,
            endpoint,
            authorization,
            interval: self.interval,
            max_events: self.max_events,
            timeout: self.timeout,
            max_response,
            receiver: self.receiver,
            acks: Vec::new(),
            errors: Map::new(),
            failures: 0,
        })
    }
}

/// Polls a transmitter's RFC 8936 endpoint and hands each SET to its [`SsfReceiver`].
///
/// Each poll acknowledges the SETs of the previous one (`ack`), reports the ones refused
/// (`setErrs`, with their RFC 8935 error codes, so the transmitter does not offer them again), and
/// asks for up to `max_events` more with `returnImmediately`. A SET that could not be checked now
/// (the transmitter's keys unavailable) is neither acknowledged nor refused: the transmitter offers
/// it again. Acknowledgements of a poll that failed are sent with the next one, so none is lost.
///
/// [`run`](Self::run) polls forever: again at once while the transmitter says more are available,
/// after the interval otherwise, and after a doubling backoff (with jitter, up to
/// [`MAX_POLL_BACKOFF`]) while polls fail. Spawn it, and abort the task to stop.
pub struct Poller {
    receiver: SsfReceiver,
    client: reqwest::Client,
    endpoint: Url,
    authorization: HeaderValue,
    interval: Duration,
    max_events: u32,
    timeout: Duration,
    max_response: usize,
    /// SET identifiers to acknowledge in the next poll.
    acks: Vec<String>,
    /// SET identifiers to report as refused in the next poll.
    errors: Map<String, Value>,
    /// Failed polls in a row.
    failures: u32,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("endpoint", &self.endpoint.as_str())
            .field("pending_acks", &self.acks.len())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// What one poll brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollOutcome {
    /// SETs in the answer.
    pub received: usize,
    /// Of those, accepted (and acknowledged in the next poll).
    pub accepted: usize,
    /// Refused (reported in `setErrs` in the next poll).
    pub refused: usize,
    /// Not checkable now: left for the transmitter to offer again.
    pub deferred: usize,
    /// The transmitter has more SETs waiting.
    pub more_available: bool,
}

#[derive(Deserialize)]
struct PollResponse {
    sets: Map<String, Value>,
    #[serde(default, rename = "moreAvailable")]
    more_available: bool,
}

impl Poller {
    /// Polls once: sends the pending acknowledgements and errors, and handles the SETs that come
    /// back. On `Err` nothing was acknowledged; the pending acknowledgements are kept for the
    /// next poll.
    pub async fn poll_once(&mut self) -> Result<PollOutcome, Unavailable> {
        let request = json!({
            "maxEvents": self.max_events,
            "returnImmediately": true,
            "ack": self.acks,
            "setErrs": self.errors,
        });
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header(http::header::ACCEPT, "application/json")
            .json(&request)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| request_failed("SSF poll", e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(Unavailable::new(
                UnavailableCause::Status,
                format!("the SSF poll endpoint answered {status}"),
            ));
        }
        let body = read_capped(response, self.max_response).await?;
        let answer: PollResponse = serde_json::from_slice(&body).map_err(|e| {
            Unavailable::new(
                UnavailableCause::InvalidResponse,
                format!("not an RFC 8936 poll response: {e}"),
            )
        })?;
        // The transmitter has them now.
        self.acks.clear();
        self.errors.clear();
        let mut outcome = PollOutcome {
            more_available: answer.more_available,
            ..PollOutcome::default()
        };
        for (jti, set) in answer.sets.into_iter().take(self.max_events as usize) {
            outcome.received += 1;
            let Some(set) = set.as_str() else {
                outcome.refused += 1;
                self.errors.insert(
                    jti,
                    json!({"err": "invalid_request", "description": "a SET is a string"}),
                );
                continue;
            };
            match self.receiver.receive(set).await {
                Ok(_) => {
                    outcome.accepted += 1;
                    self.acks.push(jti);
                }
                Err(error) if error.is_transient() => outcome.deferred += 1,
                Err(error) => {
                    outcome.refused += 1;
                    self.errors.insert(jti, error.body());
                }
            }
        }
        Ok(outcome)
    }

    /// Polls until the task is aborted. See the [type documentation](Self).
    pub async fn run(mut self) {
        loop {
            let wait = match self.poll_once().await {
                Ok(outcome) => {
                    self.failures = 0;
                    if outcome.more_available {
                        continue;
                    }
                    self.interval
                }
                Err(error) => {
                    self.failures = self.failures.saturating_add(1);
                    tracing::warn!(reason = %error, failures = self.failures, "SSF poll failed");
                    backoff(self.interval, self.failures)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The wait after `failures` failed polls in a row: the interval doubled per failure, up to
/// [`MAX_POLL_BACKOFF`], less up to a quarter at random so that receivers do not poll in step.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doubled = interval
        .saturating_mul(1_u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(MAX_POLL_BACKOFF);
    let random = {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(failures)
    };
    let jitter = doubled.mul_f64((random % 1000) as f64 / 4000.0);
    doubled - jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below() {
        let interval = Duration::from_secs(5);
        for failures in 1..40 {
            let wait = backoff(interval, failures);
            let full = interval
                .saturating_mul(2_u32.saturating_pow(failures.min(16)))
                .min(MAX_POLL_BACKOFF);
            assert!(
                wait <= full && wait >= full.mul_f64(0.75),
                "{failures}: {wait:?}"
            );
        }
    }
}
