//! A bounded table of fixed-window event counters with a ban: after `max` events within `window`
//! a key is refused for `ban`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `max` events within `window`; the next one is refused and starts a ban of `ban`. `max = 0`
/// disables the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimit {
    /// Events allowed per window; `0` means unlimited.
    pub max: u32,
    /// Length of the counting window, starting at the first event.
    pub window: Duration,
    /// How long the key is refused once `max` is reached.
    pub ban: Duration,
}

impl WindowLimit {
    /// A limit of `max` events per `window`, then `ban`.
    pub const fn new(max: u32, window: Duration, ban: Duration) -> Self {
        Self { max, window, ban }
    }

    /// No limit.
    pub const fn unlimited() -> Self {
        Self::new(0, Duration::ZERO, Duration::ZERO)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: Instant,
    count: u32,
    banned_until: Option<Instant>,
}

impl Entry {
    fn stale(&self, limit: &WindowLimit, now: Instant) -> bool {
        self.banned_until.is_none_or(|until| until <= now)
            && now.duration_since(self.window_start) >= limit.window
    }
}

struct Table<K> {
    entries: HashMap<K, Entry>,
    /// Shared by every key that arrives while the table is full of live entries.
    overflow: Option<Entry>,
    last_sweep: Option<Instant>,
}

/// Counters per key, bounded to `capacity` entries. Time is passed in, so tests drive it.
///
/// When the table is full, stale entries are swept (at most once a second, so a flood of new
/// keys cannot make every call scan the table); keys that still find no room share a single
/// overflow counter. An attacker who spreads over more keys than the table holds therefore
/// exhausts the shared budget quickly instead of escaping the limit.
pub struct WindowCounter<K> {
    limit: WindowLimit,
    capacity: usize,
    table: Mutex<Table<K>>,
}

impl<K: Hash + Eq + Clone> WindowCounter<K> {
    /// An empty table.
    pub fn new(limit: WindowLimit, capacity: usize) -> Self {
        Self {
            limit,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                entries: HashMap::new(),
                overflow: None,
                last_sweep: None,
            }),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> WindowLimit {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, Table<K>> {
        // Every update is a few field writes; a panic cannot leave an entry half-updated.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` is still refused, if it is.
    pub fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.limit.max == 0 {
            return None;
        }
        let table = self.lock();
        // An untracked key shares the overflow entry only while the table is full.
        let entry = match table.entries.get(key) {
            Some(entry) => entry,
            None if table.entries.len() >= self.capacity => table.overflow.as_ref()?,
            None => return None,
        };
        entry
            .banned_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Counts one event for `key` unless it is refused; `Err` carries how long it stays refused.
    ///
    /// The first event beyond `max` in a window is refused and starts the ban. Callers count an
    /// attempt *before* doing the work and [`refund`](Self::refund) it when it turns out
    /// legitimate, so concurrent attempts cannot slip past the limit while the work runs.
    pub fn try_record(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.limit.max == 0 {
            return Ok(());
        }
        let limit = self.limit;
        let mut table = self.lock();
        let entry = self.entry(&mut table, key, now);
        if let Some(until) = entry.banned_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        if entry.stale(&limit, now) {
            *entry = fresh(now);
        }
        if entry.count >= limit.max {
            // The next window starts when the ban ends.
            *entry = Entry {
                window_start: now + limit.ban,
                count: 0,
                banned_until: Some(now + limit.ban),
            };
            return Err(limit.ban);
        }
        entry.count += 1;
        Ok(())
    }

    /// Takes back one event of `key` (an attempt that turned out to be legitimate).
    pub fn refund(&self, key: &K) {
        let mut table = self.lock();
        if let Some(entry) = table.entries.get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Forgets `key` entirely.
    pub fn forget(&self, key: &K) {
        self.lock().entries.remove(key);
    }

    /// Number of keys tracked (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry<'t>(&self, table: &'t mut Table<K>, key: &K, now: Instant) -> &'t mut Entry {
        if !table.entries.contains_key(key) && table.entries.len() >= self.capacity {
            let due = table
                .last_sweep
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
            if due {
                let limit = self.limit;
                table.entries.retain(|_, e| !e.stale(&limit, now));
                table.last_sweep = Some(now);
            }
            if table.entries.len() >= self.capacity {
                return table.overflow.get_or_insert_with(|| fresh(now));
            }
        }
        table
            .entries
            .entry(key.clone())
            .or_insert_with(|| fresh(now))
    }
}

fn fresh(now: Instant) -> Entry {
    Entry {
        window_start: now,
        count: 0,
        banned_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn bans_after_max_events_until_the_ban_ends() {
        let counter = WindowCounter::new(WindowLimit::new(3, 10 * MINUTE, 5 * MINUTE), 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(counter.try_record(&"k", t0), Ok(()));
        }
        assert_eq!(counter.try_record(&"k", t0), Err(5 * MINUTE));
        assert_eq!(counter.blocked(&"k", t0 + MINUTE), Some(4 * MINUTE));
        assert_eq!(counter.blocked(&"other", t0), None);
        let after = t0 + 5 * MINUTE;
        assert_eq!(counter.blocked(&"k", after), None);
        assert_eq!(counter.try_record(&"k", after), Ok(()));
    }

    #[test]
    fn a_new_window_starts_the_count_again() {
        let counter = WindowCounter::new(WindowLimit::new(3, MINUTE, MINUTE), 10);
        let t0 = Instant::now();
        counter.try_record(&"k", t0).unwrap();
        counter.try_record(&"k", t0).unwrap();
        let later = t0 + MINUTE;
        counter.try_record(&"k", later).unwrap();
        counter.try_record(&"k", later).unwrap();
        assert_eq!(counter.blocked(&"k", later), None);
    }

    #[test]
    fn refunds_and_forgetting_undo_events() {
        let counter = WindowCounter::new(WindowLimit::new(2, MINUTE, MINUTE), 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            counter.try_record(&"k", t0).unwrap();
            counter.refund(&"k");
        }
        assert_eq!(counter.blocked(&"k", t0), None);
        counter.try_record(&"k", t0).unwrap();
        counter.forget(&"k");
        counter.try_record(&"k", t0).unwrap();
        assert_eq!(counter.blocked(&"k", t0), None);
    }

    #[test]
    fn a_full_table_puts_new_keys_in_one_shared_budget() {
        let counter = WindowCounter::new(WindowLimit::new(2, MINUTE, MINUTE), 3);
        let t0 = Instant::now();
        for key in 0..3 {
            counter.try_record(&key, t0).unwrap();
        }
        // Keys 3, 4, 5 find no room: they share the overflow entry, so two events exhaust it.
        counter.try_record(&3, t0).unwrap();
        counter.try_record(&4, t0).unwrap();
        assert_eq!(counter.try_record(&5, t0), Err(MINUTE));
        assert_eq!(counter.blocked(&9, t0), Some(MINUTE));
        assert_eq!(counter.len(), 3);
        // With room again, a new key is on its own.
        counter.forget(&0);
        assert_eq!(counter.blocked(&9, t0), None);
        assert_eq!(counter.try_record(&9, t0), Ok(()));
        counter.forget(&9);
        counter.try_record(&0, t0).unwrap();
        // Once the tracked entries are stale they are swept and new keys get their own entry.
        let later = t0 + 2 * MINUTE;
        assert_eq!(counter.try_record(&6, later), Ok(()));
        assert_eq!(counter.len(), 1);
    }

    #[test]
    fn zero_disables_the_limit() {
        let counter = WindowCounter::new(WindowLimit::unlimited(), 1);
        let t0 = Instant::now();
        for key in 0..1000 {
            assert_eq!(counter.try_record(&key, t0), Ok(()));
        }
        assert!(counter.is_empty());
    }
}
