//! Login throttling: failed logins are counted per user name and per client
//! address over a sliding window; past the limit, further attempts are
//! refused (without checking the password) until the oldest failure ages out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures are tolerated, and over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    pub per_user: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            per_user: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Failed-login bookkeeping shared by all requests.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    limits: ThrottleLimits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn user_key(user: &str) -> String {
    format!("user:{}", user.to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        LoginThrottle {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when a login for `user` from `address` must not be tried now.
    pub fn check(&self, user: &str, address: &str, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.limits.window;
        [
            (user_key(user), self.limits.per_user),
            (address_key(address), self.limits.per_address),
        ]
        .into_iter()
        .filter_map(|(key, limit)| {
            let times = failures.get_mut(&key)?;
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > window)
            {
                times.pop_front();
            }
            (times.len() >= limit).then(|| {
                let oldest = times.front().copied().unwrap_or(now);
                window.saturating_sub(now.saturating_duration_since(oldest))
            })
        })
        .max()
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, address: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in [user_key(user), address_key(address)] {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            // Bounded: more than the larger limit changes nothing.
            while times.len() > self.limits.per_address.max(self.limits.per_user) {
                times.pop_front();
            }
        }
        // Keys of names nobody uses would otherwise pile up.
        if failures.len() > 100_000 {
            let window = self.limits.window;
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) <= window)
            });
        }
    }

    /// Forgets a user's failures after a successful login.
    pub fn succeeded(&self, user: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&user_key(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_locked_after_the_limit_then_freed_by_time() {
        let throttle = LoginThrottle::new(ThrottleLimits {
            per_user: 3,
            per_address: 10,
            window: Duration::from_secs(60),
        });
        let start = Instant::now();
        for i in 0..3 {
            assert!(
                throttle.check("ana", "10.0.0.1", start).is_none(),
                "try {i}"
            );
            throttle.failed("ana", "10.0.0.1", start);
        }
        let wait = throttle.check("ANA", "10.0.0.9", start).expect("locked");
        assert!(wait <= Duration::from_secs(60));
        // Another user from the same address is not locked yet.
        assert!(throttle.check("bo", "10.0.0.1", start).is_none());
        assert!(
            throttle
                .check("ana", "10.0.0.1", start + Duration::from_secs(61))
                .is_none()
        );
    }

    #[test]
    fn an_address_spraying_many_names_is_locked() {
        let throttle = LoginThrottle::new(ThrottleLimits {
            per_user: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        });
        let now = Instant::now();
        for i in 0..5 {
            throttle.failed(&format!("user{i}"), "192.0.2.7", now);
        }
        assert!(throttle.check("someone-else", "192.0.2.7", now).is_some());
        assert!(throttle.check("someone-else", "192.0.2.8", now).is_none());
    }
}
