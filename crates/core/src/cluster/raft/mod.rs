//! Raft (Ongaro's thesis, chapter 3 and §9.6), with its log compacted to one snapshot.
//!
//! Terms, RequestVote, randomized election timeouts, leader heartbeats, majority rule; plus
//! pre-vote (a candidate first asks whether it could win, so a node cut off from the leader does
//! not inflate its term and disrupt the cluster when it returns) and check-quorum (a leader that
//! has not heard from a majority for an election timeout steps down). Both are on by default.
//!
//! What the masters agree on (their commands and config) is replicated as a [`Snapshot`]: each
//! version holds everything before it, so a follower needs only the newest, and a leader sends
//! it with a heartbeat to each follower that has not acknowledged it. A version is committed
//! once a majority hold it on their disks, and a leader counts only versions of its own term
//! (on taking office it stamps what it holds with its term, Raft's no-op entry). A node votes
//! only for a candidate whose version is at least its own (the election restriction), so
//! every leader holds every committed version.
//!
//! Sans-IO like the other cores: [`RaftNode::handle_message`] and the [`Membership`] trait's
//! `handle_timeout` take `now`; what to do comes from `poll_output`, membership changes from
//! `poll_cluster_event` and timeline events from `poll_event`.
//!
//! A node votes at most once per term, so its term and vote must outlive a crash. After every
//! input `poll_output` hands out the hard state first, when it changed, and the driver writes
//! it to stable storage before it sends the messages that follow: a vote or a candidacy never
//! leaves before it is durable. On boot the driver hands the saved state back with
//! [`RaftNode::restore`].

mod recovery;

use super::{ClusterEvent, Membership, Output, Role, Snapshot, Version};
use crate::bugs::{Bug, Bugs};
use crate::timeline::{Event, Events, RaftEvent};
use rand::{Rng, RngCore};
use recovery::Recovery;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct RaftConfig {
    /// A follower that hears no leader for a random time in `[low, high]` starts an election.
    pub election_timeout: (Duration, Duration),
    pub heartbeat_interval: Duration,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    pub bugs: Bugs,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout: (Duration::from_millis(1500), Duration::from_millis(3000)),
            heartbeat_interval: Duration::from_millis(500),
            pre_vote: true,
            check_quorum: true,
            bugs: Bugs::NONE,
        }
    }
}

impl RaftConfig {
    pub fn validate(&self) -> Result<(), String> {
        let (low, high) = self.election_timeout;
        if low.is_zero() || low > high {
            return Err("election_timeout must be a range like \"1500ms..3000ms\"".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= low {
            return Err(format!(
                "heartbeat interval ({:?}) must be above 0 and below the election timeout ({:?})",
                self.heartbeat_interval, low
            ));
        }
        Ok(())
    }
}

/// A leader remembers when this many of its last heartbeat rounds left: an answer to an older
/// one counts for nothing (one that late says little about now).
const ROUNDS_KEPT: usize = 64;

/// The part of the shortest election timeout a leader gives up of its authority
/// ([`Membership::leading_until`]): its clock may run slow and a follower's fast, each within
/// 5% of true time (lease mode's default `max_drift`).
pub const CLOCK_MARGIN: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftMessage {
    /// "Would you vote for me in `term`?" Changes nothing at the receiver.
    PreVote {
        term: u64,
        /// The version of the state the candidate holds.
        version: Version,
    },
    PreVoteResponse {
        term: u64,
        granted: bool,
    },
    RequestVote {
        term: u64,
        version: Version,
    },
    VoteResponse {
        term: u64,
        granted: bool,
    },
    Heartbeat {
        term: u64,
        /// The newest version the leader knows committed.
        commit: Version,
        /// The leader's state, for a follower that has not acknowledged holding it.
        state: Option<Snapshot>,
        /// Which of the leader's heartbeat rounds this is; the answer names it again.
        #[serde(default)]
        round: u64,
    },
    HeartbeatResponse {
        term: u64,
        /// The version the follower holds, on its disk.
        version: Version,
        /// The round of the heartbeat it answers.
        #[serde(default)]
        round: u64,
    },
    /// The leader is leaving and hands over: start an election now, without a pre-vote
    /// (Raft's leadership transfer).
    TimeoutNow {
        term: u64,
    },
}

impl RaftMessage {
    /// The term its sender was in, or above it: a pre-vote names the term it asks about, one
    /// past the sender's, and a pre-vote granted names the same, above the granter's.
    fn senders_term(&self) -> u64 {
        match *self {
            RaftMessage::PreVote { term, .. }
            | RaftMessage::PreVoteResponse {
                term,
                granted: true,
            } => term.saturating_sub(1),
            _ => self.term(),
        }
    }

    fn term(&self) -> u64 {
        match *self {
            RaftMessage::PreVote { term, .. }
            | RaftMessage::PreVoteResponse { term, .. }
            | RaftMessage::RequestVote { term, .. }
            | RaftMessage::VoteResponse { term, .. }
            | RaftMessage::Heartbeat { term, .. }
            | RaftMessage::HeartbeatResponse { term, .. }
            | RaftMessage::TimeoutNow { term } => term,
        }
    }
}

/// What raft keeps on stable storage: the current term and whom this node voted for in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<String>,
}

pub struct RaftNode<R> {
    me: String,
    /// Every other member, sorted.
    peers: Vec<String>,
    config: RaftConfig,
    rng: R,
    term: u64,
    voted_for: Option<String>,
    /// The hard state last handed out for saving.
    saved: HardState,
    role: Role,
    leader: Option<String>,
    /// Follower or candidate: when to start the next (pre-)election.
    election_deadline: Instant,
    /// Leader: when to send the next heartbeats.
    heartbeat_due: Instant,
    /// Leader: when it took office, so check-quorum gives followers a full timeout first.
    leading_since: Instant,
    /// Votes (or pre-votes) collected in the current attempt, including our own.
    votes: BTreeSet<String>,
    /// (Pre-)candidate: the peers that answered the current attempt, yes or no. Those that
    /// did not are asked again every heartbeat interval (Raft retries an RPC that got no
    /// answer): a request lost to a peer that was down or cut off is not the end of it.
    answered: BTreeSet<String>,
    /// (Pre-)candidate: when to ask again those that did not answer.
    ask_again: Instant,
    /// The term each candidate last asked for our vote in, and whether it got it: the same
    /// request again, answered the same way, is no news for the timeline (its answer may have
    /// been lost, or it waited on a held link with the others it sent).
    last_asked: BTreeMap<String, (u64, bool)>,
    /// When we last heard from a leader of the current term.
    last_leader_contact: Option<Instant>,
    /// When we last heard anything from each peer.
    last_heard: BTreeMap<String, Instant>,
    /// Candidate: when it asked for votes in its term; it leads from then on, as its voters
    /// count it.
    election_started: Instant,
    /// Leader: its heartbeat rounds, numbered, and when the last few left.
    round: u64,
    rounds: VecDeque<(u64, Instant)>,
    /// Leader: for each peer, when the newest round it answered left. A peer that answered a
    /// heartbeat sent at `t` starts no election before `t` plus its election timeout, however
    /// late its answer arrives: check-quorum counts from there.
    acked: BTreeMap<String, Instant>,
    closed: bool,
    /// The replicated state this node holds.
    state: Snapshot,
    /// The newest version this node knows a majority holds.
    commit: Version,
    /// Leader: the newest version each peer acknowledged holding.
    matched: BTreeMap<String, Version>,
    /// A state to persist (its own) or install (the leader's), before the messages.
    snapshot_out: Option<Output>,
    /// It lost its disk and is not yet safe to vote (see [`recovery`]).
    recovery: Option<Recovery>,
    outbox: VecDeque<(String, RaftMessage)>,
    changes: VecDeque<ClusterEvent>,
    /// What it reports, until the shell takes it.
    events: Events,
}

impl<R: RngCore> RaftNode<R> {
    pub fn new(me: &str, members: &[String], config: RaftConfig, rng: R, now: Instant) -> Self {
        let peers: Vec<String> = members
            .iter()
            .filter(|member| member.as_str() != me)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut node = RaftNode {
            me: me.to_string(),
            peers,
            config,
            rng,
            term: 0,
            voted_for: None,
            saved: HardState::default(),
            role: Role::Follower,
            leader: None,
            election_deadline: now,
            heartbeat_due: now,
            leading_since: now,
            votes: BTreeSet::new(),
            answered: BTreeSet::new(),
            ask_again: now,
            last_asked: BTreeMap::new(),
            last_leader_contact: None,
            last_heard: BTreeMap::new(),
            election_started: now,
            round: 0,
            rounds: VecDeque::new(),
            acked: BTreeMap::new(),
            closed: false,
            state: Snapshot::default(),
            commit: Version::default(),
            matched: BTreeMap::new(),
            snapshot_out: None,
            recovery: None,
            outbox: VecDeque::new(),
            changes: VecDeque::from([ClusterEvent::StartUp]),
            events: Events::default(),
        };
        node.reset_election_deadline(now);
        node
    }

    /// Resumes from the state saved before a crash. Call it before any input.
    pub fn restore(&mut self, saved: HardState) {
        self.events.push(RaftEvent::StateRestored {
            term: saved.term,
            voted_for: saved.voted_for.clone(),
        });
        self.term = saved.term;
        if self.config.bugs.has(Bug::RaftTermNotRestored) {
            self.term = 0;
        }
        self.voted_for = saved.voted_for.clone();
        self.saved = saved;
    }

    /// It lost its disk (it boots empty where it had run before): no votes and no elections
    /// until it is safe again (see [`recovery`]). Call before any input.
    pub fn recover(&mut self) {
        self.events.push(RaftEvent::Recovering {});
        self.recovery = Some(Recovery::default());
    }

    /// How many peers a recovering node must hear from: enough to meet every majority it may
    /// have been part of.
    fn peers_to_hear(&self) -> usize {
        let size = self.peers.len() + 1;
        size - self.majority() + 1
    }

    /// A recovering node may vote in `term`; anyone else always may.
    fn may_vote(&self, term: u64) -> bool {
        self.recovery
            .as_ref()
            .is_none_or(|recovery| recovery.may_vote(term))
    }

    /// A recovering node that is safe again becomes an ordinary member.
    fn check_recovery(&mut self) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        // Safe for good once it may vote in its own term: caught up, and past the floor.
        if recovery.may_vote(self.term) {
            let floor = recovery.floor().unwrap_or_default();
            self.events.push(RaftEvent::Recovered { floor });
            self.recovery = None;
        }
    }

    /// The term and vote to write to stable storage, when they changed since the last call.
    /// Take it before sending anything `poll_message` hands out.
    #[must_use]
    pub fn poll_hard_state(&mut self) -> Option<HardState> {
        if self.saved.term == self.term && self.saved.voted_for == self.voted_for {
            return None;
        }
        self.saved = HardState {
            term: self.term,
            voted_for: self.voted_for.clone(),
        };
        if self.config.bugs.has(Bug::RaftVoteNotSaved) {
            return Some(HardState {
                voted_for: None,
                ..self.saved.clone()
            });
        }
        Some(self.saved.clone())
    }

    fn majority(&self) -> usize {
        let size = self.peers.len() + 1;
        size / 2 + 1
    }

    fn reset_election_deadline(&mut self, now: Instant) {
        let (low, high) = self.config.election_timeout;
        let span = high.saturating_sub(low).as_millis() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.gen_range(0..=span)
        };
        self.election_deadline = now + low + Duration::from_millis(extra);
    }

    fn broadcast(&mut self, message: RaftMessage) {
        for peer in &self.peers {
            self.outbox.push_back((peer.clone(), message.clone()));
        }
    }

    /// Whether a majority (counting us) was heard from within the minimum election timeout.
    fn has_quorum(&self, now: Instant) -> bool {
        self.quorum_until().is_none_or(|until| now < until)
    }

    /// When this leader stops having heard from a majority (counting us) within the minimum
    /// election timeout, unless it hears from more of them first: the time by which enough
    /// peers were last heard, plus that window, and never before its first window is over.
    /// `None` when it is a majority alone.
    fn quorum_until(&self) -> Option<Instant> {
        let window = self.config.election_timeout.0;
        let needed = self.majority().checked_sub(1).filter(|&n| n > 0)?;
        let mut heard: Vec<Instant> = self.acked.values().copied().collect();
        heard.sort_unstable_by(|a, b| b.cmp(a));
        let first = self.leading_since + window;
        Some(
            heard
                .get(needed - 1)
                .map_or(first, |&at| first.max(at + window)),
        )
    }

    fn start_pre_vote(&mut self, now: Instant) {
        self.role = Role::PreCandidate;
        self.votes = BTreeSet::from([self.me.clone()]);
        self.events.push(RaftEvent::PreVoteStarted {
            term: self.term + 1,
        });
        self.answered.clear();
        self.ask_again = now + self.config.heartbeat_interval;
        self.broadcast(self.request());
        self.reset_election_deadline(now);
        self.check_votes(now);
    }

    fn start_election(&mut self, now: Instant) {
        self.election_started = now;
        self.term += 1;
        self.role = Role::Candidate;
        self.voted_for = Some(self.me.clone());
        self.leader = None;
        self.votes = BTreeSet::from([self.me.clone()]);
        self.events
            .push(RaftEvent::ElectionStarted { term: self.term });
        self.changes.push_back(ClusterEvent::ElectionStart);
        self.answered.clear();
        self.ask_again = now + self.config.heartbeat_interval;
        self.broadcast(self.request());
        self.reset_election_deadline(now);
        self.check_votes(now);
    }

    /// What a (pre-)candidate asks its peers for.
    fn request(&self) -> RaftMessage {
        let version = self.state.version;
        match self.role {
            Role::PreCandidate => RaftMessage::PreVote {
                term: self.term + 1,
                version,
            },
            _ => RaftMessage::RequestVote {
                term: self.term,
                version,
            },
        }
    }

    /// Asks again the peers that have not answered this attempt.
    fn ask_again(&mut self, now: Instant) {
        let request = self.request();
        let silent: Vec<String> = (self.peers.iter())
            .filter(|peer| !self.answered.contains(*peer))
            .cloned()
            .collect();
        for peer in silent {
            self.outbox.push_back((peer, request.clone()));
        }
        self.ask_again = now + self.config.heartbeat_interval;
    }

    /// An answer to the current attempt's request: `from` is not asked again, and a yes counts.
    fn count_answer(&mut self, now: Instant, from: &str, granted: bool) {
        self.answered.insert(from.to_string());
        if granted {
            self.votes.insert(from.to_string());
            self.check_votes(now);
        }
    }

    fn check_votes(&mut self, now: Instant) {
        if self.votes.len() < self.majority() {
            return;
        }
        match self.role {
            Role::PreCandidate => self.start_election(now),
            Role::Candidate => self.become_leader(now),
            _ => {}
        }
    }

    fn become_leader(&mut self, now: Instant) {
        debug_assert_eq!(self.voted_for.as_deref(), Some(self.me.as_str()));
        self.role = Role::Leader;
        self.leader = Some(self.me.clone());
        // Its voters granted their votes after it asked, and wait an election timeout from then.
        self.leading_since = self.election_started;
        self.acked.clear();
        self.rounds.clear();
        self.events.push(RaftEvent::BecameLeader {
            term: self.term,
            votes: self.votes.len() as u64,
        });
        self.changes.push_back(ClusterEvent::ElectionFinish);
        self.changes.push_back(ClusterEvent::SignMaster);
        // Raft's no-op entry: what it holds becomes its own term's, and committing that
        // commits everything before it.
        self.state.version.term = self.term;
        self.snapshot_out = Some(Output::Persist(self.state.clone()));
        self.matched = (self.peers.iter())
            .map(|peer| (peer.clone(), Version::default()))
            .collect();
        self.advance_commit();
        self.send_heartbeats(now);
        self.heartbeat_due = now + self.config.heartbeat_interval;
    }

    /// A heartbeat to every peer, carrying the state to those that have not acknowledged it.
    fn send_heartbeats(&mut self, now: Instant) {
        self.round += 1;
        self.rounds.push_back((self.round, now));
        if self.rounds.len() > ROUNDS_KEPT {
            self.rounds.pop_front();
        }
        for peer in self.peers.clone() {
            let behind = self.matched.get(&peer) != Some(&self.state.version);
            let message = RaftMessage::Heartbeat {
                term: self.term,
                commit: self.commit,
                state: behind.then(|| self.state.clone()),
                round: self.round,
            };
            self.outbox.push_back((peer, message));
        }
    }

    /// Leader: the newest version of its term a majority (itself included) holds.
    fn advance_commit(&mut self) {
        let mut held: Vec<Version> = self.matched.values().copied().collect();
        held.push(self.state.version);
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority = held[self.majority() - 1];
        if majority.term == self.term && majority > self.commit {
            self.commit = majority;
        }
    }

    fn step_down(&mut self, now: Instant, reason: &str) {
        debug_assert_eq!(self.role, Role::Leader);
        self.events.push(RaftEvent::SteppedDown {
            term: self.term,
            reason: reason.to_string(),
        });
        self.role = Role::Follower;
        self.leader = None;
        self.changes.push_back(ClusterEvent::StopMaster);
        self.reset_election_deadline(now);
    }

    /// Adopts a higher term seen in any message, stepping down if we led.
    fn observe_term(&mut self, now: Instant, term: u64) {
        if term <= self.term {
            return;
        }
        if self.role == Role::Leader {
            self.step_down(now, "higher term");
        }
        self.term = term;
        self.voted_for = None;
        self.leader = None;
        if self.role != Role::Follower {
            self.role = Role::Follower;
            self.reset_election_deadline(now);
        }
    }

    pub fn handle_message(&mut self, now: Instant, from: &str, message: RaftMessage) {
        if self.closed || !self.peers.iter().any(|peer| peer == from) {
            return;
        }
        self.last_heard.insert(from.to_string(), now);
        let needed = self.peers_to_hear();
        if let Some(recovery) = &mut self.recovery {
            recovery.hear(from, message.senders_term(), needed);
        }
        // Pre-votes are hypothetical: their terms are not adopted.
        if !matches!(message, RaftMessage::PreVote { .. })
            && !matches!(message, RaftMessage::PreVoteResponse { granted: true, .. })
        {
            self.observe_term(now, message.term());
        }
        match message {
            RaftMessage::PreVote { term, version } => {
                self.handle_pre_vote(now, from, term, version)
            }
            RaftMessage::PreVoteResponse { term, granted } => {
                if self.role == Role::PreCandidate && term == self.term + 1 {
                    self.count_answer(now, from, granted);
                }
            }
            RaftMessage::RequestVote { term, version } => {
                self.handle_request_vote(now, from, term, version)
            }
            RaftMessage::VoteResponse { term, granted } => {
                if self.role == Role::Candidate && term == self.term {
                    self.count_answer(now, from, granted);
                }
            }
            RaftMessage::Heartbeat {
                term,
                commit,
                state,
                round,
            } => {
                self.handle_heartbeat(now, from, term, state, round);
                self.learn_commit(commit);
            }
            RaftMessage::TimeoutNow { term } => {
                let from_leader = self.leader.as_deref() == Some(from);
                if term == self.term && from_leader && self.role == Role::Follower {
                    self.events.push(RaftEvent::TransferReceived {
                        term,
                        from: from.to_string(),
                    });
                    self.start_election(now);
                }
            }
            RaftMessage::HeartbeatResponse {
                term,
                version,
                round,
            } => {
                // Its latest word, not its highest: one that lost its disk holds less now.
                if self.role == Role::Leader && term == self.term {
                    self.matched.insert(from.to_string(), version);
                    self.advance_commit();
                    self.count_ack(from, round);
                }
            }
        }
        self.check_recovery();
    }

    /// `from` answered heartbeat round `round`: it heard this leader when that round left.
    fn count_ack(&mut self, from: &str, round: u64) {
        let Some(&(_, sent)) = self.rounds.iter().find(|(r, _)| *r == round) else {
            return;
        };
        let acked = self.acked.entry(from.to_string()).or_insert(sent);
        *acked = (*acked).max(sent);
    }

    /// A follower learns what the leader knows committed: as far as its own state goes, when
    /// that state is the leader's term's (an older term's may have been superseded).
    fn learn_commit(&mut self, commit: Version) {
        if self.state.version.term == commit.term {
            self.commit = self.commit.max(commit.min(self.state.version));
        }
    }

    /// Would we vote for `from` in `term`? Not while a leader is fresh: that is what keeps a
    /// node cut off from the leader from disrupting the cluster when it returns.
    fn handle_pre_vote(&mut self, now: Instant, from: &str, term: u64, version: Version) {
        let leader_is_fresh = self.role == Role::Leader
            || self
                .last_leader_contact
                .is_some_and(|at| now.duration_since(at) < self.config.election_timeout.0);
        let restricted = !self.config.bugs.has(Bug::RaftNoElectionRestriction);
        let granted = term > self.term
            && !leader_is_fresh
            && (version >= self.state.version || !restricted)
            && self.may_vote(term);
        let term = if granted { term } else { self.term };
        self.send(from, RaftMessage::PreVoteResponse { term, granted });
    }

    /// One vote per term: granted unless the term is stale, the vote already went elsewhere,
    /// or the candidate's state is older than ours (it could lack something committed).
    fn handle_request_vote(&mut self, now: Instant, from: &str, term: u64, version: Version) {
        let denial = if term < self.term {
            Some("stale term".to_string())
        } else if let Some(recovery) = self.recovery.as_ref().filter(|r| !r.may_vote(term)) {
            Some(recovery.refusal(term))
        } else if version < self.state.version
            && !self.config.bugs.has(Bug::RaftNoElectionRestriction)
        {
            let Version { term, index } = self.state.version;
            Some(format!("candidate's state is behind ({term}.{index})"))
        } else {
            let once = !self.config.bugs.has(Bug::RaftVoteTwice);
            match &self.voted_for {
                Some(other) if other != from && once => Some(format!("voted for {other}")),
                _ => None,
            }
        };
        let granted = denial.is_none();
        let candidate = from.to_string();
        let news =
            self.last_asked.insert(candidate.clone(), (term, granted)) != Some((term, granted));
        match denial {
            None => {
                self.voted_for = Some(from.to_string());
                self.reset_election_deadline(now);
                if news {
                    self.events.push(RaftEvent::VoteGranted { term, candidate });
                }
            }
            Some(reason) if news => self.events.push(RaftEvent::VoteDenied {
                term,
                candidate,
                reason,
            }),
            Some(_) => {}
        }
        let term = self.term;
        self.send(from, RaftMessage::VoteResponse { term, granted });
    }

    /// A leader of our term: follow it, put off our own election, and take its state if newer.
    fn handle_heartbeat(
        &mut self,
        now: Instant,
        from: &str,
        term: u64,
        state: Option<Snapshot>,
        round: u64,
    ) {
        if term == self.term {
            debug_assert!(
                self.role != Role::Leader,
                "two leaders in term {term}: {} and {from}",
                self.me
            );
            self.last_leader_contact = Some(now);
            self.reset_election_deadline(now);
            let changed = self.role != Role::Follower || self.leader.as_deref() != Some(from);
            self.role = Role::Follower;
            if changed {
                self.leader = Some(from.to_string());
                let leader = from.to_string();
                self.events.push(RaftEvent::BecameFollower { term, leader });
                self.changes.push_back(ClusterEvent::ElectionFinish);
                self.changes.push_back(ClusterEvent::SignFollower);
            }
            // A leader sends its state to a follower that has not acknowledged holding it, as
            // one that lost its disk has not since it came back.
            let brought_up = state.is_some();
            if let Some(state) = state.filter(|state| state.version > self.state.version) {
                self.state = state;
                self.snapshot_out = Some(Output::Install(self.state.clone()));
            }
            // Holding its leader's state, it is up to date again; a heartbeat without it (the
            // leader still counts what this node acknowledged before it lost its disk) is not.
            if let Some(recovery) = self.recovery.as_mut().filter(|_| brought_up) {
                recovery.caught_up = true;
            }
        }
        // Says which version it holds, so a leader whose state it lacks sends it.
        let (term, version) = (self.term, self.state.version);
        let answer = RaftMessage::HeartbeatResponse {
            term,
            version,
            round,
        };
        self.send(from, answer);
    }

    fn send(&mut self, to: &str, message: RaftMessage) {
        self.outbox.push_back((to.to_string(), message));
    }

    #[must_use]
    pub fn poll_message(&mut self) -> Option<(String, RaftMessage)> {
        self.outbox.pop_front()
    }

    /// Every member, sorted, including this node.
    pub fn members(&self) -> Vec<String> {
        let mut all = self.peers.clone();
        all.push(self.me.clone());
        all.sort();
        all
    }
}

impl<R: RngCore + Send> Membership for RaftNode<R> {
    fn me(&self) -> &str {
        &self.me
    }

    fn handle_peer(&mut self, now: Instant, from: &str, message: RaftMessage) {
        self.handle_message(now, from, message);
    }

    /// The hard state first when it changed, then the messages: a vote or a candidacy never
    /// leaves before it is durable.
    fn poll_output(&mut self) -> Option<Output> {
        if let Some(state) = self.poll_hard_state() {
            return Some(Output::Save(state));
        }
        if let Some(snapshot) = self.snapshot_out.take() {
            return Some(snapshot);
        }
        let (to, message) = self.poll_message()?;
        Some(Output::Peer { to, message })
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        match self.role {
            Role::Leader => {
                if now >= self.heartbeat_due {
                    if self.config.check_quorum && !self.has_quorum(now) {
                        return self.step_down(now, "lost quorum");
                    }
                    self.send_heartbeats(now);
                    self.heartbeat_due = now + self.config.heartbeat_interval;
                }
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if now >= self.election_deadline {
                    if !self.may_vote(self.term + 1) {
                        // Recovering: it waits to be brought up to date instead.
                        self.reset_election_deadline(now);
                        return;
                    }
                    if self.config.pre_vote {
                        self.start_pre_vote(now);
                    } else {
                        self.start_election(now);
                    }
                } else if self.role != Role::Follower && now >= self.ask_again {
                    self.ask_again(now);
                }
            }
        }
    }

    fn restore_state(&mut self, snapshot: Snapshot) {
        self.state = snapshot;
    }

    fn propose(&mut self, now: Instant, index: u64, state: Vec<u8>) {
        if self.role != Role::Leader || self.closed {
            return;
        }
        debug_assert!(index > self.state.version.index, "indexes only grow");
        let version = Version {
            term: self.term,
            index,
        };
        self.state = Snapshot { version, state };
        self.snapshot_out = Some(Output::Persist(self.state.clone()));
        self.advance_commit();
        self.send_heartbeats(now);
    }

    fn committed(&self) -> Option<u64> {
        let leads = self.role == Role::Leader && !self.closed;
        (leads && self.commit.term == self.term).then_some(self.commit.index)
    }

    /// Gives up leadership on purpose: hands it to the follower that holds everything this
    /// leader holds and was heard from last (Raft's TimeoutNow: it starts an election at once
    /// and wins it within a round trip), or, with none up to date, lets the followers' timers
    /// elect another. Either way it stands back for a full timeout.
    fn release(&mut self, now: Instant) -> Option<String> {
        if self.role != Role::Leader {
            return None;
        }
        let window = self.config.election_timeout.0;
        let successor = (self.matched.iter())
            .filter(|(_, version)| **version == self.state.version)
            .filter_map(|(peer, _)| Some((self.last_heard.get(peer)?, peer)))
            .filter(|(heard, _)| now.duration_since(**heard) < window)
            .max()
            .map(|(_, peer)| peer.clone());
        self.changes.push_back(ClusterEvent::ReleaseMaster);
        self.step_down(now, "released");
        self.election_deadline = now + self.config.election_timeout.1;
        if let Some(successor) = &successor {
            let term = self.term;
            self.events.push(RaftEvent::TransferSent {
                term,
                to: successor.clone(),
            });
            self.send(successor, RaftMessage::TimeoutNow { term });
        }
        successor
    }

    /// Leaves the cluster: no more messages, no more elections.
    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.role = Role::Follower;
            self.leader = None;
            self.changes.push_back(ClusterEvent::Close);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        Some(match self.role {
            Role::Leader => self.heartbeat_due,
            Role::Follower => self.election_deadline,
            Role::PreCandidate | Role::Candidate => self.election_deadline.min(self.ask_again),
        })
    }

    fn poll_cluster_event(&mut self) -> Option<ClusterEvent> {
        self.changes.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// With check-quorum, a leader's authority lapses when its quorum does, less
    /// [`CLOCK_MARGIN`] of the window for clocks that run at different rates.
    fn leading_until(&self) -> Option<Instant> {
        let leads = self.role == Role::Leader && self.config.check_quorum && !self.closed;
        let margin = self.config.election_timeout.0.mul_f64(CLOCK_MARGIN);
        let until = self.quorum_until().filter(|_| leads)?;
        Some(until.checked_sub(margin).unwrap_or(until))
    }

    fn role(&self) -> Role {
        self.role
    }

    fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    fn term(&self) -> u64 {
        self.term
    }

    /// Members heard from within the maximum election timeout, and this node.
    fn alive(&self, now: Instant) -> Vec<String> {
        let window = self.config.election_timeout.1;
        let mut alive: Vec<String> = self
            .last_heard
            .iter()
            .filter(|(_, &at)| now.duration_since(at) < window)
            .map(|(peer, _)| peer.clone())
            .collect();
        alive.push(self.me.clone());
        alive.sort();
        alive
    }
}

#[cfg(test)]
mod tests;
