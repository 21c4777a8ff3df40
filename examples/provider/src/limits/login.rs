//! Login throttling (RFC 6749 §10.10): failed logins are limited per (account, address) pair,
//! per client address, and per account across all addresses.
//!
//! - **The pair** (default 10 failures in 15 minutes): beyond it, that address is refused for
//!   that account for the ban time (15 minutes), the right password included. Other addresses,
//!   the account's owner among them, are not affected: a stranger cannot lock a user out.
//! - **The address** (default 30 failures in 15 minutes, across accounts): one source cannot
//!   spread its guesses over many accounts.
//! - **The account** (default 100 failures in 15 minutes, from all addresses together): beyond
//!   it the account is not locked but *slowed*: for the ban time, the account admits one attempt
//!   per cooldown (default 5 s), whatever the address; the others get `429` with a
//!   `Retry-After` of at most the cooldown, without hashing. The owner's right password passes
//!   on an admitted attempt; guessing by many addresses is bounded to the account limit plus one
//!   guess per cooldown (with the defaults at most 100 + 900 / 5 = 280 verified guesses per 15
//!   minutes on one account).
//!
//! Each attempt is counted before the password is verified and refunded when it succeeds, so a
//! burst of concurrent guesses cannot exceed a limit while argon2 runs, and a user who logs in
//! successfully is never counted. A success clears its pair's failures (not its address's:
//! one's own account must not reset the budget used to guess others; nor its account's: the
//! owner's logins must not reset the bound on everyone else's guesses).

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{ClientAddr, WindowCounter, WindowLimit};

/// Refused: too many failed logins; retry after the given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// How long the pair or address stays refused, or until the slowed account admits an
    /// attempt again.
    pub retry_after: Duration,
    /// True when the account is slowed (the wait is at most the cooldown), false when the
    /// pair or the address is banned.
    pub slowed: bool,
}

/// The account-wide bound: beyond `limit`, one attempt per `cooldown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountPacing {
    /// Failures per account (all addresses) before the account is slowed, and for how long.
    pub limit: WindowLimit,
    /// While slowed, the least time between two admitted attempts on the account.
    pub cooldown: Duration,
}

type Account = [u8; 32];

/// Failed-login counters per (account, address), per address and per account.
pub struct LoginThrottle {
    /// Keyed by SHA-256 of the submitted username: fixed-size keys whatever the input.
    pairs: WindowCounter<(Account, ClientAddr)>,
    addresses: WindowCounter<ClientAddr>,
    accounts: WindowCounter<Account>,
    /// While an account is slowed: one admitted attempt per cooldown.
    pacing: WindowCounter<Account>,
}

fn account_key(username: &str) -> Account {
    Sha256::digest(username.as_bytes()).into()
}

impl LoginThrottle {
    /// Throttling with the given limits, each table holding at most `capacity` keys.
    pub fn new(
        per_pair: WindowLimit,
        per_address: WindowLimit,
        per_account: AccountPacing,
        capacity: usize,
    ) -> Self {
        let pacing = if per_account.cooldown.is_zero() {
            WindowLimit::unlimited()
        } else {
            WindowLimit::new(1, per_account.cooldown, per_account.cooldown)
        };
        Self {
            pairs: WindowCounter::new(per_pair, capacity),
            addresses: WindowCounter::new(per_address, capacity),
            accounts: WindowCounter::new(per_account.limit, capacity),
            pacing: WindowCounter::new(pacing, capacity),
        }
    }

    /// Admits (and counts) a login attempt, or refuses it when the pair or the address is
    /// banned or has used up its failures, or the account is slowed and its cooldown runs.
    pub fn begin(&self, username: &str, addr: ClientAddr, now: Instant) -> Result<(), Throttled> {
        let account = account_key(username);
        let pair = (account, addr);
        // Refuse without counting when the pair or the address is already banned.
        if let Some(wait) = self
            .pairs
            .blocked(&pair, now)
            .max(self.addresses.blocked(&addr, now))
        {
            return Err(Throttled {
                retry_after: wait,
                slowed: false,
            });
        }
        // The account: counted while under its bound; beyond it, paced.
        let counted = self.accounts.blocked(&account, now).is_none()
            && self.accounts.try_record(&account, now).is_ok();
        if !counted && let Err(wait) = self.pace(&account, now) {
            return Err(Throttled {
                retry_after: wait,
                slowed: true,
            });
        }
        let by_pair = self.pairs.try_record(&pair, now);
        let by_address = self.addresses.try_record(&addr, now);
        match (by_pair, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (pair_result, address_result) => {
                // Undo what was counted: this attempt does not happen.
                if counted {
                    self.accounts.refund(&account);
                }
                if pair_result.is_ok() {
                    self.pairs.refund(&pair);
                }
                if address_result.is_ok() {
                    self.addresses.refund(&addr);
                }
                let wait = pair_result
                    .err()
                    .unwrap_or_default()
                    .max(address_result.err().unwrap_or_default());
                Err(Throttled {
                    retry_after: wait,
                    slowed: false,
                })
            }
        }
    }

    /// A slowed account's turn: `Ok` when the cooldown since its last admitted attempt passed.
    fn pace(&self, account: &Account, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.pacing.blocked(account, now) {
            return Err(wait);
        }
        self.pacing.try_record(account, now)
    }

    /// The admitted attempt never ran (the server was too busy to verify it): it does not count.
    pub fn abandoned(&self, username: &str, addr: ClientAddr) {
        let account = account_key(username);
        self.accounts.refund(&account);
        self.pairs.refund(&(account, addr));
        self.addresses.refund(&addr);
    }

    /// The admitted attempt logged the user in: it does not count as a failure, and the
    /// pair's failures are forgotten.
    pub fn succeeded(&self, username: &str, addr: ClientAddr) {
        let account = account_key(username);
        self.accounts.refund(&account);
        self.pairs.forget(&(account, addr));
        self.addresses.refund(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const SECOND: Duration = Duration::from_secs(1);

    fn addr(last: u8) -> ClientAddr {
        ClientAddr::from_ip(std::net::IpAddr::from([192, 0, 2, last]))
    }

    fn throttle(pair: u32, address: u32, account: u32, cooldown: Duration) -> LoginThrottle {
        LoginThrottle::new(
            WindowLimit::new(pair, 15 * MINUTE, 15 * MINUTE),
            WindowLimit::new(address, 15 * MINUTE, 15 * MINUTE),
            AccountPacing {
                limit: WindowLimit::new(account, 15 * MINUTE, 15 * MINUTE),
                cooldown,
            },
            100,
        )
    }

    #[test]
    fn a_pair_is_banned_after_its_failures_and_other_addresses_are_not() {
        let throttle = throttle(3, 100, 100, 5 * SECOND);
        let t0 = Instant::now();
        for _ in 0..3 {
            throttle.begin("alice", addr(1), t0).unwrap();
        }
        assert_eq!(
            throttle.begin("alice", addr(1), t0),
            Err(Throttled {
                retry_after: 15 * MINUTE,
                slowed: false
            })
        );
        // The owner, from her own address, is not refused; nor is another account.
        throttle.begin("alice", addr(2), t0).unwrap();
        throttle.succeeded("alice", addr(2));
        throttle.begin("bob", addr(1), t0).unwrap();
    }

    #[test]
    fn an_address_is_refused_after_its_failures_across_accounts() {
        let throttle = throttle(100, 5, 100, 5 * SECOND);
        let t0 = Instant::now();
        for i in 0..5 {
            throttle.begin(&format!("user{i}"), addr(1), t0).unwrap();
        }
        assert!(throttle.begin("someone-else", addr(1), t0).is_err());
        throttle.begin("someone-else", addr(2), t0).unwrap();
    }

    #[test]
    fn an_account_guessed_from_many_addresses_is_slowed_to_one_attempt_per_cooldown() {
        let throttle = throttle(3, 100, 6, 5 * SECOND);
        let t0 = Instant::now();
        // Six failures from six addresses use up the account's bound…
        for i in 0..6 {
            throttle.begin("alice", addr(i), t0).unwrap();
        }
        // …then one attempt per cooldown gets through, from whichever address.
        throttle.begin("alice", addr(10), t0).unwrap();
        for i in 11..50 {
            assert_eq!(
                throttle.begin("alice", addr(i), t0),
                Err(Throttled {
                    retry_after: 5 * SECOND,
                    slowed: true
                })
            );
        }
        let later = t0 + 5 * SECOND;
        throttle.begin("alice", addr(50), later).unwrap();
        assert!(throttle.begin("alice", addr(51), later).is_err());
        // Other accounts are not slowed.
        throttle.begin("bob", addr(51), later).unwrap();
        // After the slow period the account counts afresh.
        let after = t0 + 15 * MINUTE;
        for i in 60..66 {
            throttle.begin("alice", addr(i), after).unwrap();
        }
    }

    #[test]
    fn successful_logins_are_never_counted() {
        let throttle = throttle(2, 2, 2, 5 * SECOND);
        let t0 = Instant::now();
        for _ in 0..100 {
            throttle.begin("alice", addr(1), t0).unwrap();
            throttle.succeeded("alice", addr(1));
        }
        // A success clears its pair's failures.
        throttle.begin("alice", addr(3), t0).unwrap();
        throttle.succeeded("alice", addr(3));
        throttle.begin("alice", addr(3), t0).unwrap();
        throttle.begin("alice", addr(3), t0).unwrap();
        assert!(throttle.begin("alice", addr(3), t0).is_err());
    }
}
