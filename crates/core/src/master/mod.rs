//! The master's registry: which agents are registered, on which session, and whether each is
//! online. Sans-IO: the shell feeds it messages and timeouts with `now`, and pulls the frames to
//! send and the sessions to close.
//!
//! The registry is cut by concern, each file a handler that works on the part of the state it
//! needs: `nodes` (the node table and the sessions that speak for it), `register` (admission
//! and registration), `liveness` (heartbeats and the offline sweep), `commands` (commands and
//! config), `ledger` (what the masters replicate, and when a change counts) and `admin`
//! (credentials, operator commands, shutdown).

mod admin;
mod commands;
mod ledger;
mod liveness;
mod nodes;
mod register;
#[cfg(test)]
mod tests;

pub use admin::Reconnection;
pub use ledger::{CommandState, Replicated};
pub use nodes::NodeEntry;

use crate::attempts::{Admission, AttemptPolicy};
use crate::bugs::{Bug, Bugs};
use crate::timeline::{Event, Events};
use crate::wire::Message;
use ledger::Ledger;
use nodes::Agents;
use register::Gate;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One TCP connection, numbered by the shell.
pub type SessionId = u64;

#[derive(Clone, Debug, PartialEq)]
pub struct MasterConfig {
    /// This master's name: it prefixes the ids of the commands it accepts.
    pub name: String,
    pub heartbeat_interval: Duration,
    /// Missed heartbeat intervals before an agent counts as offline.
    pub max_miss: u32,
    /// The cluster's secret: registrations must carry the agent's token under it. `None`:
    /// anyone may register.
    pub auth_secret: Option<String>,
    /// At most this many registrations per second; `None`: no limit.
    pub admission: Option<Admission>,
    /// The attempt manager's settings.
    pub attempts: AttemptPolicy,
    /// Told to an agent a follower turns away for want of a leader, as when to come back:
    /// about how long its cluster takes to elect one.
    pub leader_wait: Duration,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    pub bugs: Bugs,
}

impl Default for MasterConfig {
    /// `master-1`, heartbeats every second, offline after 3 missed, no authentication, no
    /// admission limit, attempt records kept but not enforced, agents turned away for want of
    /// a leader told to come back after 1.5s (raft's shortest default election timeout).
    fn default() -> Self {
        MasterConfig {
            name: "master-1".into(),
            heartbeat_interval: Duration::from_secs(1),
            max_miss: 3,
            auth_secret: None,
            admission: None,
            attempts: AttemptPolicy::default(),
            leader_wait: Duration::from_millis(1500),
            bugs: Bugs::NONE,
        }
    }
}

impl MasterConfig {
    /// How long an agent may stay silent before it is marked offline.
    pub fn offline_after(&self) -> Duration {
        if self.bugs.has(Bug::LivenessOneMissEarly) {
            return self.heartbeat_interval * self.max_miss.saturating_sub(1);
        }
        self.heartbeat_interval * self.max_miss
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum MasterAction {
    Send {
        session: SessionId,
        message: Message,
    },
    Close {
        session: SessionId,
        reason: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Online,
    Offline,
}

/// Whether this master serves agents. A single master always leads; in a cluster only the
/// elected leader does, and the others point agents at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    Leader,
    /// `leader` is `None` while no leader is known.
    Follower {
        leader: Option<String>,
    },
}

/// Why a master did not accept a command or config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("this master does not lead; send commands to the leader")]
    NotLeader,
    #[error("a {len}-byte command exceeds the frame limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("{bytes} bytes of commands are waiting for their agents, the most a master holds ({budget}); try again when they are answered")]
    OutboxFull { bytes: usize, budget: usize },
}

/// The master core. Its state comes in parts, so that each handler borrows only the part it
/// works on: the agents it serves, what registrations must pass, what it owes its agents and
/// its successors, and what it hands the shell.
#[derive(Debug)]
pub struct Registry {
    config: MasterConfig,
    leadership: Leadership,
    /// The registered nodes, the sessions that speak for them, and when one can next go silent.
    agents: Agents,
    /// Admission, credentials, reconnection attempts, and whether it still takes anyone.
    gate: Gate,
    /// The commands, config and term a restart finds and a successor takes over.
    ledger: Ledger,
    /// The frames to send, the sessions to close, and the timeline events, until the shell
    /// takes them.
    output: Output,
}

/// What a registry hands its shell, in the order it decided it.
#[derive(Debug, Default)]
struct Output {
    actions: VecDeque<MasterAction>,
    /// What it reports, until the shell takes it.
    events: Events,
}

impl Output {
    fn send(&mut self, session: SessionId, message: Message) {
        self.actions
            .push_back(MasterAction::Send { session, message });
    }

    fn close(&mut self, session: SessionId, reason: &'static str) {
        self.actions
            .push_back(MasterAction::Close { session, reason });
    }
}

impl Registry {
    pub fn new(config: MasterConfig) -> Self {
        debug_assert!(config.max_miss > 0 && !config.heartbeat_interval.is_zero());
        Registry {
            gate: Gate::new(&config),
            ledger: Ledger::new(&config.name),
            agents: Agents::default(),
            output: Output::default(),
            leadership: Leadership::Leader,
            config,
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Hands each message an agent sends to the handler of its concern.
    pub fn handle_message(&mut self, now: Instant, session: SessionId, message: Message) {
        match message {
            Message::Register(info) => self.handle_register(now, session, info),
            Message::Heartbeat(heartbeat) => self.handle_heartbeat(now, session, heartbeat),
            Message::Unregister(_) => self.handle_unregister(session),
            Message::CommandResult(result) => self.handle_result(session, result),
            Message::ConfigPull(pull) => self.handle_config_pull(session, pull),
            Message::ConfigAck(ack) => self.handle_config_ack(session, ack),
            Message::RegisterAck(_)
            | Message::HeartbeatAck(_)
            | Message::Redirect(_)
            | Message::Command(_)
            | Message::ConfigPush(_)
            | Message::Goodbye(_) => {
                self.output.close(session, "unexpected message from agent");
            }
        }
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<MasterAction> {
        self.output.actions.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.output.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self.gate.waiting.iter().map(|(_, _, until)| *until).min();
        [self.agents.next_sweep, waiting]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every registered node by instance id, in that order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeEntry)> {
        self.agents.nodes.iter()
    }
}
