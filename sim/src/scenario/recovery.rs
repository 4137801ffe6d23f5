//! How long a fleet may take to recover once faults stop, from its parameters alone: the
//! README's table ("How long recovery may take"), written here for `[explore] liveness =
//! "auto"`. It adds, for the worst case of each:
//!
//! - the cluster finding a leader: raft two election timeouts at most (one to notice, one more
//!   for a split vote) and two heartbeats of round trips; lease mode a whole lease period (a
//!   renewal held on a cut link may reach the store at the heal and restart its TTL then) and
//!   two sync intervals; single mode nothing;
//! - an agent noticing its session is dead: the heartbeat timeout, then the longest delay
//!   `first_delay` may draw before the new cycle's first attempt;
//! - an agent's longest wait: twice the backoff's largest delay with its jitter (a busy master
//!   that names no `retry_after` doubles it);
//! - one of the fixed waits it may meet on the way: the re-auth delay (with credentials), the
//!   master's own backoff (when enforced);
//! - twice the leader wait: held at a master that knows no leader, then told to come back.

use crate::scenario::params::{ClusterSpec, HeartbeatParams};
use fleet_core::attempts::AttemptPolicy;
use fleet_core::backoff::{BackoffPolicy, Strategy};
use std::time::Duration;

/// What recovery depends on.
pub struct Parameters<'a> {
    pub cluster: &'a ClusterSpec,
    pub heartbeat: &'a HeartbeatParams,
    pub backoff: &'a BackoffPolicy,
    /// The re-auth delay, when agents authenticate.
    pub reauth: Option<Duration>,
    pub attempts: &'a AttemptPolicy,
}

/// The bound, once faults stop, on a leader leading every agent.
pub fn bound(p: &Parameters) -> Duration {
    let (election, leader_wait) = match p.cluster {
        ClusterSpec::Raft { config, .. } => (
            config.election_timeout.1 * 2 + config.heartbeat_interval * 2,
            config.election_timeout.0,
        ),
        ClusterSpec::Lease(config) => (
            config.lease_period + config.sync_interval * 2,
            config.sync_interval,
        ),
        ClusterSpec::Single => (Duration::ZERO, Duration::ZERO),
    };
    let fixed = [
        p.reauth.unwrap_or_default(),
        if p.attempts.enforce {
            p.attempts.max
        } else {
            Duration::ZERO
        },
    ];
    let first_delay = p
        .backoff
        .first_delay
        .map_or(Duration::ZERO, |(_, high)| high);
    election
        + p.heartbeat.timeout
        + first_delay
        + largest_delay(p.backoff) * 2
        + fixed.into_iter().max().unwrap_or_default()
        + leader_wait * 2
}

/// The backoff's largest delay, jitter included.
fn largest_delay(backoff: &BackoffPolicy) -> Duration {
    match backoff.strategy {
        Strategy::Exponential => backoff.max.mul_f64(1.0 + backoff.jitter),
        Strategy::Constant => backoff.base.mul_f64(1.0 + backoff.jitter),
        Strategy::FullJitter | Strategy::EqualJitter | Strategy::Decorrelated => backoff.max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::cluster::raft::RaftConfig;

    #[test]
    fn the_bound_adds_the_cluster_the_session_the_backoff_and_the_waits() {
        let heartbeat = HeartbeatParams {
            interval: Duration::from_secs(1),
            max_miss: 3,
            timeout: Duration::from_secs(3),
        };
        let backoff = BackoffPolicy {
            max: Duration::from_secs(2),
            ..BackoffPolicy::default()
        };
        let raft = ClusterSpec::Raft {
            config: RaftConfig::default(),
            persist: true,
            fsync: true,
        };
        let attempts = AttemptPolicy {
            enforce: true,
            max: Duration::from_secs(1),
            ..AttemptPolicy::default()
        };
        let p = Parameters {
            cluster: &raft,
            heartbeat: &heartbeat,
            backoff: &backoff,
            reauth: Some(Duration::from_secs(1)),
            attempts: &attempts,
        };
        // 2 x 3s + 2 x 500ms, 3s, 2 x 2.5s, 1s, 2 x 1.5s.
        assert_eq!(bound(&p), Duration::from_secs(19));
        let single = Parameters {
            cluster: &ClusterSpec::Single,
            reauth: None,
            attempts: &AttemptPolicy::default(),
            ..p
        };
        assert_eq!(bound(&single), Duration::from_secs(8));
    }
}
