//! Periodic removal of expired rows. Reads already ignore expired rows, so cleanup only bounds the
//! size of the store; running it late or twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::model::UnixTime;
use crate::storage::{Storage, StorageResult};

/// Purges everything that expired at or before `now`; returns the number of rows removed.
pub async fn run_once(storage: &dyn Storage, now: UnixTime) -> StorageResult<u64> {
    storage.purge_expired(now).await
}

/// Spawns a task that purges rows expired by `clock` every `interval` (first run after one
/// interval). Abort the handle to stop it.
pub fn spawn(storage: Arc<dyn Storage>, interval: Duration, clock: Clock) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match run_once(storage.as_ref(), clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "purged expired rows"),
                Err(e) => tracing::warn!(error = %e, "cleanup failed"),
            }
        }
    })
}
