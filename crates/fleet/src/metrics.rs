//! What `/metrics` counts, from the timeline events the process emits (the log lines' events):
//! every event by kind, and the operators' named series, each derived from the events that
//! define it.

use fleet_core::timeline::SingleEvent;
use fleet_core::timeline::{AgentEvent, CommandEvent, Event, LeaseEvent, MasterEvent, RaftEvent};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Cheap to clone; every clone is the same.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    /// Every event, by kind.
    events: BTreeMap<&'static str, u64>,
    /// `(series, label value)`: the labelled counters.
    labelled: BTreeMap<(&'static str, String), u64>,
    /// An agent's reason for its next connect attempt: why the last connection ended.
    next_attempt: Option<String>,
    /// Since when this master has known no leader, if it knows none now.
    leaderless_since: Option<Instant>,
    leader: Option<String>,
    leader_changes: u64,
    /// The last leaderless spell's length, from losing a leader to knowing one again.
    last_failover_ms: Option<u64>,
}

/// What an event says of the leader: lost (this node knows none now), or known.
enum LeaderNews {
    Lost,
    Known(String),
}

fn leader_news(event: &Event, me: &str) -> Option<LeaderNews> {
    let news = match event {
        Event::Raft(RaftEvent::BecameLeader { .. }) => LeaderNews::Known(me.to_string()),
        Event::Raft(RaftEvent::BecameFollower { leader, .. }) => LeaderNews::Known(leader.clone()),
        Event::Raft(
            RaftEvent::SteppedDown { .. }
            | RaftEvent::PreVoteStarted { .. }
            | RaftEvent::ElectionStarted { .. },
        ) => LeaderNews::Lost,
        Event::Lease(LeaseEvent::LeaseAcquired { .. }) => LeaderNews::Known(me.to_string()),
        Event::Lease(LeaseEvent::LeaseHolderSeen { holder, .. }) => {
            LeaderNews::Known(holder.clone())
        }
        Event::Lease(LeaseEvent::LeaseLost { .. }) => LeaderNews::Lost,
        Event::Single(SingleEvent::LeadingAlone {}) => LeaderNews::Known(me.to_string()),
        _ => return None,
    };
    Some(news)
}

/// The labelled series an event counts in, and its label.
fn series(event: &Event) -> Option<(&'static str, String)> {
    let (name, label) = match event {
        Event::Master(MasterEvent::RegistrationRefused { refusal, .. }) => {
            ("registrations_refused", refusal.clone())
        }
        Event::Command(CommandEvent::CommandQueued { .. }) => ("commands", "queued".into()),
        Event::Command(CommandEvent::CommandSent { .. }) => ("commands", "sent".into()),
        Event::Command(CommandEvent::CommandResult { outcome, .. }) => {
            ("commands", format!("completed_{outcome}"))
        }
        Event::Command(CommandEvent::CommandLost { .. }) => ("commands", "lost".into()),
        _ => return None,
    };
    Some((name, label))
}

impl Metrics {
    /// Counts `event`, emitted by node `me` at `now`.
    pub fn count(&self, me: &str, event: &Event, now: Instant) {
        let mut counts = fleet_node::sync::lock(&self.0);
        *counts.events.entry(event.kind()).or_default() += 1;
        if let Some(key) = series(event) {
            *counts.labelled.entry(key).or_default() += 1;
        }
        match event {
            Event::Agent(AgentEvent::Disconnected { reason, .. })
            | Event::Agent(AgentEvent::ConnectFailed { reason }) => {
                counts.next_attempt = Some(reason.as_str().to_string());
            }
            Event::Agent(AgentEvent::Redirected { .. }) => {
                counts.next_attempt = Some("redirected".to_string());
            }
            Event::Agent(AgentEvent::ConnectAttempt { .. }) => {
                let reason = counts.next_attempt.take().unwrap_or_else(|| "start".into());
                *counts
                    .labelled
                    .entry(("connect_attempts", reason))
                    .or_default() += 1;
            }
            _ => {}
        }
        match leader_news(event, me) {
            Some(LeaderNews::Lost) => {
                counts.leaderless_since.get_or_insert(now);
                counts.leader = None;
            }
            Some(LeaderNews::Known(leader)) => {
                if let Some(since) = counts.leaderless_since.take() {
                    counts.last_failover_ms = Some(now.duration_since(since).as_millis() as u64);
                }
                if counts.leader.as_ref() != Some(&leader) {
                    counts.leader_changes += 1;
                    counts.leader = Some(leader);
                }
            }
            None => {}
        }
    }

    /// How many `kind` events so far.
    pub fn events(&self, kind: &str) -> u64 {
        fleet_node::sync::lock(&self.0)
            .events
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    /// The counters in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        let counts = fleet_node::sync::lock(&self.0);
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = write!(
                text,
                "# HELP fleet_{name} {help}\n# TYPE fleet_{name} {kind}\n"
            );
        };
        family(
            "events_total",
            "counter",
            "Timeline events this process emitted, by kind.",
        );
        for (kind, count) in &counts.events {
            let _ = writeln!(text, "fleet_events_total{{kind=\"{kind}\"}} {count}");
        }
        for (series, label, help) in [
            (
                "connect_attempts",
                "reason",
                "An agent's connect attempts, by why the last connection ended (start: its first; redirected: a follower named the leader).",
            ),
            (
                "registrations_refused",
                "refusal",
                "Registrations this master refused, by refusal.",
            ),
            (
                "commands",
                "state",
                "Commands by what happened to them here: queued, sent, completed_OUTCOME, lost.",
            ),
        ] {
            let rows: Vec<(&String, &u64)> = (counts.labelled.iter())
                .filter(|((name, _), _)| *name == series)
                .map(|((_, value), count)| (value, count))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = write!(
                text,
                "# HELP fleet_{series}_total {help}\n# TYPE fleet_{series}_total counter\n"
            );
            for (value, count) in rows {
                let _ = writeln!(text, "fleet_{series}_total{{{label}=\"{value}\"}} {count}");
            }
        }
        let _ = write!(
            text,
            "# HELP fleet_leader_changes_total Times the leader this node knows changed.\n\
             # TYPE fleet_leader_changes_total counter\nfleet_leader_changes_total {}\n",
            counts.leader_changes
        );
        if let Some(ms) = counts.last_failover_ms {
            let _ = write!(
                text,
                "# HELP fleet_failover_seconds The last spell without a known leader, from losing one to knowing the next.\n\
                 # TYPE fleet_failover_seconds gauge\nfleet_failover_seconds {:.3}\n",
                ms as f64 / 1000.0
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::timeline::DisconnectReason;
    use std::time::Duration;

    #[test]
    fn named_series_come_from_the_events_that_define_them() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let attempt = AgentEvent::ConnectAttempt {
            attempt: 1,
            delay_ms: 0,
            target: "master-1".into(),
        };
        metrics.count("agent-1", &attempt.clone().into(), at(0));
        let lost = AgentEvent::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout,
            retry_after_ms: None,
        };
        metrics.count("agent-1", &lost.into(), at(1));
        metrics.count("agent-1", &attempt.into(), at(2));
        let follower = RaftEvent::BecameFollower {
            term: 1,
            leader: "master-2".into(),
        };
        metrics.count("master-1", &follower.into(), at(10));
        metrics.count(
            "master-1",
            &RaftEvent::PreVoteStarted { term: 2 }.into(),
            at(100),
        );
        metrics.count(
            "master-1",
            &RaftEvent::ElectionStarted { term: 2 }.into(),
            at(150),
        );
        metrics.count(
            "master-1",
            &RaftEvent::BecameLeader { term: 2, votes: 2 }.into(),
            at(1_350),
        );
        let text = metrics.prometheus();
        for line in [
            "fleet_connect_attempts_total{reason=\"start\"} 1",
            "fleet_connect_attempts_total{reason=\"heartbeat_timeout\"} 1",
            "fleet_events_total{kind=\"connect_attempt\"} 2",
            "fleet_leader_changes_total 2",
            "fleet_failover_seconds 1.250",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(metrics.events("became_leader"), 1);
    }
}
