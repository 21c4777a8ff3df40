//! Login throttling (RFC 6749 §10.10): failed logins are limited per account and per client
//! address.
//!
//! Each attempt is counted against both before the password is verified and refunded when it
//! succeeds, so a burst of concurrent guesses cannot exceed the limit while argon2 runs, and a
//! user who logs in successfully is never slowed or refused by their own logins. A banned
//! account or address is refused before any hashing, which also makes the refusal cheap. A
//! successful login clears its account's record (not its address's: one's own account must not
//! reset the budget used to guess others).
//!
//! The trade-off is the usual one: an attacker can lock an account for the ban time by failing
//! on purpose. The ban is short and per account, and the address limit makes a single source
//! run out of guesses across all accounts.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{ClientAddr, WindowCounter, WindowLimit};

/// Refused: too many failed logins; retry after the given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// How long the account or address stays refused.
    pub retry_after: Duration,
}

/// Failed-login counters per account and per address.
pub struct LoginThrottle {
    /// Keyed by SHA-256 of the submitted username: fixed-size keys whatever the input.
    accounts: WindowCounter<[u8; 32]>,
    addresses: WindowCounter<ClientAddr>,
}

fn account_key(username: &str) -> [u8; 32] {
    Sha256::digest(username.as_bytes()).into()
}

impl LoginThrottle {
    /// Throttling with the given limits, each table holding at most `capacity` keys.
    pub fn new(per_account: WindowLimit, per_address: WindowLimit, capacity: usize) -> Self {
        Self {
            accounts: WindowCounter::new(per_account, capacity),
            addresses: WindowCounter::new(per_address, capacity),
        }
    }

    /// Admits (and counts) a login attempt, or refuses it when the account or the address is
    /// banned or has used up its failures.
    pub fn begin(&self, username: &str, addr: ClientAddr, now: Instant) -> Result<(), Throttled> {
        let account = account_key(username);
        // Refuse without counting when either is already banned.
        if let Some(wait) = self
            .accounts
            .blocked(&account, now)
            .max(self.addresses.blocked(&addr, now))
        {
            return Err(Throttled { retry_after: wait });
        }
        let by_account = self.accounts.try_record(&account, now);
        let by_address = self.addresses.try_record(&addr, now);
        match (by_account, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (account_result, address_result) => {
                // Undo the half that was counted: this attempt does not happen.
                if account_result.is_ok() {
                    self.accounts.refund(&account);
                }
                if address_result.is_ok() {
                    self.addresses.refund(&addr);
                }
                let wait = account_result
                    .err()
                    .unwrap_or_default()
                    .max(address_result.err().unwrap_or_default());
                Err(Throttled { retry_after: wait })
            }
        }
    }

    /// The admitted attempt never ran (the server was too busy to verify it): it does not count.
    pub fn abandoned(&self, username: &str, addr: ClientAddr) {
        self.accounts.refund(&account_key(username));
        self.addresses.refund(&addr);
    }

    /// The admitted attempt logged the user in: it does not count as a failure.
    pub fn succeeded(&self, username: &str, addr: ClientAddr) {
        self.accounts.forget(&account_key(username));
        self.addresses.refund(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn addr(last: u8) -> ClientAddr {
        ClientAddr::from_ip(std::net::IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn an_account_is_refused_after_its_failures_from_any_address() {
        let throttle = LoginThrottle::new(
            WindowLimit::new(3, 15 * MINUTE, 15 * MINUTE),
            WindowLimit::new(100, 15 * MINUTE, 15 * MINUTE),
            100,
        );
        let t0 = Instant::now();
        for i in 0..3 {
            throttle.begin("alice", addr(i), t0).unwrap();
        }
        assert_eq!(
            throttle.begin("alice", addr(9), t0),
            Err(Throttled {
                retry_after: 15 * MINUTE
            })
        );
        // Other accounts are unaffected.
        throttle.begin("bob", addr(9), t0).unwrap();
        throttle.succeeded("bob", addr(9));
    }

    #[test]
    fn an_address_is_refused_after_its_failures_across_accounts() {
        let throttle = LoginThrottle::new(
            WindowLimit::new(100, MINUTE, MINUTE),
            WindowLimit::new(5, MINUTE, 2 * MINUTE),
            100,
        );
        let t0 = Instant::now();
        for i in 0..5 {
            throttle.begin(&format!("user{i}"), addr(1), t0).unwrap();
        }
        let refused = throttle.begin("someone-else", addr(1), t0);
        assert_eq!(
            refused,
            Err(Throttled {
                retry_after: 2 * MINUTE
            })
        );
        throttle.begin("someone-else", addr(2), t0).unwrap();
    }

    #[test]
    fn successful_logins_are_never_counted() {
        let throttle = LoginThrottle::new(
            WindowLimit::new(2, MINUTE, MINUTE),
            WindowLimit::new(2, MINUTE, MINUTE),
            100,
        );
        let t0 = Instant::now();
        for _ in 0..100 {
            throttle.begin("alice", addr(1), t0).unwrap();
            throttle.succeeded("alice", addr(1));
        }
        // A success clears the account's failures.
        throttle.begin("alice", addr(2), t0).unwrap();
        throttle.begin("alice", addr(3), t0).unwrap();
        throttle.succeeded("alice", addr(3));
        throttle.begin("alice", addr(4), t0).unwrap();
        throttle.begin("alice", addr(5), t0).unwrap();
        assert!(throttle.begin("alice", addr(6), t0).is_err());
    }
}
