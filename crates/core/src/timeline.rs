//! The timeline's vocabulary: every event the control plane reports, defined once.
//!
//! Each subsystem has one enum; a variant's name (in snake case) is the event's kind and its
//! fields are the event's fields, in the order written. Cores queue their events ([`Events`])
//! and never log; the shell (`fleet_node::report`) sends each through `tracing` as one JSON
//! field, [`FIELD`], under [`TARGET`], so any subscriber can log it and the simulator parses it
//! back into exactly this type (serde derives both directions from the one definition). Code that
//! interprets events matches these enums exhaustively: a new kind is a compile error wherever
//! it must be considered.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use strum::{IntoStaticStr, VariantNames};

/// The `tracing` target of every timeline event.
pub const TARGET: &str = "fleet_core::timeline";
/// The one `tracing` field of a timeline event: the event as JSON.
pub const FIELD: &str = "event";

/// Any event of the control plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Event {
    Agent(AgentEvent),
    Master(MasterEvent),
    Raft(RaftEvent),
    Lease(LeaseEvent),
    Single(SingleEvent),
    Call(CallEvent),
    Shell(ShellEvent),
    Command(CommandEvent),
}

impl Event {
    /// Its kind, as the timeline names it: `connect_attempt`, `became_leader`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Agent(event) => event.into(),
            Event::Master(event) => event.into(),
            Event::Raft(event) => event.into(),
            Event::Lease(event) => event.into(),
            Event::Single(event) => event.into(),
            Event::Call(event) => event.into(),
            Event::Shell(event) => event.into(),
            Event::Command(event) => event.into(),
        }
    }

    /// Parses one event from its JSON, as the shell writes it. It reads the kind first and goes
    /// straight to its subsystem's enum, where the derived `Deserialize` tries each subsystem in
    /// turn, buffering the event again for every one that is not it.
    pub fn from_json(text: &str) -> Result<Event, serde_json::Error> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let kind: Kind = serde_json::from_str(text)?;
        match subsystem(&kind.kind) {
            Some(Subsystem::Agent) => serde_json::from_str(text).map(Event::Agent),
            Some(Subsystem::Master) => serde_json::from_str(text).map(Event::Master),
            Some(Subsystem::Raft) => serde_json::from_str(text).map(Event::Raft),
            Some(Subsystem::Lease) => serde_json::from_str(text).map(Event::Lease),
            Some(Subsystem::Single) => serde_json::from_str(text).map(Event::Single),
            Some(Subsystem::Call) => serde_json::from_str(text).map(Event::Call),
            Some(Subsystem::Shell) => serde_json::from_str(text).map(Event::Shell),
            Some(Subsystem::Command) => serde_json::from_str(text).map(Event::Command),
            // Not a kind of ours: the derived parser says so.
            None => serde_json::from_str(text),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subsystem {
    Agent,
    Master,
    Raft,
    Lease,
    Single,
    Call,
    Shell,
    Command,
}

/// Each subsystem's kinds, as its enum's variants name them (derived: serde and strum both
/// write a variant's name in snake case, so a new variant is routed without an edit here).
const KINDS: [(Subsystem, &[&str]); 8] = [
    (Subsystem::Agent, AgentEvent::VARIANTS),
    (Subsystem::Master, MasterEvent::VARIANTS),
    (Subsystem::Raft, RaftEvent::VARIANTS),
    (Subsystem::Lease, LeaseEvent::VARIANTS),
    (Subsystem::Single, SingleEvent::VARIANTS),
    (Subsystem::Call, CallEvent::VARIANTS),
    (Subsystem::Shell, ShellEvent::VARIANTS),
    (Subsystem::Command, CommandEvent::VARIANTS),
];

/// Every kind of event, as the timeline names them.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    KINDS.iter().flat_map(|(_, kinds)| kinds.iter().copied())
}

/// Which subsystem's enum has a variant of this kind. `every_kind_parses_straight_to_its_enum`
/// checks it against every kind.
fn subsystem(kind: &str) -> Option<Subsystem> {
    KINDS
        .iter()
        .find(|(_, kinds)| kinds.contains(&kind))
        .map(|(subsystem, _)| *subsystem)
}

/// Why a connection ended or never came up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The master refused the connection (nothing listening, or unreachable).
    Refused,
    /// The connection did not come up within the timeout.
    ConnectTimeout,
    /// The peer closed the connection.
    Closed,
    /// The connection broke with an I/O error.
    Reset,
    /// A heartbeat went unacknowledged for the timeout.
    HeartbeatTimeout,
    /// The registration went unacknowledged for the timeout.
    RegisterTimeout,
    /// The master refused the registration.
    Rejected,
    /// The peer sent a bad frame or an unexpected message.
    ProtocolError,
    /// This agent disconnected on purpose.
    Local,
    /// The master closed the session for good (the agent was decommissioned).
    NormalClose,
    /// The master is going away (shutting down, or an operator forced a reconnect).
    GoingAway,
    /// The master refused the agent's credentials, or revoked them.
    AuthFailed,
    /// The master is busy: at capacity, or enforcing its own backoff or retry limit.
    Busy,
    /// The master knows no leader yet (an election or a lease is under way).
    NoLeader,
}

impl DisconnectReason {
    /// Every reason, in the order defined.
    pub const ALL: [DisconnectReason; 14] = [
        DisconnectReason::Refused,
        DisconnectReason::ConnectTimeout,
        DisconnectReason::Closed,
        DisconnectReason::Reset,
        DisconnectReason::HeartbeatTimeout,
        DisconnectReason::RegisterTimeout,
        DisconnectReason::Rejected,
        DisconnectReason::ProtocolError,
        DisconnectReason::Local,
        DisconnectReason::NormalClose,
        DisconnectReason::GoingAway,
        DisconnectReason::AuthFailed,
        DisconnectReason::Busy,
        DisconnectReason::NoLeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Refused => "refused",
            DisconnectReason::ConnectTimeout => "connect_timeout",
            DisconnectReason::Closed => "closed",
            DisconnectReason::Reset => "reset",
            DisconnectReason::HeartbeatTimeout => "heartbeat_timeout",
            DisconnectReason::RegisterTimeout => "register_timeout",
            DisconnectReason::Rejected => "rejected",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Local => "local",
            DisconnectReason::NormalClose => "normal_close",
            DisconnectReason::GoingAway => "going_away",
            DisconnectReason::AuthFailed => "auth_failed",
            DisconnectReason::Busy => "busy",
            DisconnectReason::NoLeader => "no_leader",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agent's connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum AgentEvent {
    /// Attempt `attempt` of the cycle goes out after waiting `delay_ms`.
    ConnectAttempt {
        attempt: u32,
        delay_ms: u64,
        target: String,
    },
    Connected {
        target: String,
    },
    Registered {
        instance_id: String,
    },
    Disconnected {
        reason: DisconnectReason,
        /// When the master said when to come back (a busy refusal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// A master that does not lead pointed at `to`.
    Redirected {
        to: String,
    },
    ConnectFailed {
        reason: DisconnectReason,
    },
    /// Retries ran out; the next cycle starts after `ms`.
    LongWait {
        ms: u64,
    },
    GaveUp {
        attempts: u32,
    },
}

/// The master's registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum MasterEvent {
    NodeRegistered {
        agent: String,
        instance_id: String,
    },
    /// A registered agent that was offline is heard from again.
    NodeOnline {
        agent: String,
    },
    NodeOffline {
        agent: String,
        instance_id: String,
        silent_ms: u64,
        /// Marked by the transport's word that the agent is gone (an MQTT broker published its
        /// will), not by missed heartbeats.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        will: bool,
    },
    /// A new instance of `agent` registered; its old instance `instance_id` was dropped.
    InstanceReplaced {
        agent: String,
        instance_id: String,
    },
    NodeUnregistered {
        agent: String,
    },
    /// A master that stopped leading forgot its `agents`.
    RegistryCleared {
        agents: u64,
    },
    /// The leader refused `agent`'s registration: `refusal` is `busy`, `unauthorized`,
    /// `retry_limit` or `shutting_down`.
    RegistrationRefused {
        agent: String,
        refusal: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The master ended `agent`'s session on purpose, telling it why (`code`).
    SessionEnded {
        agent: String,
        code: String,
        reason: String,
    },
    /// The master is shutting down: it said goodbye to its `agents` and takes no more.
    ShuttingDown {
        agents: u64,
    },
    /// Admin `status`: the master's record of `agent`'s reconnection.
    AdminStatus {
        agent: String,
        connected: bool,
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_retry_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// Admin `active`: the agents the master holds reconnection records for.
    AdminActive {
        agents: Vec<String>,
    },
    /// Admin `cleanup`: records older than the expiry were dropped.
    AdminCleanup {
        removed: u64,
    },
    /// Admin `force`: `agent`'s record was cleared and its session (if any) ended, so it
    /// reconnects at once.
    AdminForce {
        agent: String,
        had_session: bool,
    },
}

/// Raft election.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum RaftEvent {
    /// Asking whether an election for `term` could be won.
    PreVoteStarted {
        term: u64,
    },
    ElectionStarted {
        term: u64,
    },
    VoteGranted {
        term: u64,
        candidate: String,
    },
    VoteDenied {
        term: u64,
        candidate: String,
        reason: String,
    },
    BecameLeader {
        term: u64,
        votes: u64,
    },
    BecameFollower {
        term: u64,
        leader: String,
    },
    SteppedDown {
        term: u64,
        reason: String,
    },
    /// A leader leaving hands its office to `to`, which holds everything it holds.
    TransferSent {
        term: u64,
        to: String,
    },
    /// The leader `from` handed its office over: this node runs for it at once.
    TransferReceived {
        term: u64,
        from: String,
    },
    /// On boot with an empty disk where it had run before: it votes in no term it may have
    /// voted in already, and in none until a leader brought it up to date.
    Recovering {},
    /// Safe again: up to date, and in a term past `floor`, the highest it may have voted in.
    Recovered {
        floor: u64,
    },
    /// On boot: the term and vote read back from stable storage.
    StateRestored {
        term: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voted_for: Option<String>,
    },
}

/// Lease mode: the holder of the lease leads; its fencing token numbers its time in office.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum LeaseEvent {
    LeaseAcquired {
        token: u64,
    },
    LeaseRenewed {
        token: u64,
    },
    LeaseLost {
        token: u64,
        reason: String,
    },
    /// The store says `holder` holds the lease under `token`, and it is not this node's grant.
    LeaseHolderSeen {
        holder: String,
        token: u64,
    },
    /// A lease the store held in this node's name (a grant from before its restart, or one whose
    /// reply came late) was taken back by compare-and-extend; it leads again under `token`.
    LeaseResumed {
        token: u64,
    },
}

/// Single mode: one master that leads from its start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum SingleEvent {
    LeadingAlone {},
}

/// Remote calls between masters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum CallEvent {
    RemoteCall {
        trace_id: String,
        to: String,
        function: String,
    },
    RemoteCallDone {
        trace_id: String,
        outcome: String,
    },
    RemoteCallServed {
        trace_id: String,
        from: String,
        function: String,
    },
}

/// Commands: sent and answered on the master, run on the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum CommandEvent {
    /// The master sent a command (again, after a re-registration).
    CommandSent {
        request_id: String,
        agent: String,
        name: String,
    },
    /// The first result for a command reached the master.
    CommandResult {
        request_id: String,
        agent: String,
        outcome: String,
    },
    /// The master gave up a command it accepted, and why.
    CommandLost {
        request_id: String,
        reason: String,
    },
    CommandStarted {
        request_id: String,
        name: String,
    },
    CommandFinished {
        request_id: String,
        outcome: String,
    },
    /// A copy of a command already seen: answered from memory, never run again.
    CommandDuplicate {
        request_id: String,
    },
    /// The master accepted a command for an agent it has no session with: it goes out when
    /// the agent registers.
    CommandQueued {
        request_id: String,
        agent: String,
        name: String,
    },
    /// A new leader took over the commands its predecessor had not finished.
    CommandsAdopted {
        count: u64,
    },
    /// The leader, in `term`, has a new config version and sends it to the `agents` it serves.
    ConfigPushed {
        version: u64,
        term: u64,
        agents: u64,
    },
    /// The agent applied a config: `version`, pushed by the leader of `term`.
    ConfigApplied {
        version: u64,
        term: u64,
    },
    /// The agent's status changed (`online`, `degraded` or `busy`).
    StatusChanged {
        status: String,
    },
}

/// The async shell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, VariantNames, IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum ShellEvent {
    /// A listener could not bind; the node does not serve.
    BindFailed { error: String },
    /// A session sent a frame that does not decode; only that session is closed.
    BadFrame { session: u64, error: String },
    /// A record on the node's disk does not read back; it is never acted on.
    BadRecord { record: String, error: String },
    /// A leader found its lease (or its quorum) had run out `overdue_ms` ago, as after a pause,
    /// and stopped acting as leader before doing anything else.
    LeadershipLapsed { overdue_ms: u64 },
    /// A fault point of the shell fired (`buggify`): `delay_ms` for a delay.
    FaultPoint {
        point: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
    },
    /// The MQTT broker lost `client` and published its will: its connection `closed` without
    /// a DISCONNECT, it was `silent` for 1.5 keepalives (`silent_ms` by the broker's clock), a
    /// new connection `took_over` its client id, or it broke the protocol (`protocol_error`).
    WillPublished {
        client: String,
        cause: String,
        silent_ms: u64,
    },
}

macro_rules! into_event {
    ($($group:ident => $variant:ident),* $(,)?) => {
        $(impl From<$group> for Event {
            fn from(event: $group) -> Event {
                Event::$variant(event)
            }
        })*
    };
}

into_event!(
    AgentEvent => Agent,
    MasterEvent => Master,
    RaftEvent => Raft,
    LeaseEvent => Lease,
    SingleEvent => Single,
    CallEvent => Call,
    ShellEvent => Shell,
    CommandEvent => Command,
);

/// Formats a value as JSON, only when a subscriber asks for it.
pub struct Json<'a, T>(pub &'a T);

impl<T: Serialize> fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// A core's events, in the order they happened, until the shell takes them. The shell drains
/// it after every input, so it never holds more than one input's worth.
#[derive(Debug, Default)]
pub struct Events(VecDeque<Event>);

impl Events {
    /// Queues `event` behind the others.
    pub fn push(&mut self, event: impl Into<Event>) {
        debug_assert!(self.0.len() < 1 << 20, "a shell drains its core's events");
        self.0.push_back(event.into());
    }

    /// The oldest event not yet taken.
    #[must_use]
    pub fn pop(&mut self) -> Option<Event> {
        self.0.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every kind (see [`every_kind_has_a_sample`]).
    fn samples() -> Vec<Event> {
        let s = |text: &str| text.to_string();
        vec![
            AgentEvent::ConnectAttempt {
                attempt: 2,
                delay_ms: 1000,
                target: s("master-1"),
            }
            .into(),
            AgentEvent::Connected {
                target: s("master-1"),
            }
            .into(),
            AgentEvent::Registered {
                instance_id: s("agent-1-sim-101"),
            }
            .into(),
            AgentEvent::Disconnected {
                reason: DisconnectReason::Busy,
                retry_after_ms: Some(2000),
            }
            .into(),
            MasterEvent::RegistrationRefused {
                agent: s("agent-1"),
                refusal: s("busy"),
                retry_after_ms: Some(2000),
            }
            .into(),
            MasterEvent::SessionEnded {
                agent: s("agent-1"),
                code: s("going_away"),
                reason: s("forced"),
            }
            .into(),
            MasterEvent::ShuttingDown { agents: 3 }.into(),
            MasterEvent::AdminStatus {
                agent: s("agent-1"),
                connected: false,
                attempts: 2,
                next_retry_ms: Some(4000),
                reason: s("connection closed"),
            }
            .into(),
            MasterEvent::AdminActive {
                agents: vec![s("agent-1")],
            }
            .into(),
            MasterEvent::AdminCleanup { removed: 1 }.into(),
            MasterEvent::AdminForce {
                agent: s("agent-1"),
                had_session: true,
            }
            .into(),
            AgentEvent::Redirected { to: s("master-2") }.into(),
            AgentEvent::ConnectFailed {
                reason: DisconnectReason::Refused,
            }
            .into(),
            AgentEvent::LongWait { ms: 60_000 }.into(),
            AgentEvent::GaveUp { attempts: 10 }.into(),
            MasterEvent::NodeRegistered {
                agent: s("agent-1"),
                instance_id: s("agent-1-sim-101"),
            }
            .into(),
            MasterEvent::NodeOnline {
                agent: s("agent-1"),
            }
            .into(),
            MasterEvent::NodeOffline {
                agent: s("agent-1"),
                instance_id: s("agent-1-sim-101"),
                silent_ms: 3000,
                will: false,
            }
            .into(),
            MasterEvent::InstanceReplaced {
                agent: s("agent-1"),
                instance_id: s("agent-1-sim-101"),
            }
            .into(),
            MasterEvent::NodeUnregistered {
                agent: s("agent-1"),
            }
            .into(),
            MasterEvent::RegistryCleared { agents: 3 }.into(),
            RaftEvent::PreVoteStarted { term: 2 }.into(),
            RaftEvent::ElectionStarted { term: 2 }.into(),
            RaftEvent::VoteGranted {
                term: 2,
                candidate: s("master-1"),
            }
            .into(),
            RaftEvent::VoteDenied {
                term: 2,
                candidate: s("master-1"),
                reason: s("voted for master-3"),
            }
            .into(),
            RaftEvent::BecameLeader { term: 2, votes: 2 }.into(),
            RaftEvent::BecameFollower {
                term: 2,
                leader: s("master-1"),
            }
            .into(),
            RaftEvent::SteppedDown {
                term: 2,
                reason: s("higher term"),
            }
            .into(),
            RaftEvent::StateRestored {
                term: 2,
                voted_for: Some(s("master-1")),
            }
            .into(),
            RaftEvent::TransferSent {
                term: 2,
                to: s("master-3"),
            }
            .into(),
            RaftEvent::TransferReceived {
                term: 2,
                from: s("master-1"),
            }
            .into(),
            RaftEvent::Recovering {}.into(),
            RaftEvent::Recovered { floor: 4 }.into(),
            LeaseEvent::LeaseAcquired { token: 1 }.into(),
            LeaseEvent::LeaseRenewed { token: 1 }.into(),
            LeaseEvent::LeaseLost {
                token: 1,
                reason: s("expired"),
            }
            .into(),
            LeaseEvent::LeaseHolderSeen {
                holder: s("master-2"),
                token: 1,
            }
            .into(),
            LeaseEvent::LeaseResumed { token: 1 }.into(),
            SingleEvent::LeadingAlone {}.into(),
            CallEvent::RemoteCall {
                trace_id: s("master-1#1"),
                to: s("master-2"),
                function: s("echo"),
            }
            .into(),
            CallEvent::RemoteCallDone {
                trace_id: s("master-1#1"),
                outcome: s("ok"),
            }
            .into(),
            CallEvent::RemoteCallServed {
                trace_id: s("master-1#1"),
                from: s("master-1"),
                function: s("echo"),
            }
            .into(),
            ShellEvent::BindFailed {
                error: s("address in use"),
            }
            .into(),
            ShellEvent::BadRecord {
                record: s("ledger"),
                error: s("expected value at line 1 column 1"),
            }
            .into(),
            ShellEvent::LeadershipLapsed { overdue_ms: 5000 }.into(),
            ShellEvent::WillPublished {
                client: s("agent-1"),
                cause: s("silent"),
                silent_ms: 1500,
            }
            .into(),
            ShellEvent::FaultPoint {
                point: s("delayed_send"),
                delay_ms: Some(1200),
            }
            .into(),
            ShellEvent::BadFrame {
                session: 4,
                error: s("malformed 3-byte frame"),
            }
            .into(),
            CommandEvent::CommandStarted {
                request_id: s("master-1-7"),
                name: s("echo"),
            }
            .into(),
            CommandEvent::CommandFinished {
                request_id: s("master-1-7"),
                outcome: s("ok"),
            }
            .into(),
            CommandEvent::CommandDuplicate {
                request_id: s("master-1-7"),
            }
            .into(),
            CommandEvent::CommandSent {
                request_id: s("master-1-7"),
                agent: s("agent-3"),
                name: s("echo"),
            }
            .into(),
            CommandEvent::CommandResult {
                request_id: s("master-1-7"),
                agent: s("agent-3"),
                outcome: s("ok"),
            }
            .into(),
            CommandEvent::CommandLost {
                request_id: s("master-1-7"),
                reason: s("master stopped leading before the result"),
            }
            .into(),
            CommandEvent::CommandsAdopted { count: 2 }.into(),
            CommandEvent::CommandQueued {
                request_id: s("master-1-8"),
                agent: s("agent-3"),
                name: s("echo"),
            }
            .into(),
            CommandEvent::ConfigPushed {
                version: 2,
                term: 3,
                agents: 5,
            }
            .into(),
            CommandEvent::ConfigApplied {
                version: 2,
                term: 3,
            }
            .into(),
            CommandEvent::StatusChanged { status: s("busy") }.into(),
        ]
    }

    /// A number per kind. The match is exhaustive, so a new kind must be numbered here, and
    /// then `every_kind_has_a_sample` fails until `samples` shows it.
    fn number(event: &Event) -> usize {
        use AgentEvent as A;
        use MasterEvent as M;
        use RaftEvent as R;
        match event {
            Event::Agent(event) => match event {
                A::ConnectAttempt { .. } => 0,
                A::Connected { .. } => 1,
                A::Registered { .. } => 2,
                A::Disconnected { .. } => 3,
                A::Redirected { .. } => 4,
                A::ConnectFailed { .. } => 5,
                A::LongWait { .. } => 6,
                A::GaveUp { .. } => 7,
            },
            Event::Master(event) => match event {
                M::NodeRegistered { .. } => 8,
                M::NodeOnline { .. } => 9,
                M::NodeOffline { .. } => 10,
                M::NodeUnregistered { .. } => 11,
                M::RegistryCleared { .. } => 12,
                M::InstanceReplaced { .. } => 31,
                M::RegistrationRefused { .. } => 44,
                M::SessionEnded { .. } => 45,
                M::ShuttingDown { .. } => 46,
                M::AdminStatus { .. } => 47,
                M::AdminActive { .. } => 48,
                M::AdminCleanup { .. } => 49,
                M::AdminForce { .. } => 50,
            },
            Event::Raft(event) => match event {
                R::PreVoteStarted { .. } => 13,
                R::ElectionStarted { .. } => 14,
                R::VoteGranted { .. } => 15,
                R::VoteDenied { .. } => 16,
                R::BecameLeader { .. } => 17,
                R::BecameFollower { .. } => 18,
                R::SteppedDown { .. } => 19,
                R::StateRestored { .. } => 30,
                R::TransferSent { .. } => 52,
                R::TransferReceived { .. } => 53,
                R::Recovering {} => 54,
                R::Recovered { .. } => 55,
            },
            Event::Lease(event) => match event {
                LeaseEvent::LeaseAcquired { .. } => 20,
                LeaseEvent::LeaseRenewed { .. } => 21,
                LeaseEvent::LeaseLost { .. } => 22,
                LeaseEvent::LeaseHolderSeen { .. } => 23,
                LeaseEvent::LeaseResumed { .. } => 32,
            },
            Event::Single(SingleEvent::LeadingAlone {}) => 24,
            Event::Call(event) => match event {
                CallEvent::RemoteCall { .. } => 25,
                CallEvent::RemoteCallDone { .. } => 26,
                CallEvent::RemoteCallServed { .. } => 27,
            },
            Event::Shell(event) => match event {
                ShellEvent::BindFailed { .. } => 28,
                ShellEvent::BadFrame { .. } => 29,
                ShellEvent::BadRecord { .. } => 51,
                ShellEvent::LeadershipLapsed { .. } => 56,
                ShellEvent::FaultPoint { .. } => 57,
                ShellEvent::WillPublished { .. } => 58,
            },
            Event::Command(event) => match event {
                CommandEvent::CommandStarted { .. } => 33,
                CommandEvent::CommandFinished { .. } => 34,
                CommandEvent::CommandDuplicate { .. } => 35,
                CommandEvent::CommandSent { .. } => 36,
                CommandEvent::CommandResult { .. } => 37,
                CommandEvent::CommandLost { .. } => 38,
                CommandEvent::CommandsAdopted { .. } => 39,
                CommandEvent::ConfigPushed { .. } => 40,
                CommandEvent::ConfigApplied { .. } => 41,
                CommandEvent::StatusChanged { .. } => 42,
                CommandEvent::CommandQueued { .. } => 43,
            },
        }
    }

    #[test]
    fn every_kind_parses_straight_to_its_enum() {
        for event in samples() {
            let text = Json(&event).to_string();
            assert_eq!(Event::from_json(&text).unwrap(), event, "{text}");
            let slow: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(slow, event);
        }
        assert!(Event::from_json(r#"{"kind":"no_such_kind"}"#).is_err());
        assert!(
            Event::from_json(r#"{"kind":"connected"}"#).is_err(),
            "a field is missing"
        );
        assert!(Event::from_json("[").is_err());
    }

    #[test]
    fn every_kind_has_a_sample() {
        let mut seen: Vec<usize> = samples().iter().map(number).collect();
        seen.sort();
        assert_eq!(seen, (0..59).collect::<Vec<_>>());
    }

    fn kind(event: &Event) -> String {
        let value = serde_json::to_value(event).unwrap();
        value["kind"].as_str().unwrap().to_string()
    }

    #[test]
    fn each_event_names_its_kind() {
        for event in samples() {
            assert_eq!(event.kind(), kind(&event));
            assert!(kinds().any(|k| k == event.kind()));
        }
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in samples() {
            let text = Json(&event).to_string();
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
        }
    }

    #[test]
    fn kinds_are_distinct_across_subsystems() {
        let mut kinds: Vec<String> = samples().iter().map(kind).collect();
        let count = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), count, "a kind is defined twice: {kinds:?}");
    }

    #[test]
    fn fields_keep_their_written_order() {
        let event: Event = AgentEvent::ConnectAttempt {
            attempt: 2,
            delay_ms: 1000,
            target: "master-1".into(),
        }
        .into();
        assert_eq!(
            Json(&event).to_string(),
            r#"{"kind":"connect_attempt","attempt":2,"delay_ms":1000,"target":"master-1"}"#
        );
    }

    #[test]
    fn an_unknown_kind_or_field_is_refused() {
        for text in [
            r#"{"kind":"became_king","term":1}"#,
            r#"{"kind":"became_leader","term":1}"#,
            r#"{"kind":"became_leader","term":1,"votes":2,"extra":3}"#,
        ] {
            assert!(serde_json::from_str::<Event>(text).is_err(), "{text}");
        }
    }
}
