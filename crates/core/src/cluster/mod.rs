//! Masters form a cluster that elects one leader. Three modes share these types:
//! [`raft`] (election by majority vote), [`lease`] (the holder of a lease in a Redis-like store
//! leads) and [`single`] (always the leader; for development).

pub mod lease;
pub mod raft;
pub mod single;
pub mod store;

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Raft with pre-vote: asking whether an election could be won.
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Membership changes a cluster reports, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    StartUp,
    /// This node became the leader.
    SignMaster,
    /// This node follows a (new) leader.
    SignFollower,
    /// This node stopped leading.
    StopMaster,
    /// This node gave up leading on purpose.
    ReleaseMaster,
    ElectionStart,
    ElectionFinish,
    Close,
}

/// Reacts to leadership changes. Callbacks run in the order the events happened.
pub trait JobTracker {
    fn name(&self) -> &str;
    fn on_started_leading(&mut self) {}
    fn on_stopped_leading(&mut self) {}
    fn on_new_leader(&mut self, _leader: &str) {}
    fn on_release_master(&mut self) {}
}

/// Delivers one event to a tracker; `leader` is the leader known after the event.
pub fn dispatch(tracker: &mut dyn JobTracker, event: ClusterEvent, leader: Option<&str>) {
    match event {
        ClusterEvent::SignMaster => tracker.on_started_leading(),
        ClusterEvent::StopMaster => tracker.on_stopped_leading(),
        ClusterEvent::SignFollower => {
            if let Some(leader) = leader {
                tracker.on_new_leader(leader);
            }
        }
        ClusterEvent::ReleaseMaster => tracker.on_release_master(),
        ClusterEvent::StartUp
        | ClusterEvent::ElectionStart
        | ClusterEvent::ElectionFinish
        | ClusterEvent::Close => {}
    }
}

/// Which periodic task is due: the leader's (MasterCall) or a follower's (SlaverCall).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodicTask {
    Leader,
    Follower { leader: String },
}

/// Runs a leader task or a follower task every `interval`, whichever this node is.
#[derive(Clone, Debug)]
pub struct PeriodicTracker {
    interval: Duration,
    next_due: Instant,
}

impl PeriodicTracker {
    pub fn new(interval: Duration, now: Instant) -> Self {
        debug_assert!(!interval.is_zero());
        PeriodicTracker {
            interval,
            next_due: now + interval,
        }
    }

    /// The task due at `now`, if any. Nothing runs while no leader is known.
    pub fn poll_due(
        &mut self,
        now: Instant,
        role: Role,
        leader: Option<&str>,
    ) -> Option<PeriodicTask> {
        if now < self.next_due {
            return None;
        }
        self.next_due = now + self.interval;
        match (role, leader) {
            (Role::Leader, _) => Some(PeriodicTask::Leader),
            (_, Some(leader)) => Some(PeriodicTask::Follower {
                leader: leader.to_string(),
            }),
            (_, None) => None,
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_due
    }
}
