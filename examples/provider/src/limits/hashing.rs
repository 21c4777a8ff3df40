//! Bounding argon2: at most N password verifications run at once.
//!
//! An argon2id verification with the default parameters needs ~19 MiB and keeps a core busy for
//! tens of milliseconds. Unbounded, 256 concurrent wrong-password posts took the process to
//! ~4.5 GiB. Here a semaphore sized to the cores admits N verifications; the others wait up to
//! a short deadline and are then refused. Each slot reuses one working-memory buffer
//! ([`HashMemory`]), so argon2's memory is exactly N × 19 MiB whatever the load and whichever
//! threads run the verifications.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::users::HashMemory;

/// The server is busy hashing; retry after the given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    /// Suggested wait before retrying.
    pub retry_after: Duration,
}

/// Admits a bounded number of password verifications at a time, each with its own reused
/// working memory.
pub struct PasswordGate {
    slots: Arc<Semaphore>,
    /// One buffer per slot: whoever holds a slot finds at least one here.
    memory: Arc<Mutex<Vec<HashMemory>>>,
    wait: Duration,
}

fn lock(pool: &Mutex<Vec<HashMemory>>) -> MutexGuard<'_, Vec<HashMemory>> {
    // Pushing or popping a buffer cannot stop half-way; recovering from poisoning is sound.
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

impl PasswordGate {
    /// `in_flight` computations at once (at least one); others wait up to `wait`.
    pub fn new(in_flight: usize, wait: Duration) -> Self {
        let in_flight = in_flight.max(1);
        Self {
            slots: Arc::new(Semaphore::new(in_flight)),
            memory: Arc::new(Mutex::new(
                (0..in_flight).map(|_| HashMemory::default()).collect(),
            )),
            wait,
        }
    }

    /// Runs `verify` on the blocking pool with a slot's working memory once a slot is free, or
    /// gives up after the wait.
    ///
    /// The slot moves into the blocking task and is released only when the computation ends,
    /// even if the request that started it is dropped (a client that disconnects cannot free
    /// its slot early and start another computation). `Ok(None)` means the computation
    /// panicked, which callers treat as a failed verification.
    pub async fn run<T, F>(&self, verify: F) -> Result<Option<T>, Busy>
    where
        T: Send + 'static,
        F: FnOnce(&mut HashMemory) -> T + Send + 'static,
    {
        let busy = Busy {
            retry_after: self.wait.max(Duration::from_secs(1)),
        };
        let slot = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            // Timed out, or the semaphore was closed (never happens: it is never closed).
            _ => return Err(busy),
        };
        let pool = self.memory.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut memory = lock(&pool).pop().unwrap_or_default();
            let result = verify(&mut memory);
            lock(&pool).push(memory);
            drop(slot);
            result
        });
        Ok(task.await.ok())
    }

    /// Slots free right now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_the_slots_run_and_the_excess_is_refused() {
        let gate = Arc::new(PasswordGate::new(2, Duration::from_millis(200)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (gate, running, peak, release_rx) = (
                gate.clone(),
                running.clone(),
                peak.clone(),
                release_rx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                gate.run(move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    release_rx.lock().unwrap().recv().unwrap();
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Both slots are taken by computations blocked on the channel.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gate.available() > 0 {
            assert!(std::time::Instant::now() < deadline, "slots never taken");
            tokio::task::yield_now().await;
        }
        // A third caller waits the configured 200 ms, then is refused.
        let refused = gate.run(|_| ()).await;
        assert_eq!(
            refused,
            Err(Busy {
                retry_after: Duration::from_secs(1)
            })
        );
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(Some(())));
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(gate.available(), 2);
        assert_eq!(gate.run(|_| 7).await, Ok(Some(7)));
    }
}
