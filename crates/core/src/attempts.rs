//! How a master protects itself from reconnecting agents: an admission limit on registrations
//! per second, and the reconnection design's attempt manager, which keeps a record per agent
//! instance of its disconnection and failed attempts and can enforce a server-side backoff and
//! retry limit (ShouldReconnect). Pure: every call takes `now`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Registrations admitted per second: a token bucket whose burst equals its rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admission {
    pub capacity: u32,
    /// Told to agents refused for capacity; `None` leaves the wait to each agent's strategy.
    pub retry_after: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    pub fn new(capacity: u32) -> TokenBucket {
        debug_assert!(capacity > 0);
        TokenBucket {
            capacity: f64::from(capacity),
            tokens: f64::from(capacity),
            refilled: None,
        }
    }

    /// Takes a token if one is left; refills at `capacity` per second up to `capacity`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.refilled {
            let gained = now.saturating_duration_since(last).as_secs_f64() * self.capacity;
            self.tokens = (self.tokens + gained).min(self.capacity);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The attempt manager's settings. Records are always kept (an operator reads them);
/// `enforce` makes the master refuse agents that come back too soon or too often.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptPolicy {
    pub enforce: bool,
    /// The server-side backoff after `n` failed attempts is `base × 2^n`, at most `max`.
    pub base: Duration,
    pub max: Duration,
    /// Refused for good (until the record expires, or an operator forces or cleans it) after
    /// this many failed attempts.
    pub max_retries: u32,
    /// A record untouched this long is dropped.
    pub expiry: Duration,
}

impl Default for AttemptPolicy {
    /// The reconnection design's: 1s ×2 to 30s, 10 retries, records kept 24h; not enforced.
    fn default() -> Self {
        AttemptPolicy {
            enforce: false,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_retries: 10,
            expiry: Duration::from_secs(24 * 3600),
        }
    }
}

impl AttemptPolicy {
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// One agent instance's reconnection, since its session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub agent: String,
    /// Failed registrations since the disconnection.
    pub attempts: u32,
    pub last_attempt: Instant,
    pub reason: String,
}

/// How far apart two clocks' rates may be, as a fraction: each within 5% of true time (lease
/// mode's default `max_drift`), so an agent's wait may pass up to 10% sooner than the master's.
/// A retry that comes that much early is on time, or an agent whose clock runs fast would be
/// refused as too soon for ever.
pub const RATE_TOLERANCE: f64 = 0.1;

/// Why the attempt manager refuses a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// Too soon: come back after this long.
    TooSoon(Duration),
    /// The retries the master allows are used up.
    RetryLimit,
}

#[derive(Clone, Debug, Default)]
pub struct AttemptManager {
    policy: AttemptPolicy,
    /// By instance id.
    records: BTreeMap<String, AttemptRecord>,
}

impl AttemptManager {
    pub fn new(policy: AttemptPolicy) -> AttemptManager {
        AttemptManager {
            policy,
            records: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> &AttemptPolicy {
        &self.policy
    }

    fn expired(&self, record: &AttemptRecord, now: Instant) -> bool {
        now.saturating_duration_since(record.last_attempt) > self.policy.expiry
    }

    /// `instance`'s session ended: a new record, counting from now.
    pub fn record_disconnection(
        &mut self,
        instance: &str,
        agent: &str,
        now: Instant,
        reason: &str,
    ) {
        let record = AttemptRecord {
            agent: agent.to_string(),
            attempts: 0,
            last_attempt: now,
            reason: reason.to_string(),
        };
        self.records.insert(instance.to_string(), record);
    }

    /// ShouldReconnect: whether `instance` may register now. No record (or an expired one), or
    /// no enforcement: yes.
    pub fn should_reconnect(&self, instance: &str, now: Instant) -> Result<(), Refuse> {
        let Some(record) = self.records.get(instance) else {
            return Ok(());
        };
        if !self.policy.enforce || self.expired(record, now) {
            return Ok(());
        }
        if record.attempts >= self.policy.max_retries {
            return Err(Refuse::RetryLimit);
        }
        // On time from a little before the wait is over by this master's clock: the agent
        // counts the wait on its own clock, which may run faster.
        let wait = self.policy.backoff(record.attempts);
        let ready = record.last_attempt + wait.mul_f64(1.0 - RATE_TOLERANCE);
        match ready.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(Refuse::TooSoon(wait)),
            _ => Ok(()),
        }
    }

    /// A registration by `instance` succeeded (its record goes) or failed (counted).
    pub fn record_attempt(&mut self, instance: &str, now: Instant, succeeded: bool) {
        if succeeded {
            self.records.remove(instance);
        } else if let Some(record) = self.records.get_mut(instance) {
            record.attempts += 1;
            record.last_attempt = now;
        }
    }

    /// How long `instance` must wait from `now` by its record, as counted so far.
    pub fn wait(&self, instance: &str, now: Instant) -> Option<Duration> {
        let record = self.records.get(instance)?;
        let ready = record.last_attempt + self.policy.backoff(record.attempts);
        Some(ready.saturating_duration_since(now))
    }

    /// The newest record of `agent` (any instance), and when it may next come back.
    pub fn status(&self, agent: &str) -> Option<(&AttemptRecord, Instant)> {
        (self.records.values())
            .filter(|record| record.agent == agent)
            .max_by_key(|record| record.last_attempt)
            .map(|record| {
                let next = record.last_attempt + self.policy.backoff(record.attempts);
                (record, next)
            })
    }

    /// The agents with a live record, by name.
    pub fn active(&self, now: Instant) -> Vec<String> {
        let mut agents: Vec<String> = (self.records.values())
            .filter(|record| !self.expired(record, now))
            .map(|record| record.agent.clone())
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }

    /// Drops expired records; returns how many.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let before = self.records.len();
        let expiry = self.policy.expiry;
        (self.records)
            .retain(|_, record| now.saturating_duration_since(record.last_attempt) <= expiry);
        before - self.records.len()
    }

    /// Drops every record of `agent`: an operator let it back at once.
    pub fn forget(&mut self, agent: &str) {
        self.records.retain(|_, record| record.agent != agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforced() -> AttemptManager {
        AttemptManager::new(AttemptPolicy {
            enforce: true,
            max_retries: 3,
            ..AttemptPolicy::default()
        })
    }

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(20);
        assert_eq!((0..25).filter(|_| bucket.try_take(t0)).count(), 20);
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| bucket.try_take(later)).count(), 10);
        let idle = later + Duration::from_secs(60);
        assert_eq!(
            (0..25).filter(|_| bucket.try_take(idle)).count(),
            20,
            "burst, not more"
        );
    }

    #[test]
    fn should_reconnect_enforces_the_backoff_then_the_limit() {
        let t0 = Instant::now();
        let mut manager = enforced();
        assert_eq!(manager.should_reconnect("a-1", t0), Ok(()), "no record");
        manager.record_disconnection("a-1", "a", t0, "connection closed");
        let soon = t0 + Duration::from_millis(300);
        // The 1s wait, less the 10% a fast clock may gain: 900ms.
        assert_eq!(
            manager.should_reconnect("a-1", soon),
            Err(Refuse::TooSoon(Duration::from_millis(600)))
        );
        manager.record_attempt("a-1", soon, false);
        // One failure: 2s from it, on time from 1.8s on.
        let ready = soon + Duration::from_millis(1800);
        assert!(manager
            .should_reconnect("a-1", ready - Duration::from_millis(1))
            .is_err());
        assert_eq!(manager.should_reconnect("a-1", ready), Ok(()));
        manager.record_attempt("a-1", ready, false);
        manager.record_attempt("a-1", ready, false);
        let much_later = ready + Duration::from_secs(3600);
        assert_eq!(
            manager.should_reconnect("a-1", much_later),
            Err(Refuse::RetryLimit)
        );
        let (record, _) = manager.status("a").unwrap();
        assert_eq!(record.attempts, 3);
        manager.record_attempt("a-1", much_later, true);
        assert!(manager.status("a").is_none(), "success clears the record");
    }

    #[test]
    fn records_expire_and_cleanup_drops_them() {
        let t0 = Instant::now();
        let mut manager = enforced();
        manager.record_disconnection("a-1", "a", t0, "closed");
        manager.record_disconnection("b-1", "b", t0 + Duration::from_secs(3600), "closed");
        for _ in 0..3 {
            manager.record_attempt("a-1", t0, false);
        }
        let day = t0 + Duration::from_secs(24 * 3600 + 1);
        assert_eq!(manager.should_reconnect("a-1", day), Ok(()), "expired");
        assert_eq!(manager.active(day), vec!["b".to_string()]);
        assert_eq!(manager.cleanup(day), 1);
        assert!(manager.status("a").is_none());
    }

    #[test]
    fn unenforced_records_refuse_nobody() {
        let t0 = Instant::now();
        let mut manager = AttemptManager::new(AttemptPolicy::default());
        manager.record_disconnection("a-1", "a", t0, "closed");
        assert_eq!(manager.should_reconnect("a-1", t0), Ok(()));
        assert_eq!(manager.active(t0), vec!["a".to_string()]);
    }
}
