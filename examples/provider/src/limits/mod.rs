//! Bounds on what one caller, and all callers together, can make the server compute or store.
//!
//! Anyone who can reach the server can post a password, register a client or start an
//! authorization without authenticating first. Each of those costs CPU, memory or storage, so each
//! is bounded here, with defaults that leave normal use (several users and several MCP clients
//! behind one address) untouched:
//!
//! - [`PasswordGate`]: argon2 verifications in flight (each needs ~19 MiB and tens of ms of CPU);
//! - [`LoginThrottle`]: failed logins per (account, address) pair and per client address, and
//!   per account across addresses, which slows rather than locks (RFC 6749 §10.10);
//! - [`WindowCounter`]: the per-address registration rate;
//! - caps on stored pending authorizations and never-used anonymous clients, enforced atomically
//!   by the storage backends (see [`crate::storage::Admission`]).
//!
//! The client address is the TCP peer ([`ClientAddr`]); behind a reverse proxy it is the proxy's,
//! so every client then shares one budget (see the README).

mod address;
mod hashing;
mod login;
mod window;

use std::time::Duration;

pub use address::ClientAddr;
pub use hashing::{Busy, PasswordGate};
pub use login::{AccountPacing, LoginThrottle, Throttled};
pub use window::{WindowCounter, WindowLimit};

/// Every abuse bound of the server, with the defaults documented in the README.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Argon2 verifications allowed at the same time (default: the number of CPU cores). Each
    /// holds ~19 MiB while it runs, so this bounds the memory password checks can take.
    pub password_hashes_in_flight: usize,
    /// How long a login waits for a free hashing slot before it is answered `503` with
    /// `Retry-After` (default 5 s).
    pub password_hash_wait: Duration,
    /// Failed logins per (account, address) pair (default 10 in 15 minutes, then that address
    /// is refused for that account for 15 minutes).
    pub login_failures_per_pair: WindowLimit,
    /// Failed logins per account from all addresses together (default 100 in 15 minutes; then,
    /// for 15 minutes, the account is slowed to one attempt per
    /// [`login_account_cooldown`](Self::login_account_cooldown), never locked).
    pub login_failures_per_account: WindowLimit,
    /// While an account is slowed, the least time between two admitted attempts on it
    /// (default 5 s; zero disables the slowing).
    pub login_account_cooldown: Duration,
    /// Failed logins per client address (default 30 in 15 minutes, then refused for 15 minutes).
    pub login_failures_per_address: WindowLimit,
    /// Open registrations per client address (default 30 per hour).
    pub registrations_per_address: WindowLimit,
    /// Most anonymously registered clients that were never used, server-wide (default 10 000).
    pub max_unused_clients: u64,
    /// How long an anonymously registered client may stay unused before the cleanup task
    /// deletes it (default 24 hours). A client is used once a user approved a request of it.
    pub unused_client_ttl: Duration,
    /// Pending authorizations (login or consent not finished) per client address (default 100).
    pub pending_per_address: u64,
    /// Pending authorizations server-wide (default 10 000).
    pub max_pending: u64,
    /// Entries each in-memory counter table keeps (default 100 000, a few MiB). When a table is
    /// full of live entries, new keys share one overflow entry, so the bound fails closed.
    pub tracked_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let fifteen_minutes = Duration::from_secs(15 * 60);
        Self {
            password_hashes_in_flight: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            password_hash_wait: Duration::from_secs(5),
            login_failures_per_pair: WindowLimit::new(10, fifteen_minutes, fifteen_minutes),
            login_failures_per_account: WindowLimit::new(100, fifteen_minutes, fifteen_minutes),
            login_account_cooldown: Duration::from_secs(5),
            login_failures_per_address: WindowLimit::new(30, fifteen_minutes, fifteen_minutes),
            registrations_per_address: WindowLimit::new(
                30,
                Duration::from_secs(3600),
                Duration::from_secs(3600),
            ),
            max_unused_clients: 10_000,
            unused_client_ttl: Duration::from_secs(24 * 3600),
            pending_per_address: 100,
            max_pending: 10_000,
            tracked_keys: 100_000,
        }
    }
}

/// How long a caller refused by the server-wide cap of unused clients (registered or admitted
/// from a metadata document) is told to wait.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whole seconds for a `Retry-After` header, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}
