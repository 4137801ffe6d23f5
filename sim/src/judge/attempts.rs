//! Checks on connect attempts: their backoff, their count, their peak rate.

use crate::history::attempts::{connect_attempts, peak_connect_rate};
use crate::history::{fmt_time, Entry};
use crate::judge::{ms, Check, CheckSpec, Evidence};
use crate::scenario::selector::Selector;

use fleet_core::backoff::{BackoffPolicy, Strategy};
use fleet_core::fmt_duration as show;
use fleet_core::timeline::{AgentEvent, DisconnectReason, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Every delay before a connect attempt at or after `after` is what the agent's strategy for
/// the failure before it allows (the policy's bounds, the re-auth delay, a busy master's
/// `retry_after` or twice the policy's bounds), and is the delay the timeline shows between
/// the failure and the attempt (±1 ms).
pub(crate) const BACKOFF_FOLLOWS_POLICY: CheckSpec = CheckSpec {
    name: "backoff_follows_policy",
    fields: &["agents", "after"],
    parse: |fields| {
        Ok(Box::new(BackoffFollowsPolicy {
            agents: fields.agents()?,
            after: fields.time("after")?.unwrap_or(Duration::ZERO),
        }))
    },
};

#[derive(Debug)]
struct BackoffFollowsPolicy {
    agents: Selector,
    after: Duration,
}

impl Check for BackoffFollowsPolicy {
    fn title(&self) -> String {
        format!(
            "backoff_follows_policy {} after {}",
            self.agents,
            show(self.after)
        )
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let scenario = evidence.scenario;
        let rules = Rules {
            policy: &scenario.backoff,
            reauth_delay: scenario.reauth_delay,
            masters: scenario.topology.masters as usize,
        };
        let nodes = self.agents.nodes();
        let strict = Strictness::Scenario;
        match judge_backoff(&rules, nodes, ms(self.after), evidence.entries, strict) {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        }
    }
}

/// What the backoff judge remembers of one agent's current cycle.
#[derive(Default)]
struct Cycle {
    retries: u32,
    previous_delay: Duration,
    long_wait_ms: Option<u64>,
    redirected: bool,
    /// Redirects followed since the last registration or failure: one more than there are
    /// masters counts as a failure, and the attempt after it waits the backoff's delay.
    redirects: usize,
    /// When the last attempt or session ended (`connect_failed`, `disconnected`,
    /// `redirected`, `long_wait`): the next attempt's delay is measured from there.
    failed_at: Option<u64>,
    /// The last event was `disconnected`: a first attempt after it follows a lost session.
    lost_session: bool,
    /// Why the last attempt or session ended, and when the master said to come back.
    reason: Option<DisconnectReason>,
    retry_after_ms: Option<u64>,
    /// The decorrelated schedule's last delay is not in the timeline (a busy master's
    /// `retry_after` replaced it): its next bound is the cap.
    previous_unknown: bool,
}

/// How an agent must come back after each reason: the README's reason table, written again
/// here so the check does not take it from the code it judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reconnect {
    Never,
    NextMasterNow,
    Reauthenticate,
    ServerDelay,
    AwaitLeader,
    Backoff,
}

fn strategy(reason: DisconnectReason) -> Reconnect {
    use DisconnectReason as R;
    match reason {
        R::Local | R::NormalClose => Reconnect::Never,
        R::GoingAway => Reconnect::NextMasterNow,
        R::AuthFailed => Reconnect::Reauthenticate,
        R::Busy => Reconnect::ServerDelay,
        R::NoLeader => Reconnect::AwaitLeader,
        R::Refused
        | R::ConnectTimeout
        | R::Closed
        | R::Reset
        | R::HeartbeatTimeout
        | R::RegisterTimeout
        | R::Rejected
        | R::ProtocolError => Reconnect::Backoff,
    }
}

/// What the agents' delays must follow.
pub(crate) struct Rules<'a> {
    pub policy: &'a BackoffPolicy,
    pub reauth_delay: Duration,
    /// How many masters an agent's list holds.
    pub masters: usize,
}

/// The delays the README's formulas allow before retry `retry` (0 for the first), in whole
/// milliseconds rounded outward: `expo(n) = min(max, base·multiplier^n)`; exponential
/// `expo(n)·(1 ± jitter)`, full jitter `U(0, expo(n))`, equal jitter `expo(n)/2 + U(0,
/// expo(n)/2)`, decorrelated `min(max, U(base, 3·previous))`, constant `base·(1 ± jitter)`.
/// Written again here from the specification, so a slip in the policy's own arithmetic does
/// not pass its own check.
fn spec_bounds(policy: &BackoffPolicy, retry: u32, previous: Duration) -> RangeInclusive<Duration> {
    let (base, max) = (policy.base.as_secs_f64(), policy.max.as_secs_f64());
    let expo = (base * policy.multiplier.powi(retry.min(1024) as i32)).min(max);
    let jitter = policy.jitter;
    let (low, high) = match policy.strategy {
        Strategy::Exponential => (expo * (1.0 - jitter), expo * (1.0 + jitter)),
        Strategy::Constant => (base * (1.0 - jitter), base * (1.0 + jitter)),
        Strategy::FullJitter => (0.0, expo),
        Strategy::EqualJitter => (expo / 2.0, expo),
        Strategy::Decorrelated => (
            base.min(max),
            (3.0 * previous.as_secs_f64()).max(base).min(max),
        ),
    };
    let ms =
        |seconds: f64, round: fn(f64) -> f64| Duration::from_millis(round(seconds * 1000.0) as u64);
    ms(low, f64::floor)..=ms(high, f64::ceil)
}

impl Cycle {
    /// Notes what `event` tells of the cycle; for a connect attempt, returns its number and the
    /// delay it reports.
    fn observe(&mut self, rules: &Rules, event: &AgentEvent, t_ms: u64) -> Option<(u32, u64)> {
        match event {
            AgentEvent::LongWait { ms } => {
                // The next cycle starts after this wait; its first attempt must wait it.
                self.long_wait_ms = Some(*ms);
                self.failed_at = Some(t_ms);
            }
            AgentEvent::Redirected { .. } => {
                self.redirects += 1;
                // Past one redirect per master, a failure: the backoff's delay, not none.
                self.redirected = self.redirects <= rules.masters;
                if !self.redirected {
                    self.redirects = 0;
                }
                self.failed_at = Some(t_ms);
            }
            AgentEvent::Disconnected {
                reason,
                retry_after_ms,
            } => {
                self.redirects = 0;
                self.failed_at = Some(t_ms);
                self.lost_session = true;
                self.reason = Some(*reason);
                self.retry_after_ms = *retry_after_ms;
            }
            AgentEvent::ConnectFailed { reason } => {
                self.redirects = 0;
                self.failed_at = Some(t_ms);
                self.reason = Some(*reason);
            }
            AgentEvent::ConnectAttempt {
                attempt, delay_ms, ..
            } => return Some((*attempt, *delay_ms)),
            AgentEvent::Registered { .. } => self.redirects = 0,
            AgentEvent::Connected { .. } | AgentEvent::GaveUp { .. } => {}
        }
        None
    }

    /// The delays attempt `attempt` may have waited, and whether it is a retry on the
    /// exponential schedule. The first attempt of a cycle goes out at once (or after a
    /// `long_wait`), an attempt after `redirected` at once too, and every other attempt waits
    /// the policy's delay for the next retry of the cycle (0, 1, 2, ...).
    fn allowed(
        &mut self,
        rules: &Rules,
        attempt: u32,
        delay_ms: u64,
    ) -> (RangeInclusive<u64>, bool) {
        let policy = rules.policy;
        let how = self.reason.take().map_or(Reconnect::Backoff, strategy);
        let retry_after_ms = self.retry_after_ms.take();
        if attempt <= 1 {
            // After a long wait, that wait; after a master went away, none; after a lost
            // session, a delay drawn from `first_delay` if the policy has one; at boot, none.
            let allowed = match (self.long_wait_ms.take(), policy.first_delay) {
                (Some(wait), _) => wait..=wait,
                _ if how == Reconnect::NextMasterNow => 0..=0,
                _ if how == Reconnect::Reauthenticate => {
                    ms(rules.reauth_delay)..=ms(rules.reauth_delay)
                }
                (None, Some((low, high))) if self.lost_session => ms(low)..=ms(high),
                (None, _) => 0..=0,
            };
            *self = Cycle {
                previous_delay: policy.base,
                failed_at: self.failed_at,
                ..Cycle::default()
            };
            return (allowed, false);
        }
        if std::mem::take(&mut self.redirected) {
            return (0..=0, false);
        }
        if how == Reconnect::Reauthenticate {
            let delay = ms(rules.reauth_delay);
            return (delay..=delay, true);
        }
        if how == Reconnect::AwaitLeader {
            // The master's word, or the base delay; the schedule stays where it was.
            let delay = retry_after_ms.unwrap_or(ms(policy.base));
            return (delay..=delay, true);
        }
        let mut bounds = spec_bounds(policy, self.retries, self.previous_delay);
        if std::mem::take(&mut self.previous_unknown) {
            bounds = *bounds.start()..=policy.max.max(*bounds.end());
        }
        self.retries += 1;
        self.previous_delay = Duration::from_millis(delay_ms);
        let (low, high) = (ms(*bounds.start()), ms(*bounds.end()));
        if how != Reconnect::ServerDelay {
            return (low..=high, true);
        }
        match retry_after_ms {
            Some(after) => {
                self.previous_unknown = policy.strategy == Strategy::Decorrelated;
                (after..=after, true)
            }
            None => {
                // Twice the policy's delay: the schedule goes on from the delay it drew.
                self.previous_delay = Duration::from_micros(delay_ms * 500);
                (2 * low..=2 * high + 1, true)
            }
        }
    }
}

/// How strictly [`judge_backoff`] judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// The check a scenario names: the timeline must show each delay waited, to the ms, and
    /// some retry must have happened.
    Scenario,
    /// The rule every run is held to, whatever its faults: each delay an agent chose is one its
    /// strategy allows. (A clock fault or a pause changes how long a wait takes in true time,
    /// and a run may have no retry at all.)
    Invariant,
}

/// Checks every connect attempt of `agents` at or after `after_ms` against the policy. Returns
/// a summary, or the first violation.
pub(crate) fn judge_backoff(
    rules: &Rules,
    agents: &[String],
    after_ms: u64,
    entries: &[Entry],
    strictness: Strictness,
) -> Result<String, String> {
    let agents: BTreeSet<&str> = agents.iter().map(String::as_str).collect();
    let mut cycles: BTreeMap<&str, Cycle> = BTreeMap::new();
    let mut checked = 0u64;
    let mut longest = (0u64, 0u32);
    for entry in entries {
        // A process that ended starts over: its next attempt is a boot's.
        for node in entry
            .fault()
            .and_then(|f| f.processes_ended())
            .unwrap_or_default()
        {
            cycles.remove(node.as_str());
        }
        if !agents.contains(entry.node.as_str()) {
            continue;
        }
        let Some(Event::Agent(event)) = entry.system() else {
            continue;
        };
        let cycle = cycles.entry(entry.node.as_str()).or_default();
        let Some((attempt, delay_ms)) = cycle.observe(rules, event, entry.t_ms) else {
            continue;
        };
        let (allowed, is_retry) = cycle.allowed(rules, attempt, delay_ms);
        let failed_at = cycle.failed_at.take();
        cycle.lost_session = false;
        if entry.t_ms < after_ms {
            continue;
        }
        if strictness == Strictness::Scenario {
            waited_as_reported(entry, attempt, delay_ms, failed_at)?;
        }
        if !allowed.contains(&delay_ms) {
            return Err(format!(
                "{} attempt {attempt} at {} waited {delay_ms}ms; the policy allows {}..{}ms",
                entry.node,
                fmt_time(entry.t_ms),
                allowed.start(),
                allowed.end()
            ));
        }
        if is_retry {
            checked += 1;
            longest = longest.max((delay_ms, attempt));
        }
    }
    if checked == 0 && strictness == Strictness::Scenario {
        return Err(format!(
            "no retry after {} to check: the policy was never exercised",
            fmt_time(after_ms)
        ));
    }
    Ok(format!(
        "{checked} retry delays within bounds; longest {}ms (attempt {})",
        longest.0, longest.1
    ))
}

/// The delay an attempt reports must be the one it waited since the failure at `failed_at`,
/// as the timeline shows it (to the millisecond both are rounded to): a timer that fired early
/// would pass the bounds on its reported delay alone.
fn waited_as_reported(
    entry: &Entry,
    attempt: u32,
    delay_ms: u64,
    failed_at: Option<u64>,
) -> Result<(), String> {
    let Some(failed_at) = failed_at else {
        return Ok(());
    };
    let waited = entry.t_ms - failed_at;
    if waited.abs_diff(delay_ms) <= 1 {
        return Ok(());
    }
    Err(format!(
        "{} attempt {attempt} at {} reports a {delay_ms}ms delay but came {waited}ms after its failure at {}",
        entry.node,
        fmt_time(entry.t_ms),
        fmt_time(failed_at)
    ))
}

/// At most `max` connect attempts by the selected agents during `during`.
pub(crate) const MAX_CONNECT_ATTEMPTS: CheckSpec = CheckSpec {
    name: "max_connect_attempts",
    fields: &["agents", "during", "max"],
    parse: |fields| {
        Ok(Box::new(MaxConnectAttempts {
            agents: fields.agents()?,
            during: fields.during(false)?,
            max: fields.count("max")?.ok_or_else(|| fields.missing("max"))?.0,
        }))
    },
};

#[derive(Debug)]
struct MaxConnectAttempts {
    agents: Selector,
    during: (Duration, Duration),
    max: u64,
}

impl Check for MaxConnectAttempts {
    fn title(&self) -> String {
        let (from, to) = (show(self.during.0), show(self.during.1));
        let (agents, max) = (&self.agents, self.max);
        format!("max_connect_attempts {agents} during {from}..{to} <= {max}")
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        Some(self.count(evidence).into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let count = self.count(evidence);
        (count <= self.max, format!("{count} attempts"))
    }
}

impl MaxConnectAttempts {
    fn count(&self, evidence: &Evidence) -> u64 {
        let window = ms(self.during.0)..=ms(self.during.1);
        let agents = self.agents.members();
        connect_attempts(evidence.entries)
            .filter(|(t_ms, node)| window.contains(t_ms) && agents.contains(node))
            .count() as u64
    }
}

/// The busiest whole second of `during` has between `min` and `max` connect attempts (`min`
/// shows a storm happens, `max` that it does not).
pub(crate) const PEAK_CONNECT_RATE: CheckSpec = CheckSpec {
    name: "peak_connect_rate",
    fields: &["during", "min", "max"],
    parse: |fields| {
        let (min, max) = (fields.count("min")?, fields.count("max")?);
        if let (Some((min, at)), Some((max, _))) = (min, max) {
            if min > max {
                let message = format!("`min` ({min}) is above `max` ({max}): nothing could pass");
                return Err(fields.error(at, message));
            }
        }
        if min.is_none() && max.is_none() {
            return Err(fields.missing("min` or `max"));
        }
        Ok(Box::new(PeakConnectRate {
            during: fields.during(false)?,
            min: min.map_or(0, |(min, _)| min),
            max: max.map_or(u64::MAX, |(max, _)| max),
        }))
    },
};

#[derive(Debug)]
struct PeakConnectRate {
    during: (Duration, Duration),
    min: u64,
    max: u64,
}

impl Check for PeakConnectRate {
    fn title(&self) -> String {
        let bound = match (self.min, self.max) {
            (0, max) => format!("<= {max}/s"),
            (min, u64::MAX) => format!(">= {min}/s"),
            (min, max) => format!("in {min}..={max}/s"),
        };
        let (from, to) = (show(self.during.0), show(self.during.1));
        format!("peak_connect_rate during {from}..{to} {bound}")
    }

    fn value(&self, evidence: &Evidence) -> Option<serde_json::Value> {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let peak = peak_connect_rate(evidence.entries, from, to);
        Some(peak.map_or(0, |(count, _)| count).into())
    }

    fn judge(&self, evidence: &Evidence) -> (bool, String) {
        let (from, to) = (ms(self.during.0), ms(self.during.1));
        let (count, detail) = match peak_connect_rate(evidence.entries, from, to) {
            None => (0, "no connect attempts".to_string()),
            Some((count, at)) => (count, format!("peak {count}/s at {}", fmt_time(at))),
        };
        ((self.min..=self.max).contains(&count), detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{attempt, entry};

    fn agents() -> Vec<String> {
        vec!["agent-1".to_string()]
    }

    fn rules(policy: &BackoffPolicy) -> Rules<'_> {
        Rules {
            policy,
            reauth_delay: Duration::from_secs(5),
            masters: 1,
        }
    }

    fn lost(t: u64, reason: DisconnectReason, retry_after_ms: Option<u64>) -> Entry {
        let event = AgentEvent::Disconnected {
            reason,
            retry_after_ms,
        };
        entry(t, "agent-1", event)
    }

    /// Each row of the reason table, as the check holds the delay after it.
    #[test]
    fn the_delay_after_a_failure_follows_its_reasons_strategy() {
        let policy = BackoffPolicy::default(); // 1s ×2 ±25%
        let judge = |entries: Vec<Entry>| {
            judge_backoff(
                &rules(&policy),
                &agents(),
                0,
                &entries,
                Strictness::Scenario,
            )
        };
        let refused = |t| lost(t, DisconnectReason::AuthFailed, None);
        let reauth = vec![attempt(0, 1, 0), refused(5), attempt(5005, 2, 5000)];
        let reauth_early = vec![attempt(0, 1, 0), refused(5), attempt(1105, 2, 1100)];
        assert!(judge(reauth).is_ok());
        let error = judge(reauth_early).unwrap_err();
        assert!(error.contains("5000..5000ms"), "{error}");

        let busy = |t, after| lost(t, DisconnectReason::Busy, after);
        let told = vec![
            attempt(0, 1, 0),
            busy(5, Some(2500)),
            attempt(2505, 2, 2500),
        ];
        assert!(judge(told).is_ok());
        let own = vec![attempt(0, 1, 0), busy(5, None), attempt(2205, 2, 2200)];
        assert!(judge(own).is_ok(), "twice 0.75..1.25s");
        let own_short = vec![attempt(0, 1, 0), busy(5, None), attempt(1105, 2, 1100)];
        let error = judge(own_short).unwrap_err();
        assert!(error.contains("1500..2501ms"), "{error}");

        // No leader: the master's word, and the schedule stays where it was.
        let leaderless = |t| lost(t, DisconnectReason::NoLeader, Some(1500));
        let waited = vec![
            attempt(0, 1, 0),
            leaderless(5),
            attempt(1505, 2, 1500),
            leaderless(1510),
            attempt(3010, 3, 1500),
            lost(3015, DisconnectReason::Refused, None),
            attempt(4015, 4, 1000),
        ];
        assert!(
            judge(waited).is_ok(),
            "retry 0 still comes next: 0.75..1.25s"
        );
        let escalated = vec![attempt(0, 1, 0), leaderless(5), attempt(2005, 2, 2000)];
        let error = judge(escalated).unwrap_err();
        assert!(error.contains("1500..1500ms"), "{error}");

        let going = lost(1000, DisconnectReason::GoingAway, None);
        let away = vec![
            attempt(0, 1, 0),
            going.clone(),
            attempt(1000, 1, 0),
            attempt(2100, 2, 1100),
        ];
        assert!(judge(away).is_ok());
    }

    #[test]
    fn backoff_check_accepts_the_schedule_and_rejects_a_short_wait() {
        let policy = BackoffPolicy::default(); // 1s ×2 ±25%
        let good = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            attempt(3000, 3, 1900),
        ];
        assert!(judge_backoff(&rules(&policy), &agents(), 0, &good, Strictness::Scenario).is_ok());
        let bad = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            attempt(2000, 3, 900),
        ];
        let error =
            judge_backoff(&rules(&policy), &agents(), 0, &bad, Strictness::Scenario).unwrap_err();
        assert!(error.contains("attempt 3"), "{error}");
        assert!(error.contains("1500..2500ms"), "{error}");
    }

    #[test]
    fn an_attempt_after_a_redirect_waits_nothing_and_keeps_the_retry_count() {
        let policy = BackoffPolicy::default();
        let redirected = entry(1100, "agent-1", AgentEvent::Redirected { to: "m".into() });
        let entries = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            redirected,
            attempt(1100, 3, 0),
            attempt(3000, 4, 1900),
        ];
        assert!(judge_backoff(
            &rules(&policy),
            &agents(),
            0,
            &entries,
            Strictness::Scenario
        )
        .is_ok());
    }

    #[test]
    fn a_long_wait_is_the_delay_of_the_next_cycles_first_attempt() {
        let policy = BackoffPolicy::default();
        let waited = entry(2000, "agent-1", AgentEvent::LongWait { ms: 60_000 });
        let entries = vec![
            attempt(0, 1, 0),
            attempt(1100, 2, 1100),
            waited.clone(),
            attempt(62_000, 1, 60_000),
            attempt(63_100, 2, 1100),
        ];
        assert!(judge_backoff(
            &rules(&policy),
            &agents(),
            0,
            &entries,
            Strictness::Scenario
        )
        .is_ok());
        let early = vec![waited, attempt(3000, 1, 1000), attempt(4100, 2, 1100)];
        let error =
            judge_backoff(&rules(&policy), &agents(), 0, &early, Strictness::Scenario).unwrap_err();
        assert!(error.contains("60000..60000ms"), "{error}");
    }

    #[test]
    fn an_attempt_must_wait_the_delay_it_reports_as_the_timeline_measures_it() {
        let policy = BackoffPolicy::default();
        let failed = |t| {
            let reason = fleet_core::timeline::DisconnectReason::Refused;
            entry(t, "agent-1", AgentEvent::ConnectFailed { reason })
        };
        let kept = vec![attempt(0, 1, 0), failed(3), attempt(1104, 2, 1100)];
        assert!(judge_backoff(&rules(&policy), &agents(), 0, &kept, Strictness::Scenario).is_ok());
        // It reports 1100ms, within the policy's bounds, but its timer fired after 500ms.
        let early = vec![attempt(0, 1, 0), failed(3), attempt(503, 2, 1100)];
        let error =
            judge_backoff(&rules(&policy), &agents(), 0, &early, Strictness::Scenario).unwrap_err();
        assert!(
            error.contains("reports a 1100ms delay but came 500ms after its failure"),
            "{error}"
        );
    }

    #[test]
    fn the_first_attempt_after_a_lost_session_may_wait_the_first_delay_and_no_more() {
        let policy = BackoffPolicy {
            first_delay: Some((Duration::ZERO, Duration::from_secs(5))),
            ..BackoffPolicy::default()
        };
        let lost = |t| {
            let reason = fleet_core::timeline::DisconnectReason::Closed;
            lost(t, reason, None)
        };
        let spread = vec![
            attempt(0, 1, 0),
            lost(10),
            attempt(3010, 1, 3000),
            attempt(4110, 2, 1100),
        ];
        assert!(
            judge_backoff(&rules(&policy), &agents(), 0, &spread, Strictness::Scenario).is_ok()
        );
        let late = vec![
            attempt(0, 1, 0),
            lost(10),
            attempt(6010, 1, 6000),
            attempt(7110, 2, 1100),
        ];
        let error =
            judge_backoff(&rules(&policy), &agents(), 0, &late, Strictness::Scenario).unwrap_err();
        assert!(error.contains("0..5000ms"), "{error}");
    }

    #[test]
    fn backoff_check_with_nothing_to_check_fails() {
        let entries = vec![attempt(0, 1, 0)];
        assert!(judge_backoff(
            &rules(&BackoffPolicy::default()),
            &agents(),
            0,
            &entries,
            Strictness::Scenario
        )
        .is_err());
    }
}
