//! How long an agent waits before its next connection attempt.
//!
//! A [`BackoffPolicy`] is pure configuration; a [`Backoff`] counts failures and draws delays from
//! an RNG the caller passes in, so the same seed always gives the same schedule. Every delay is
//! a whole number of milliseconds, which is what the trace records and what
//! [`BackoffPolicy::bounds`] checks against.

use crate::bugs::{Bug, Bugs};
use rand::Rng;
use std::time::Duration;

/// How a delay grows with the number of failed attempts. `expo(n) = min(max, base·multiplier^n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `expo(n)` with proportional jitter: `expo(n)·(1 + U(-jitter, +jitter))`.
    Exponential,
    /// `U(0, expo(n))` (AWS "full jitter").
    FullJitter,
    /// `expo(n)/2 + U(0, expo(n)/2)` (AWS "equal jitter").
    EqualJitter,
    /// `min(max, U(base, 3·previous))`, with `previous` starting at `base`.
    Decorrelated,
    /// `base·(1 + U(-jitter, +jitter))` every time.
    Constant,
}

impl Strategy {
    pub const NAMES: [&'static str; 5] = [
        "exponential",
        "full-jitter",
        "equal-jitter",
        "decorrelated",
        "constant",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Exponential => "exponential",
            Strategy::FullJitter => "full-jitter",
            Strategy::EqualJitter => "equal-jitter",
            Strategy::Decorrelated => "decorrelated",
            Strategy::Constant => "constant",
        }
    }

    pub fn from_name(name: &str) -> Option<Strategy> {
        Some(match name {
            "exponential" => Strategy::Exponential,
            "full-jitter" => Strategy::FullJitter,
            "equal-jitter" => Strategy::EqualJitter,
            "decorrelated" => Strategy::Decorrelated,
            "constant" => Strategy::Constant,
            _ => return None,
        })
    }
}

/// What happens once the first attempt and `max_retries` retries have all failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenExhausted {
    /// Stop trying for good.
    GiveUp,
    /// Wait this long, then start over with a fresh attempt count.
    LongWait(Duration),
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub strategy: Strategy,
    pub base: Duration,
    pub multiplier: f64,
    pub max: Duration,
    /// Proportional jitter for `Exponential` and `Constant`, in `[0, 1]`.
    pub jitter: f64,
    /// Retries after a failed first attempt before `when_exhausted` applies, so
    /// `max_retries + 1` attempts in all (the reconnection design's ConnectWithRetry); 0 means
    /// unlimited.
    pub max_retries: u32,
    pub when_exhausted: WhenExhausted,
    /// The first attempt after losing a registered session waits a delay drawn from this
    /// range (whole milliseconds, both ends included); `None` goes at once. Spreads a fleet
    /// that lost its master in the same instant.
    pub first_delay: Option<(Duration, Duration)>,
}

impl Default for BackoffPolicy {
    /// base 1s, ×2, cap 30s, ±25%, unlimited retries.
    fn default() -> Self {
        BackoffPolicy {
            strategy: Strategy::Exponential,
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.25,
            max_retries: 0,
            when_exhausted: WhenExhausted::GiveUp,
            first_delay: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Retry(Duration),
    GiveUp,
    LongWait(Duration),
}

impl BackoffPolicy {
    /// Checks the policy's own consistency; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.base.is_zero() {
            return Err("base must be greater than 0".into());
        }
        if self.max < self.base {
            return Err(format!(
                "max ({:?}) must be at least base ({:?})",
                self.max, self.base
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "multiplier must be a number >= 1.0, got {}",
                self.multiplier
            ));
        }
        if let Some((low, high)) = self.first_delay {
            if low > high {
                return Err(format!(
                    "first_delay's start ({low:?}) must not be after its end ({high:?})"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "jitter must be between 0.0 and 1.0, got {}",
                self.jitter
            ));
        }
        Ok(())
    }

    /// `min(max, base·multiplier^retry)` in seconds.
    fn expo_secs(&self, retry: u32) -> f64 {
        let exponent = retry.min(1024) as i32;
        (self.base.as_secs_f64() * self.multiplier.powi(exponent)).min(self.max.as_secs_f64())
    }

    /// The range `[low, high]` (seconds) a delay is drawn from, before rounding.
    fn range_secs(&self, retry: u32, previous: Duration) -> (f64, f64) {
        let expo = self.expo_secs(retry);
        match self.strategy {
            Strategy::Exponential => (expo * (1.0 - self.jitter), expo * (1.0 + self.jitter)),
            Strategy::Constant => {
                let base = self.base.as_secs_f64();
                (base * (1.0 - self.jitter), base * (1.0 + self.jitter))
            }
            Strategy::FullJitter => (0.0, expo),
            Strategy::EqualJitter => (expo / 2.0, expo),
            Strategy::Decorrelated => {
                let max = self.max.as_secs_f64();
                let base = self.base.as_secs_f64();
                let high = (3.0 * previous.as_secs_f64()).max(base);
                (base.min(max), high.min(max))
            }
        }
    }

    /// Draws the delay before retry number `retry` (0 for the first retry). `previous` is the
    /// delay drawn before, or `base` for the first retry; only `Decorrelated` uses it.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &mut impl Rng) -> Duration {
        let (low, high) = self.range_secs(retry, previous);
        let unit: f64 = rng.gen();
        let millis = ((low + (high - low) * unit) * 1000.0).round();
        let delay = Duration::from_millis(millis as u64);
        debug_assert!(self.bounds(retry, previous).contains(&delay));
        delay
    }

    /// Every delay [`delay`](Self::delay) can return for these arguments, rounded outward to
    /// whole milliseconds.
    pub fn bounds(&self, retry: u32, previous: Duration) -> std::ops::RangeInclusive<Duration> {
        let (low, high) = self.range_secs(retry, previous);
        let low = Duration::from_millis((low * 1000.0).floor() as u64);
        let high = Duration::from_millis((high * 1000.0).ceil() as u64);
        low..=high
    }

    /// A one-line human description, for the run header.
    pub fn describe(&self) -> String {
        let retries = match (self.max_retries, self.when_exhausted) {
            (0, _) => "retries unlimited".to_string(),
            (n, WhenExhausted::GiveUp) => format!("give up after {n} retries"),
            (n, WhenExhausted::LongWait(wait)) => {
                format!("after {n} retries wait {}", crate::fmt_duration(wait))
            }
        };
        let jitter = match self.strategy {
            Strategy::Exponential | Strategy::Constant => {
                format!(" jitter ±{}%", (self.jitter * 100.0).round())
            }
            _ => String::new(),
        };
        let first = match self.first_delay {
            Some((low, high)) => format!(
                " · first attempt after {}..{}",
                crate::fmt_duration(low),
                crate::fmt_duration(high)
            ),
            None => String::new(),
        };
        format!(
            "{} base {} ×{} max {}{} · {}{first}",
            self.strategy.name(),
            crate::fmt_duration(self.base),
            self.multiplier,
            crate::fmt_duration(self.max),
            jitter,
            retries
        )
    }
}

/// A policy plus the count of failed attempts since the last success.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    previous: Duration,
    bugs: Bugs,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        let previous = policy.base;
        Backoff {
            policy,
            failures: 0,
            previous,
            bugs: Bugs::NONE,
        }
    }

    /// The same, with these bugs planted (see [`crate::bugs`]).
    pub fn with_bugs(self, bugs: Bugs) -> Self {
        Backoff { bugs, ..self }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Failed attempts since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt and says what to do next.
    #[must_use]
    pub fn handle_failure(&mut self, rng: &mut impl Rng) -> Next {
        self.failures += 1;
        // The first attempt and `max_retries` retries: exhausted once they all failed.
        if self.policy.max_retries > 0 && self.failures > self.policy.max_retries {
            return match self.policy.when_exhausted {
                WhenExhausted::GiveUp => Next::GiveUp,
                WhenExhausted::LongWait(wait) => {
                    self.reset();
                    Next::LongWait(wait)
                }
            };
        }
        let mut retry = self.failures - 1;
        if self.bugs.has(Bug::BackoffExponentOffByOne) {
            retry = self.failures;
        }
        let delay = self.policy.delay(retry, self.previous, rng);
        self.previous = delay;
        Next::Retry(delay)
    }

    /// The delay before the first attempt after losing a registered session: drawn from
    /// `first_delay`, or none.
    pub fn first_delay(&self, rng: &mut impl Rng) -> Duration {
        match self.policy.first_delay {
            Some((low, high)) => {
                let (low, high) = (low.as_millis() as u64, high.as_millis() as u64);
                Duration::from_millis(rng.gen_range(low..=high))
            }
            None => Duration::ZERO,
        }
    }

    /// A successful connection: the next failure starts the schedule from the beginning.
    pub fn reset(&mut self) {
        if !self.bugs.has(Bug::BackoffNotReset) {
            self.failures = 0;
        }
        self.previous = self.policy.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_oneof, proptest, Just, Strategy as _};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn policy(strategy: Strategy) -> BackoffPolicy {
        BackoffPolicy {
            strategy,
            ..BackoffPolicy::default()
        }
    }

    #[test]
    fn exponential_without_jitter_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(BackoffPolicy {
            jitter: 0.0,
            ..policy(Strategy::Exponential)
        });
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let delays: Vec<u64> = (0..7)
            .map(|_| match backoff.handle_failure(&mut rng) {
                Next::Retry(d) => d.as_secs(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn reset_starts_the_schedule_over() {
        let mut backoff = Backoff::new(BackoffPolicy {
            jitter: 0.0,
            ..policy(Strategy::Exponential)
        });
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..4 {
            let _ = backoff.handle_failure(&mut rng);
        }
        backoff.reset();
        assert_eq!(
            backoff.handle_failure(&mut rng),
            Next::Retry(Duration::from_secs(1))
        );
    }

    #[test]
    fn max_retries_gives_up_or_waits_long() {
        let give_up = BackoffPolicy {
            max_retries: 3,
            ..BackoffPolicy::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut backoff = Backoff::new(give_up.clone());
        for retry in 1..=3 {
            let next = backoff.handle_failure(&mut rng);
            assert!(matches!(next, Next::Retry(_)), "retry {retry}: {next:?}");
        }
        assert_eq!(backoff.handle_failure(&mut rng), Next::GiveUp);
        assert_eq!(backoff.failures(), 4, "the first attempt and 3 retries");

        let wait = Duration::from_secs(900);
        let mut backoff = Backoff::new(BackoffPolicy {
            when_exhausted: WhenExhausted::LongWait(wait),
            ..give_up
        });
        for _ in 0..3 {
            let _ = backoff.handle_failure(&mut rng);
        }
        assert_eq!(backoff.handle_failure(&mut rng), Next::LongWait(wait));
        assert_eq!(backoff.failures(), 0, "a long wait starts a new cycle");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_does_not() {
        let schedule = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut backoff = Backoff::new(BackoffPolicy::default());
            (0..10)
                .map(|_| backoff.handle_failure(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(3), schedule(3));
        assert_ne!(schedule(3), schedule(4));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = BackoffPolicy {
            max: Duration::from_millis(10),
            ..BackoffPolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("max"));
        let bad = BackoffPolicy {
            jitter: 1.5,
            ..BackoffPolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("jitter"));
    }

    fn any_strategy() -> impl proptest::strategy::Strategy<Value = super::Strategy> {
        prop_oneof![
            Just(Strategy::Exponential),
            Just(Strategy::FullJitter),
            Just(Strategy::EqualJitter),
            Just(Strategy::Decorrelated),
            Just(Strategy::Constant),
        ]
    }

    fn any_policy() -> impl proptest::strategy::Strategy<Value = BackoffPolicy> {
        (
            any_strategy(),
            1u64..5_000,
            1.0f64..4.0,
            0u64..120_000,
            0.0f64..=1.0,
        )
            .prop_map(
                |(strategy, base_ms, multiplier, extra_ms, jitter)| BackoffPolicy {
                    strategy,
                    base: Duration::from_millis(base_ms),
                    multiplier,
                    max: Duration::from_millis(base_ms + extra_ms),
                    jitter,
                    max_retries: 0,
                    when_exhausted: WhenExhausted::GiveUp,
                    first_delay: None,
                },
            )
    }

    proptest! {
        /// Every delay of every strategy stays inside that strategy's documented range.
        #[test]
        fn every_delay_stays_inside_its_strategy_bounds(
            policy in any_policy(),
            seed in any::<u64>(),
            retries in 1usize..40,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut backoff = Backoff::new(policy.clone());
            let mut previous = policy.base;
            for retry in 0..retries {
                let Next::Retry(delay) = backoff.handle_failure(&mut rng) else {
                    panic!("unlimited retries never stop");
                };
                // Delays are whole milliseconds; converting through seconds would add float error.
                let ms = delay.as_millis() as f64;
                let expo = (policy.base.as_secs_f64() * policy.multiplier.powi(retry as i32))
                    .min(policy.max.as_secs_f64()) * 1000.0;
                let max = policy.max.as_secs_f64() * 1000.0;
                let base = policy.base.as_secs_f64() * 1000.0;
                let (low, high) = match policy.strategy {
                    Strategy::Exponential => (expo * (1.0 - policy.jitter), expo * (1.0 + policy.jitter)),
                    Strategy::Constant => (base * (1.0 - policy.jitter), base * (1.0 + policy.jitter)),
                    Strategy::FullJitter => (0.0, expo),
                    Strategy::EqualJitter => (expo / 2.0, expo),
                    Strategy::Decorrelated => (base, (3.0 * previous.as_secs_f64() * 1000.0).min(max).max(base)),
                };
                prop_assert!(ms >= low.floor() && ms <= high.ceil(),
                    "{:?} retry {retry}: {ms}ms outside [{low}, {high}]", policy.strategy);
                prop_assert!(policy.bounds(retry as u32, previous).contains(&delay));
                if policy.strategy != Strategy::Exponential && policy.strategy != Strategy::Constant {
                    prop_assert!(delay <= policy.max, "{:?} exceeded max", policy.strategy);
                }
                previous = delay;
            }
        }
    }
}
