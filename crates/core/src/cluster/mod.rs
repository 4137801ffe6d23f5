//! Masters form a cluster that elects one leader. Three modes share these types:
//! [`raft`] (election by majority vote), [`lease`] (the holder of a lease in a Redis-like store
//! leads) and [`single`] (always the leader; for development).

pub mod calls;
pub mod lease;
pub mod raft;
pub mod single;

use crate::resp::Value;
use crate::timeline::Event;
use lease::LeaseAction;
use raft::{HardState, RaftMessage};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Which state a replica holds: the term of the leader that made it (a raft term, a lease's
/// fencing token), then its place in that leader's sequence. Ordered by term first, so a
/// state a newer leader made is newer than any an older one made (Raft's "up to date").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    pub term: u64,
    pub index: u64,
}

/// The state the masters replicate, as the membership core carries it: opaque bytes (the
/// master's commands and config) and their version. Each snapshot holds everything before
/// it, so a replica only ever needs the newest: Raft's log, compacted to one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: Version,
    /// Moved as one byte string, not byte by byte (the same bytes on a bincode wire).
    #[serde(with = "byte_string")]
    pub state: Vec<u8>,
}

/// Serde for a `Vec<u8>` as a byte string: one copy each way instead of a call per byte.
mod byte_string {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

impl Snapshot {
    /// The disk record: `term index\n` then the state.
    pub fn to_record(&self) -> Vec<u8> {
        let Version { term, index } = self.version;
        let mut bytes = format!("{term} {index}\n").into_bytes();
        bytes.extend_from_slice(&self.state);
        bytes
    }

    /// Reads a record [`to_record`](Self::to_record) wrote; `None` if it is not one.
    pub fn from_record(bytes: &[u8]) -> Option<Snapshot> {
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&bytes[..newline]).ok()?;
        let (term, index) = head.split_once(' ')?;
        let version = Version {
            term: term.parse().ok()?,
            index: index.parse().ok()?,
        };
        let state = bytes[newline + 1..].to_vec();
        Some(Snapshot { version, state })
    }
}

/// What a membership core asks its shell to do, besides reporting events.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Write the term and vote to stable storage, before sending anything polled after it.
    Save(HardState),
    /// Write this node's own proposal to stable storage, before sending anything after it.
    Persist(Snapshot),
    /// A newer state from the leader: write it to stable storage, then hand it to the master,
    /// before sending anything after it (the acknowledgement says it is held).
    Install(Snapshot),
    /// Send `message` to peer `to`.
    Peer { to: String, message: RaftMessage },
    /// A request for the lease store, or a reconnect to it.
    Store(LeaseAction),
}

/// A cluster mode's core: how masters agree on a leader (raft, lease, single). Sans-IO like
/// every core: inputs take `now`, outputs are polled. The shell drives any mode through this
/// trait alone; a mode ignores the inputs it has no use for.
pub trait Membership: Send {
    /// This node's name.
    fn me(&self) -> &str;
    fn handle_timeout(&mut self, now: Instant);
    /// A message from peer `from`.
    fn handle_peer(&mut self, _now: Instant, _from: &str, _message: RaftMessage) {}
    /// The store's answer to request `id`, or why there is none.
    fn handle_store_reply(&mut self, _now: Instant, _id: u64, _reply: Result<Value, String>) {}
    /// The replicated state this node kept on stable storage; call before any input.
    fn restore_state(&mut self, _snapshot: Snapshot) {}
    /// Leader: makes `state` the next version, at `index` (above every index before), and
    /// replicates it. Anything else ignores it.
    fn propose(&mut self, now: Instant, index: u64, state: Vec<u8>);
    /// Leader: the highest index it knows is held as durably as its mode promises (a majority
    /// of disks, the store, its own disk), counting only what it proposed in its own term
    /// (Raft's rule: earlier terms' states are committed by committing a newer one). `None`
    /// otherwise, and until the first is.
    fn committed(&self) -> Option<u64>;
    /// Gives up leadership on purpose, if this node leads, so another can take over; returns
    /// the member it handed leadership to, if it chose one.
    fn release(&mut self, now: Instant) -> Option<String>;
    /// Leaves the cluster: no more messages, no more elections or requests.
    fn close(&mut self);
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next thing for the shell to do, in order.
    #[must_use]
    fn poll_output(&mut self) -> Option<Output>;
    /// The next membership change, in the order they happened.
    #[must_use]
    fn poll_cluster_event(&mut self) -> Option<ClusterEvent>;
    /// The next event for the timeline, in the order they happened.
    #[must_use]
    fn poll_event(&mut self) -> Option<Event>;
    fn role(&self) -> Role;
    /// While this node leads, when its authority lapses unless it is renewed first (a lease's
    /// expiry, a raft leader's check-quorum deadline): a leader that wakes from a pause past it
    /// must not act before its core has caught up. `None`: no bound.
    fn leading_until(&self) -> Option<Instant> {
        None
    }
    fn leader(&self) -> Option<&str>;
    /// A raft term, or a lease's fencing token.
    fn term(&self) -> u64;
    /// Members heard from recently, sorted, this node included. A mode that hears no peers
    /// knows only itself and the leader.
    fn alive(&self, _now: Instant) -> Vec<String> {
        let mut alive = vec![self.me().to_string()];
        alive.extend(self.leader().map(str::to_string));
        alive.sort();
        alive.dedup();
        alive
    }
}

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

/// What a node knows of its cluster at one moment: the queries of the cluster design's `ICluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub me: String,
    pub role: Role,
    pub term: u64,
    pub leader: Option<String>,
    /// Every member, sorted, this node included.
    pub members: Vec<String>,
    /// Members heard from recently, sorted, this node included.
    pub alive: Vec<String>,
    pub closed: bool,
}

impl Status {
    /// A leader is known (this node or another) and the node is not closed.
    pub fn is_ready(&self) -> bool {
        !self.closed && self.leader.is_some()
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// Running for leader, or (with pre-vote) asking whether it could.
    pub fn is_candidate(&self) -> bool {
        matches!(self.role, Role::Candidate | Role::PreCandidate)
    }
    pub fn is_follower(&self) -> bool {
        self.role == Role::Follower
    }
    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn my_name(&self) -> &str {
        &self.me
    }
    pub fn all_count(&self) -> usize {
        self.members.len()
    }
    pub fn alive_count(&self) -> usize {
        self.alive.len()
    }
    /// Members not heard from recently.
    pub fn lost(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| !self.alive.contains(member))
            .cloned()
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_answers_the_cluster_queries() {
        let status = Status {
            me: "master-1".into(),
            role: Role::Follower,
            term: 3,
            leader: Some("master-2".into()),
            members: vec!["master-1".into(), "master-2".into(), "master-3".into()],
            alive: vec!["master-1".into(), "master-2".into()],
            closed: false,
        };
        assert!(status.is_ready() && status.is_follower());
        assert!(!status.is_leader() && !status.is_candidate());
        assert_eq!(status.leader_name(), Some("master-2"));
        assert_eq!(status.my_name(), "master-1");
        assert_eq!((status.all_count(), status.alive_count()), (3, 2));
        assert_eq!(status.lost(), vec!["master-3".to_string()]);
    }

    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl JobTracker for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn on_started_leading(&mut self) {
            self.0.push("started".into());
        }
        fn on_stopped_leading(&mut self) {
            self.0.push("stopped".into());
        }
        fn on_new_leader(&mut self, leader: &str) {
            self.0.push(format!("new leader {leader}"));
        }
        fn on_release_master(&mut self) {
            self.0.push("released".into());
        }
    }

    #[test]
    fn events_reach_trackers_as_callbacks() {
        let mut tracker = Recorder::default();
        for (event, leader) in [
            (ClusterEvent::StartUp, None),
            (ClusterEvent::SignFollower, Some("master-2")),
            (ClusterEvent::SignMaster, Some("master-1")),
            (ClusterEvent::ReleaseMaster, None),
            (ClusterEvent::StopMaster, None),
        ] {
            dispatch(&mut tracker, event, leader);
        }
        assert_eq!(
            tracker.0,
            vec!["new leader master-2", "started", "released", "stopped"]
        );
    }

    #[test]
    fn the_periodic_tracker_runs_the_task_for_the_role() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut periodic = PeriodicTracker::new(second, t0);
        assert_eq!(
            periodic.poll_due(t0, Role::Leader, None),
            None,
            "not due yet"
        );
        assert_eq!(
            periodic.poll_due(t0 + second, Role::Leader, Some("master-1")),
            Some(PeriodicTask::Leader)
        );
        assert_eq!(
            periodic.poll_due(t0 + second * 2, Role::Follower, Some("master-2")),
            Some(PeriodicTask::Follower {
                leader: "master-2".into()
            })
        );
        assert_eq!(
            periodic.poll_due(t0 + second * 3, Role::Candidate, None),
            None
        );
        assert_eq!(periodic.poll_timeout(), t0 + second * 4);
    }
}
