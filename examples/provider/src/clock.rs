//! The server's notion of the current time.
//!
//! Every handler asks [`AppState::now`](crate::state::AppState::now) rather than the system
//! clock, so that tests can move time forward (a key's retirement, a token's expiry) without
//! sleeping: a [`Clock::manual`] clock only moves when told to. Production uses
//! [`Clock::system`], the default.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::model::UnixTime;

/// Where the current time comes from; cheap to clone (clones share a manual clock's time).
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands at `start` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(start: UnixTime) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start))))
    }

    /// True for a [`Clock::manual`] clock.
    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }

    /// The current time in Unix seconds.
    pub fn now(&self) -> UnixTime {
        match &self.0 {
            None => crate::state::now(),
            Some(time) => time.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `seconds` (no effect on the system clock).
    pub fn advance(&self, seconds: i64) {
        if let Some(time) = &self.0 {
            time.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock to `time` (no effect on the system clock).
    pub fn set(&self, time: UnixTime) {
        if let Some(t) = &self.0 {
            t.store(time, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::System"),
            Some(time) => write!(f, "Clock::Manual({})", time.load(Ordering::SeqCst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1_000);
        shared.advance(60);
        assert_eq!(clock.now(), 1_060);
        clock.set(5);
        assert_eq!(shared.now(), 5);
        let system = Clock::system();
        system.advance(1_000_000);
        assert!((system.now() - crate::state::now()).abs() <= 1);
    }
}
