//! The stream configuration's `min_verification_interval` (SSF 1.0 §8.1.1), enforced: each
//! verification request makes this server sign and push a SET to the stream's endpoint, so a
//! stream owner asking in a loop would turn it into a source of requests to whatever endpoint it
//! chose. Per instance, in memory, one entry per recently verified stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most streams remembered at once; beyond (after forgetting those whose interval has passed),
/// requests are paced as if every stream had just been verified.
const MAX_STREAMS: usize = 100_000;

/// When each stream was last verified.
#[derive(Debug)]
pub struct VerificationPacing {
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl VerificationPacing {
    /// Pacing at one verification per `interval` per stream (none when zero).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a verification of `stream_id` at `now`, or says how long until one is admitted.
    pub fn admit(&self, stream_id: &str, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = last.get(stream_id) {
            let since = now.saturating_duration_since(*at);
            if since < self.interval {
                return Err(self.interval - since);
            }
        }
        if last.len() >= MAX_STREAMS && !last.contains_key(stream_id) {
            last.retain(|_, at| now.saturating_duration_since(*at) < self.interval);
            if last.len() >= MAX_STREAMS {
                return Err(self.interval);
            }
        }
        last.insert(stream_id.to_owned(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_verification_per_interval_per_stream() {
        let pacing = VerificationPacing::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(pacing.admit("a", t0), Ok(()));
        assert_eq!(pacing.admit("b", t0), Ok(()), "streams are paced apart");
        assert_eq!(
            pacing.admit("a", t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(3))
        );
        assert_eq!(pacing.admit("a", t0 + Duration::from_secs(5)), Ok(()));
        // A refused request does not push the next admission back.
        assert_eq!(
            pacing.admit("a", t0 + Duration::from_secs(9)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(pacing.admit("a", t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn zero_disables_pacing() {
        let pacing = VerificationPacing::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(pacing.admit("a", now), Ok(()));
        }
    }

    #[test]
    fn the_memory_is_bounded_and_makes_room_by_forgetting_passed_intervals() {
        let pacing = VerificationPacing::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_STREAMS {
            assert_eq!(pacing.admit(&i.to_string(), t0), Ok(()));
        }
        // Full of streams verified just now: a new one waits.
        assert_eq!(pacing.admit("new", t0), Err(Duration::from_secs(1)));
        // Once their interval has passed, they make room.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pacing.admit("new", later), Ok(()));
        assert_eq!(pacing.last.lock().unwrap().len(), 1);
    }
}
