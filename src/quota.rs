//! The daily allowance. Settled usage lives in SQLite; what turns in flight
//! have reserved lives here, in memory, next to a copy of each user's settled
//! total for the day, so that checking and reserving is one atomic step.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Days, NaiveTime, Utc};
use parking_lot::Mutex;

/// The clock the allowance runs on; tests move it instead of sleeping.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Moves the clock forward (or back) by `seconds` from real time.
    pub fn set_offset(&self, seconds: i64) {
        self.offset_secs.store(seconds, Ordering::Relaxed);
    }
}

/// The UTC day of an instant, as `YYYY-MM-DD`.
pub fn utc_day(at: DateTime<Utc>) -> String {
    // A date's own display is `YYYY-MM-DD`; a format string would be parsed
    // again on every turn.
    at.date_naive().to_string()
}

/// The next UTC midnight after `at`, when the allowance resets.
pub fn reset_at(at: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = at
        .date_naive()
        .checked_add_days(Days::new(1))
        .unwrap_or(at.date_naive());
    tomorrow.and_time(NaiveTime::MIN).and_utc()
}

#[derive(Debug, Default)]
struct Account {
    day: String,
    settled: u64,
    reserved: u64,
}

/// A turn does not fit in what is left of the allowance.
#[derive(Debug, Clone)]
pub struct OverAllowance {
    pub limit: u64,
    pub used: u64,
    pub reset_at: DateTime<Utc>,
    pub why: Why,
}

/// Why a turn does not fit; each asks the user for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The day's allowance is used: wait for midnight UTC.
    UsedUp,
    /// The user's turns in progress hold what is left: wait for them.
    HeldByTurnsInProgress,
    /// The message alone is more than what is left: send a shorter one.
    MessageTooLarge { message_tokens: u64 },
}

#[derive(Debug, Default)]
pub struct Quota {
    accounts: Mutex<HashMap<i64, Account>>,
    pub clock: Clock,
}

/// Tokens held for a turn in flight. Settle it with the real count, or drop
/// it to give the tokens back.
#[derive(Debug)]
pub struct Reservation {
    quota: Arc<Quota>,
    user_id: i64,
    day: String,
    amount: u64,
    done: bool,
}

impl Quota {
    /// Whether the user's settled total for `day` is already known here.
    pub fn knows(&self, user_id: i64, day: &str) -> bool {
        self.accounts
            .lock()
            .get(&user_id)
            .is_some_and(|a| a.day == day)
    }

    /// Seeds the user's settled total for `day`, read from the database, unless
    /// a fresher one is already here.
    pub fn seed(&self, user_id: i64, day: &str, settled: u64) {
        let mut accounts = self.accounts.lock();
        let account = accounts.entry(user_id).or_default();
        if account.day != day {
            *account = Account {
                day: day.to_owned(),
                settled,
                reserved: 0,
            };
        }
    }

    /// Reserves `prompt_tokens + max_output` while something is left of the
    /// allowance after settled usage and other turns' reservations, and the
    /// turn's new text (`new_tokens`, the user's message) fits in it: a huge
    /// message is refused rather than charged far past the allowance. Since
    /// every turn in flight holds its whole expected cost, parallel turns
    /// together pass the allowance by at most the last admitted turn. A
    /// `limit` of 0 means unlimited.
    pub fn reserve(
        self: &Arc<Self>,
        user_id: i64,
        day: &str,
        limit: u64,
        prompt_tokens: u64,
        new_tokens: u64,
        max_output: u64,
    ) -> Result<Reservation, OverAllowance> {
        let amount = prompt_tokens.saturating_add(max_output);
        let mut accounts = self.accounts.lock();
        let account = accounts.entry(user_id).or_default();
        if account.day != day {
            *account = Account {
                day: day.to_owned(),
                settled: 0,
                reserved: 0,
            };
        }
        if limit > 0 {
            let committed = account.settled.saturating_add(account.reserved);
            if committed >= limit || committed.saturating_add(new_tokens) > limit {
                let why = if account.settled >= limit {
                    Why::UsedUp
                } else if account.settled.saturating_add(new_tokens) > limit {
                    Why::MessageTooLarge {
                        message_tokens: new_tokens,
                    }
                } else {
                    Why::HeldByTurnsInProgress
                };
                return Err(OverAllowance {
                    limit,
                    used: account.settled,
                    reset_at: reset_at(self.clock.now()),
                    why,
                });
            }
        }
        account.reserved = account.reserved.saturating_add(amount);
        Ok(Reservation {
            quota: Arc::clone(self),
            user_id,
            day: day.to_owned(),
            amount,
            done: false,
        })
    }

    /// Settled tokens and reservations of a user today, for `/usage`.
    pub fn snapshot(&self, user_id: i64, day: &str) -> Option<(u64, u64)> {
        self.accounts
            .lock()
            .get(&user_id)
            .filter(|a| a.day == day)
            .map(|a| (a.settled, a.reserved))
    }

    /// Forgets a user (deleted, or their limit changed elsewhere).
    pub fn forget(&self, user_id: i64) {
        self.accounts.lock().remove(&user_id);
    }
}

impl Reservation {
    /// Replaces the reservation with what the turn really cost. Call after the
    /// usage row is committed.
    pub fn settle(mut self, tokens: u64) {
        self.done = true;
        let mut accounts = self.quota.accounts.lock();
        if let Some(account) = accounts.get_mut(&self.user_id)
            && account.day == self.day
        {
            account.reserved = account.reserved.saturating_sub(self.amount);
            account.settled = account.settled.saturating_add(tokens);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut accounts = self.quota.accounts.lock();
        if let Some(account) = accounts.get_mut(&self.user_id)
            && account.day == self.day
        {
            account.reserved = account.reserved.saturating_sub(self.amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utc_day_is_the_date_in_utc_whatever_the_offset_it_was_read_with() {
        let late = chrono::DateTime::parse_from_rfc3339("2026-12-05T23:59:59.999+00:00").unwrap();
        assert_eq!(utc_day(late.with_timezone(&Utc)), "2026-12-05");
        let early_elsewhere =
            chrono::DateTime::parse_from_rfc3339("2027-01-01T00:30:00+02:00").unwrap();
        assert_eq!(utc_day(early_elsewhere.with_timezone(&Utc)), "2026-12-31");
    }

    #[test]
    fn parallel_reservations_stop_at_the_allowance() {
        let quota = Arc::new(Quota::default());
        quota.seed(1, "2026-12-04", 0);
        let first = quota
            .reserve(1, "2026-12-04", 100, 10, 0, 20)
            .expect("fits");
        let second = quota
            .reserve(1, "2026-12-04", 100, 10, 0, 20)
            .expect("fits");
        let third = quota
            .reserve(1, "2026-12-04", 100, 10, 0, 20)
            .expect("fits");
        let fourth = quota
            .reserve(1, "2026-12-04", 100, 10, 0, 20)
            .expect("90 of 100 leaves room");
        assert!(quota.reserve(1, "2026-12-04", 100, 10, 0, 20).is_err());
        drop(third);
        drop(fourth);
        first.settle(25);
        second.settle(25);
        assert_eq!(quota.snapshot(1, "2026-12-04"), Some((50, 0)));
    }

    #[test]
    fn a_message_larger_than_what_is_left_is_refused() {
        let quota = Arc::new(Quota::default());
        quota.seed(1, "2026-12-04", 900);
        assert!(quota.reserve(1, "2026-12-04", 1000, 300, 101, 500).is_err());
        let fits = quota
            .reserve(1, "2026-12-04", 1000, 300, 100, 500)
            .expect("100 of 100 left");
        drop(fits);
        assert!(
            quota
                .reserve(1, "2026-12-04", 1000, 120_300, 120_000, 500)
                .is_err()
        );
        assert_eq!(quota.snapshot(1, "2026-12-04"), Some((900, 0)));
    }

    #[test]
    fn a_new_day_starts_from_zero() {
        let quota = Arc::new(Quota::default());
        quota.seed(1, "2026-12-04", 100);
        assert!(quota.reserve(1, "2026-12-04", 100, 1, 0, 1).is_err());
        assert!(quota.reserve(1, "2026-12-05", 100, 1, 0, 1).is_ok());
    }

    #[test]
    fn the_reset_is_the_next_utc_midnight() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(reset_at(at).to_rfc3339(), "2026-12-05T00:00:00+00:00");
    }
}
