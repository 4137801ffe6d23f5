//! The master's registry: which agents are registered, on which session, and whether each is
//! online. Sans-IO: the shell feeds it messages and timeouts with `now`, and pulls the frames to
//! send and the sessions to close.

use crate::attempts::{Admission, AttemptManager, AttemptPolicy, Refuse, TokenBucket};
use crate::auth::Credentials;
use crate::command::{Command, Outbox, Pending, Received, OUTBOX_BUDGET};
use crate::timeline::{CommandEvent, Event, Events, MasterEvent};
use crate::wire::{
    payload_len, CloseCode, ConfigId, ConfigPush, Goodbye, HeartbeatAck, Message, NodeStatus,
    Redirect, Refusal, Register, RegisterAck, MAX_FRAME_DEFAULT,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
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
}

impl Default for MasterConfig {
    /// `master-1`, heartbeats every second, offline after 3 missed, no authentication, no
    /// admission limit, attempt records kept but not enforced.
    fn default() -> Self {
        MasterConfig {
            name: "master-1".into(),
            heartbeat_interval: Duration::from_secs(1),
            max_miss: 3,
            auth_secret: None,
            admission: None,
            attempts: AttemptPolicy::default(),
        }
    }
}

impl MasterConfig {
    /// How long an agent may stay silent before it is marked offline.
    pub fn offline_after(&self) -> Duration {
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

#[derive(Clone, Debug)]
pub struct NodeEntry {
    pub info: Register,
    /// The session the newest registration came on; `None` once that session closed.
    pub session: Option<SessionId>,
    pub liveness: Liveness,
    pub status: NodeStatus,
    /// The metrics of its latest heartbeat.
    pub metrics: BTreeMap<String, f64>,
    /// The config the agent last acknowledged.
    pub config: ConfigId,
    pub last_heard: Instant,
}

/// The registered nodes in slots, indexed by instance id. Sessions name slots, so a heartbeat
/// finds its node without comparing strings; every iteration follows instance-id order.
#[derive(Debug, Default)]
struct NodeTable {
    slots: Vec<Option<NodeEntry>>,
    free: Vec<usize>,
    by_id: BTreeMap<String, usize>,
    /// Each agent's newest instance: one agent has one entry.
    by_name: BTreeMap<String, usize>,
}

impl NodeTable {
    fn slot(&self, instance_id: &str) -> Option<usize> {
        self.by_id.get(instance_id).copied()
    }

    /// The slot of `agent`'s registered instance, whichever it is.
    fn slot_of_agent(&self, agent: &str) -> Option<usize> {
        self.by_name.get(agent).copied()
    }

    fn get_mut(&mut self, slot: usize) -> Option<&mut NodeEntry> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn insert(&mut self, entry: NodeEntry) -> usize {
        let id = entry.info.instance_id.clone();
        let name = entry.info.node_name.clone();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        self.by_name.insert(name, slot);
        slot
    }

    fn remove(&mut self, slot: usize) -> Option<NodeEntry> {
        let entry = self.slots.get_mut(slot)?.take()?;
        self.by_id.remove(&entry.info.instance_id);
        if self.by_name.get(&entry.info.node_name) == Some(&slot) {
            self.by_name.remove(&entry.info.node_name);
        }
        self.free.push(slot);
        Some(entry)
    }

    fn clear(&mut self) {
        *self = NodeTable::default();
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &NodeEntry)> {
        self.by_id.iter().filter_map(|(id, &slot)| {
            let entry = self.slots[slot].as_ref()?;
            Some((id.as_str(), entry))
        })
    }

    fn for_each_mut(&mut self, mut f: impl FnMut(&mut NodeEntry)) {
        for &slot in self.by_id.values() {
            if let Some(entry) = self.slots[slot].as_mut() {
                f(entry);
            }
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    config: MasterConfig,
    leadership: Leadership,
    nodes: NodeTable,
    /// Which node's slot each registered session speaks for.
    sessions: BTreeMap<SessionId, usize>,
    actions: VecDeque<MasterAction>,
    /// No online node can go silent before this; a lower bound, refreshed by each sweep.
    next_sweep: Option<Instant>,
    /// Commands accepted and not yet answered. A follower's is the leader's, as last handed
    /// over.
    outbox: Outbox,
    /// The config agents are brought to.
    fleet_config: ConfigPush,
    /// The highest term this master has been told of; it stamps the configs it pushes.
    term: u64,
    /// Commands this master had when it stopped leading, until the next leader's handover says
    /// which it took over; the rest are reported lost then.
    unconfirmed: Vec<Pending>,
    /// Counts changes to what [`Registry::durable`] returns, so the shell knows when to write.
    changes: u64,
    /// Counts changes a successor must hear of at once: a command accepted, a config pushed,
    /// commands taken over. A result is not one: a successor that missed it sends the command
    /// again and the agent answers from memory, so results travel with the periodic handover.
    handover_seq: u64,
    /// What registrations are checked against, when the cluster authenticates.
    credentials: Option<Credentials>,
    admission: Option<TokenBucket>,
    attempts: AttemptManager,
    /// Shutting down: it has said goodbye to its agents and takes no more.
    shutting_down: bool,
    /// What it reports, until the shell takes it.
    events: Events,
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

/// What a leader hands the other masters, so whichever leads next takes over its commands and
/// config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub outbox: Outbox,
    pub config: ConfigPush,
    /// The leader's term when it sent this: a follower that knows a newer term ignores it (a
    /// handover held on a cut link can arrive long after its leader was deposed).
    #[serde(default)]
    pub term: u64,
}

/// What a master keeps on its disk: a restart finds its commands, its config, and what it
/// still has to account for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    pub handover: Handover,
    pub unconfirmed: Vec<Pending>,
    /// It led when it wrote this: its pending commands were its own to deliver, and a restart
    /// must account for them. A follower's are a copy of its leader's.
    #[serde(default)]
    pub leading: bool,
}

impl Registry {
    pub fn new(config: MasterConfig) -> Self {
        debug_assert!(config.max_miss > 0 && !config.heartbeat_interval.is_zero());
        let outbox = Outbox::new(&config.name);
        let credentials = config.auth_secret.as_deref().map(Credentials::new);
        let admission = config
            .admission
            .map(|limit| TokenBucket::new(limit.capacity));
        let attempts = AttemptManager::new(config.attempts);
        Registry {
            credentials,
            admission,
            attempts,
            shutting_down: false,
            config,
            leadership: Leadership::Leader,
            nodes: NodeTable::default(),
            sessions: BTreeMap::new(),
            actions: VecDeque::new(),
            next_sweep: None,
            outbox,
            fleet_config: ConfigPush::default(),
            term: 0,
            unconfirmed: Vec::new(),
            changes: 0,
            handover_seq: 0,
            events: Events::default(),
        }
    }

    /// Names the commands this master accepts `{prefix}-N` instead of `{name}-N`; call before
    /// anything else. A master that lost its disk takes a new prefix, so its ids never repeat
    /// ones its agents still remember.
    pub fn name_commands(&mut self, prefix: &str) {
        self.outbox = Outbox::new(prefix);
    }

    /// Takes back what an earlier incarnation kept on disk; call before anything else.
    pub fn restore(&mut self, durable: Durable) {
        // The outbox's numbering comes back too, so ids accepted before the crash never repeat.
        self.outbox = durable.handover.outbox;
        self.outbox.recount();
        self.fleet_config = durable.handover.config;
        self.term = self.term.max(durable.handover.term);
        self.unconfirmed = durable.unconfirmed;
        if !durable.leading {
            // It followed when it went down: what it holds is its leader's copy, nothing it
            // must account for when it first learns it does not lead.
            self.leadership = Leadership::Follower { leader: None };
        }
    }

    /// What this master keeps on disk, as JSON that reads back as a [`Durable`], written
    /// without copying the outbox.
    pub fn durable_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct HandoverRef<'a> {
            outbox: &'a Outbox,
            config: &'a ConfigPush,
            term: u64,
        }
        #[derive(Serialize)]
        struct DurableRef<'a> {
            handover: HandoverRef<'a>,
            unconfirmed: &'a [Pending],
            leading: bool,
        }
        let durable = DurableRef {
            handover: HandoverRef {
                outbox: &self.outbox,
                config: &self.fleet_config,
                term: self.term,
            },
            unconfirmed: &self.unconfirmed,
            leading: self.leadership == Leadership::Leader,
        };
        serde_json::to_vec(&durable).expect("a registry serializes")
    }

    /// What this master keeps on disk.
    pub fn durable(&self) -> Durable {
        Durable {
            handover: Handover {
                outbox: self.outbox.clone(),
                config: self.fleet_config.clone(),
                term: self.term,
            },
            unconfirmed: self.unconfirmed.clone(),
            leading: self.leadership == Leadership::Leader,
        }
    }

    /// Goes up whenever [`durable`](Self::durable) would return something new.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Goes up whenever the other masters must be handed the news at once.
    pub fn handover_seq(&self) -> u64 {
        self.handover_seq
    }

    /// What a leader hands the other masters (even with nothing in it: it tells a master that
    /// gave up leading that nothing of its own went on); `None` unless it leads.
    pub fn handover(&self) -> Option<Handover> {
        (self.leadership == Leadership::Leader).then(|| Handover {
            outbox: self.outbox.clone(),
            config: self.fleet_config.clone(),
            term: self.term,
        })
    }

    /// The leader `from` handed over its commands and config. A follower of `from` keeps them
    /// for when it leads. Of what it gave up leading with, what `from` holds is settled; the
    /// rest it returns, and keeps returning with each handover until `from` holds it too
    /// ([`handle_hand_back`](Self::handle_hand_back)). Returns the commands to send back.
    pub fn handle_handover(&mut self, from: &str, handover: Handover) -> Vec<Pending> {
        let follows = matches!(&self.leadership, Leadership::Follower { leader: Some(leader) } if leader == from);
        if !follows || handover.term < self.term {
            return Vec::new();
        }
        let same = self.unconfirmed.is_empty()
            && self.outbox.same_contents(&handover.outbox)
            && self.fleet_config.id >= handover.config.id;
        if same {
            return Vec::new();
        }
        let before = self.unconfirmed.len();
        (self.unconfirmed).retain(|pending| !handover.outbox.knows(&pending.command.request_id));
        let settled = before != self.unconfirmed.len();
        let contents_changed = !self.outbox.same_contents(&handover.outbox);
        self.outbox.replace_contents(&handover.outbox);
        let newer_config = handover.config.id > self.fleet_config.id;
        if newer_config {
            self.fleet_config = handover.config;
        }
        if settled || contents_changed || newer_config {
            self.changes += 1;
        }
        self.unconfirmed.clone()
    }

    /// A master that gave up leading returns commands the leader does not hold: the leader
    /// takes them over and sends them, so a command accepted by a leader cut off from the
    /// others still runs. One it cannot hold (its outbox is full) is reported lost, and
    /// counted as answered so it is not returned again.
    pub fn handle_hand_back(&mut self, from: &str, returned: Vec<Pending>) {
        if self.leadership != Leadership::Leader {
            return;
        }
        let mut adopted = Vec::new();
        let mut refused = false;
        for pending in returned {
            let id = pending.command.request_id.clone();
            if self.outbox.knows(&id) {
                continue;
            }
            if self.outbox.pending_bytes() >= OUTBOX_BUDGET {
                self.events.push(CommandEvent::CommandLost {
                    request_id: id.clone(),
                    reason: format!("returned by {from} to a leader whose outbox is full"),
                });
                self.outbox.settle(&id);
                refused = true;
                continue;
            }
            adopted.push((pending.agent.clone(), pending.command.clone()));
            self.outbox.restore_pending(pending);
        }
        if refused || !adopted.is_empty() {
            // The master that returned them learns from the next handover, at once.
            self.changes += 1;
            self.handover_seq += 1;
        }
        if adopted.is_empty() {
            return;
        }
        self.events.push(CommandEvent::CommandsAdopted {
            count: adopted.len() as u64,
        });
        for (agent, command) in adopted {
            let session = (self.nodes.slot_of_agent(&agent))
                .and_then(|slot| self.nodes.get_mut(slot))
                .and_then(|entry| entry.session);
            if let Some(session) = session {
                self.send_command(session, &agent, command);
            }
        }
    }

    /// Raises the config to a new version with `values` and pushes it to every agent this
    /// leader serves; an agent away now pulls it when it is back. Returns the new version.
    pub fn push_config(&mut self, values: BTreeMap<String, String>) -> Result<u64, SubmitError> {
        if self.leadership != Leadership::Leader {
            return Err(SubmitError::NotLeader);
        }
        let id = ConfigId {
            term: self.term.max(self.fleet_config.id.term),
            version: self.fleet_config.id.version + 1,
        };
        let push = ConfigPush { id, values };
        let len = payload_len(&Message::ConfigPush(Box::new(push.clone())));
        if len > MAX_FRAME_DEFAULT {
            let max = MAX_FRAME_DEFAULT;
            return Err(SubmitError::TooLarge { len, max });
        }
        self.fleet_config = push;
        self.changes += 1;
        self.handover_seq += 1;
        let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        self.events.push(CommandEvent::ConfigPushed {
            version: id.version,
            term: id.term,
            agents: sessions.len() as u64,
        });
        for session in sessions {
            self.send(
                session,
                Message::ConfigPush(Box::new(self.fleet_config.clone())),
            );
        }
        Ok(id.version)
    }

    /// The current config.
    pub fn config_id(&self) -> ConfigId {
        self.fleet_config.id
    }

    /// The cluster's term as this master last saw it (a raft term, a lease's fencing token):
    /// the configs it pushes carry it.
    pub fn observe_term(&mut self, term: u64) {
        self.term = self.term.max(term);
    }

    /// Accepts a command for `agent` and sends it now if the agent has a session; otherwise
    /// it goes out when the agent registers. Only the leader accepts commands.
    pub fn submit(
        &mut self,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<String, SubmitError> {
        if self.leadership != Leadership::Leader {
            return Err(SubmitError::NotLeader);
        }
        let (bytes, budget) = (self.outbox.pending_bytes(), OUTBOX_BUDGET);
        if bytes >= budget {
            return Err(SubmitError::OutboxFull { bytes, budget });
        }
        let command = self.outbox.accept(agent, name, args, timeout);
        let request_id = command.request_id.clone();
        let len = payload_len(&Message::Command(Box::new(command.clone())));
        if len > MAX_FRAME_DEFAULT {
            self.outbox.withdraw(&request_id);
            let max = MAX_FRAME_DEFAULT;
            return Err(SubmitError::TooLarge { len, max });
        }
        self.changes += 1;
        self.handover_seq += 1;
        let session = (self.nodes.slot_of_agent(agent))
            .and_then(|slot| self.nodes.get_mut(slot))
            .and_then(|entry| entry.session);
        match session {
            Some(session) => self.send_command(session, agent, command),
            None => self.events.push(CommandEvent::CommandQueued {
                request_id: command.request_id,
                agent: agent.to_string(),
                name: command.name,
            }),
        }
        Ok(request_id)
    }

    fn send_command(&mut self, session: SessionId, agent: &str, command: Command) {
        self.events.push(CommandEvent::CommandSent {
            request_id: command.request_id.clone(),
            agent: agent.to_string(),
            name: command.name.clone(),
        });
        self.send(session, Message::Command(Box::new(command)));
    }

    /// Commands accepted and not yet answered.
    pub fn pending_commands(&self) -> usize {
        self.outbox.pending()
    }

    /// Leadership changed. A leader that stops leading closes every agent session and forgets
    /// its registry: the next leader rebuilds its own from the agents' re-registrations.
    pub fn handle_leadership(&mut self, leadership: Leadership) {
        if leadership == self.leadership {
            return;
        }
        let was_leader = self.leadership == Leadership::Leader;
        self.leadership = leadership;
        if was_leader && self.leadership != Leadership::Leader && self.nodes.len() > 0 {
            let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
            self.events.push(MasterEvent::RegistryCleared {
                agents: self.nodes.len() as u64,
            });
            self.nodes.clear();
            self.sessions.clear();
            self.next_sweep = None;
            for session in sessions {
                self.close(session, "master stopped leading");
            }
        }
        if was_leader && self.leadership != Leadership::Leader {
            // Nothing accepted vanishes silently: the next leader's handover says which of
            // these it took over, and the rest are reported lost then.
            let known = self.unconfirmed.clone();
            let new = (self.outbox.pending_commands())
                .filter(|pending| !known.iter().any(|p| p.command == pending.command));
            self.unconfirmed.extend(new.cloned().collect::<Vec<_>>());
            self.changes += 1;
        }
        if !was_leader && self.leadership == Leadership::Leader {
            // Leading again: what it gave up is its own to send once more, with whatever the
            // last leader handed over.
            for pending in std::mem::take(&mut self.unconfirmed) {
                self.outbox.restore_pending(pending);
            }
            let count = self.outbox.pending() as u64;
            if count > 0 {
                self.events.push(CommandEvent::CommandsAdopted { count });
            }
            self.changes += 1;
            self.handover_seq += 1;
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn handle_message(&mut self, now: Instant, session: SessionId, message: Message) {
        match message {
            Message::Register(info) => {
                if self.shutting_down {
                    return self.refuse(now, session, &info, Refusal::ShuttingDown, None);
                }
                match self.leadership.clone() {
                    Leadership::Leader => self.admit(now, session, *info),
                    Leadership::Follower {
                        leader: Some(leader),
                    } => {
                        self.send(session, Message::Redirect(Redirect { leader }));
                        self.close(session, "redirected to the leader");
                    }
                    Leadership::Follower { leader: None } => {
                        self.refuse(now, session, &info, Refusal::NoLeader, None);
                    }
                }
            }
            Message::Heartbeat(heartbeat) => {
                let config = self.fleet_config.id;
                let Some(entry) = self.entry_for(session) else {
                    return self.close(session, "heartbeat before register");
                };
                entry.last_heard = now;
                entry.status = heartbeat.status;
                if !(heartbeat.metrics.is_empty() && entry.metrics.is_empty()) {
                    entry.metrics = heartbeat.metrics;
                }
                let back_online = (entry.liveness == Liveness::Offline).then(|| {
                    entry.liveness = Liveness::Online;
                    entry.info.node_name.clone()
                });
                if let Some(agent) = back_online {
                    self.events.push(MasterEvent::NodeOnline { agent });
                }
                self.schedule_sweep(now + self.config.offline_after());
                self.send(
                    session,
                    Message::HeartbeatAck(HeartbeatAck {
                        seq: heartbeat.seq,
                        config,
                    }),
                );
            }
            Message::Unregister(_) => {
                if let Some(slot) = self.sessions.remove(&session) {
                    if let Some(entry) = self.nodes.remove(slot) {
                        self.events.push(MasterEvent::NodeUnregistered {
                            agent: entry.info.node_name,
                        });
                    }
                }
                self.close(session, "unregistered");
            }
            Message::CommandResult(result) => {
                if self.entry_for(session).is_none() {
                    return self.close(session, "result before register");
                }
                // A copy of a result already taken, or one for a command another master
                // accepted (before a failover), changes nothing.
                if let Received::First { agent } = self.outbox.receive(&result) {
                    self.changes += 1;
                    self.events.push(CommandEvent::CommandResult {
                        request_id: result.request_id,
                        agent,
                        outcome: result.outcome.name().to_string(),
                    });
                }
            }
            Message::ConfigPull(pull) => {
                if self.entry_for(session).is_none() {
                    return self.close(session, "config pull before register");
                }
                if pull.have < self.fleet_config.id {
                    self.send(
                        session,
                        Message::ConfigPush(Box::new(self.fleet_config.clone())),
                    );
                }
            }
            Message::ConfigAck(ack) => {
                let Some(entry) = self.entry_for(session) else {
                    return self.close(session, "config ack before register");
                };
                entry.config = entry.config.max(ack.id);
            }
            Message::RegisterAck(_)
            | Message::HeartbeatAck(_)
            | Message::Redirect(_)
            | Message::Command(_)
            | Message::ConfigPush(_)
            | Message::Goodbye(_) => {
                self.close(session, "unexpected message from agent");
            }
        }
    }

    /// The leader's gate: admission capacity first (it protects the master from a storm, so
    /// it counts every registration), then credentials, then the attempt manager.
    fn admit(&mut self, now: Instant, session: SessionId, info: Register) {
        if let Some(bucket) = &mut self.admission {
            if !bucket.try_take(now) {
                let retry_after = self.config.admission.and_then(|limit| limit.retry_after);
                return self.refuse(now, session, &info, Refusal::Busy, retry_after);
            }
        }
        if let Some(credentials) = &self.credentials {
            if credentials.verify(&info.node_name, &info.token).is_err() {
                return self.refuse(now, session, &info, Refusal::Unauthorized, None);
            }
        }
        match self.attempts.should_reconnect(&info.instance_id, now) {
            Ok(()) => {}
            Err(Refuse::TooSoon(_)) => {
                // Counted as a failed attempt first: the wait named is the one the next
                // attempt will be judged by.
                self.attempts.record_attempt(&info.instance_id, now, false);
                let wait = self.attempts.wait(&info.instance_id, now);
                return self.refuse_counted(session, &info, Refusal::Busy, wait);
            }
            Err(Refuse::RetryLimit) => {
                return self.refuse(now, session, &info, Refusal::RetryLimit, None);
            }
        }
        self.attempts.record_attempt(&info.instance_id, now, true);
        self.register(now, session, info);
    }

    /// Answers a registration with `refusal` and closes the session; a failed attempt on the
    /// agent's record.
    fn refuse(
        &mut self,
        now: Instant,
        session: SessionId,
        info: &Register,
        refusal: Refusal,
        retry_after: Option<Duration>,
    ) {
        if refusal != Refusal::NoLeader {
            self.attempts.record_attempt(&info.instance_id, now, false);
        }
        self.refuse_counted(session, info, refusal, retry_after);
    }

    /// [`refuse`](Self::refuse), with the attempt already on the record.
    fn refuse_counted(
        &mut self,
        session: SessionId,
        info: &Register,
        refusal: Refusal,
        retry_after: Option<Duration>,
    ) {
        let (name, reason) = match refusal {
            Refusal::None => unreachable!("a refusal refuses"),
            Refusal::NoLeader => ("no_leader", "no leader elected"),
            Refusal::Unauthorized => ("unauthorized", "bad or revoked credentials"),
            Refusal::Busy => ("busy", "busy; come back later"),
            Refusal::RetryLimit => ("retry_limit", "too many reconnection attempts"),
            Refusal::ShuttingDown => ("shutting_down", "master shutting down"),
        };
        let retry_after_ms = retry_after.map(|after| after.as_millis().max(1) as u64);
        if refusal != Refusal::NoLeader {
            // A follower refusing for want of a leader is no news; the leader's refusals are.
            self.events.push(MasterEvent::RegistrationRefused {
                agent: info.node_name.clone(),
                refusal: name.to_string(),
                retry_after_ms,
            });
        }
        self.send(
            session,
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id: info.instance_id.clone(),
                reason: reason.into(),
                heartbeat_interval_ms: 0,
                refusal,
                retry_after_ms: retry_after_ms.unwrap_or(0),
            })),
        );
        self.close(session, reason);
    }

    fn register(&mut self, now: Instant, session: SessionId, info: Register) {
        let existing = self.nodes.slot(&info.instance_id);
        self.replace_older_instance(&info, existing);
        if let Some(previous) = self.sessions.get(&session).copied() {
            if Some(previous) != existing {
                // A session speaks for one instance; re-registering under another id detaches
                // the first, which then goes silent like any other.
                if let Some(entry) = self.nodes.get_mut(previous) {
                    entry.session = None;
                }
            }
        }
        let instance_id = info.instance_id.clone();
        let agent = info.node_name.clone();
        let (slot, superseded) = match existing {
            Some(slot) => {
                let entry = self.nodes.get_mut(slot).expect("indexed slots hold a node");
                let superseded = entry.session.filter(|&old| old != session);
                let was_offline = entry.liveness == Liveness::Offline;
                entry.info = info;
                entry.session = Some(session);
                entry.liveness = Liveness::Online;
                entry.last_heard = now;
                self.events.push(MasterEvent::NodeRegistered {
                    agent: agent.clone(),
                    instance_id: instance_id.clone(),
                });
                if was_offline {
                    self.events.push(MasterEvent::NodeOnline {
                        agent: agent.clone(),
                    });
                }
                (slot, superseded)
            }
            None => {
                self.events.push(MasterEvent::NodeRegistered {
                    agent: agent.clone(),
                    instance_id: instance_id.clone(),
                });
                let slot = self.nodes.insert(NodeEntry {
                    info,
                    session: Some(session),
                    liveness: Liveness::Online,
                    status: NodeStatus::Online,
                    metrics: BTreeMap::new(),
                    config: ConfigId::default(),
                    last_heard: now,
                });
                (slot, None)
            }
        };
        self.sessions.insert(session, slot);
        if let Some(old) = superseded {
            // The newest session wins; the old one is closed so its agent cannot linger.
            self.sessions.remove(&old);
            self.close(old, "superseded by a newer session");
        }
        self.schedule_sweep(now + self.config.offline_after());
        self.send(
            session,
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id,
                reason: String::new(),
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
                refusal: Refusal::None,
                retry_after_ms: 0,
            })),
        );
        // At least once: every command still unanswered goes out again on each registration.
        for command in self.outbox.for_agent(&agent) {
            self.send_command(session, &agent, command);
        }
    }

    /// A new instance of an agent (it restarted) replaces the old one at once: its entry and
    /// its session go, so the old instance can neither linger online nor go offline later in
    /// the new one's name.
    fn replace_older_instance(&mut self, info: &Register, existing: Option<usize>) {
        let Some(old) = self.nodes.slot_of_agent(&info.node_name) else {
            return;
        };
        if Some(old) == existing {
            return;
        }
        let Some(entry) = self.nodes.remove(old) else {
            return;
        };
        self.events.push(MasterEvent::InstanceReplaced {
            agent: entry.info.node_name,
            instance_id: entry.info.instance_id,
        });
        if let Some(session) = entry.session {
            self.sessions.remove(&session);
            self.close(session, "replaced by a new instance");
        }
    }

    /// The connection behind `session` is gone. Its node stays registered and goes offline
    /// only by missing heartbeats, so a brief reconnect never flaps its state. The attempt
    /// manager starts a record of its reconnection.
    pub fn handle_session_closed(&mut self, now: Instant, session: SessionId) {
        if let Some(slot) = self.sessions.remove(&session) {
            if let Some(entry) = self.nodes.get_mut(slot) {
                if entry.session == Some(session) {
                    entry.session = None;
                    let (instance, agent) = (&entry.info.instance_id, &entry.info.node_name);
                    (self.attempts).record_disconnection(instance, agent, now, "connection closed");
                }
            }
        }
    }

    /// Ends `agent`'s session on purpose, telling it why; no attempt record starts, since the
    /// master chose this. Returns whether it had one.
    fn end_session(&mut self, agent: &str, code: CloseCode, reason: &str) -> bool {
        let Some(slot) = self.nodes.slot_of_agent(agent) else {
            return false;
        };
        let Some(session) = self
            .nodes
            .get_mut(slot)
            .and_then(|entry| entry.session.take())
        else {
            return false;
        };
        self.sessions.remove(&session);
        self.events.push(MasterEvent::SessionEnded {
            agent: agent.to_string(),
            code: close_code_name(code).to_string(),
            reason: reason.to_string(),
        });
        self.say_goodbye(session, code, reason);
        true
    }

    fn say_goodbye(&mut self, session: SessionId, code: CloseCode, reason: &str) {
        let reason = reason.to_string();
        self.send(session, Message::Goodbye(Goodbye { code, reason }));
        self.close(session, "ended by the master");
    }

    /// Invalidates `agent`'s credentials and ends its session; it re-authenticates on its fixed
    /// schedule and is refused until [`restore_credentials`](Self::restore_credentials).
    pub fn revoke_credentials(&mut self, agent: &str) {
        if let Some(credentials) = &mut self.credentials {
            credentials.set_valid(agent, false);
            self.end_session(agent, CloseCode::Unauthorized, "credentials revoked");
        }
    }

    pub fn restore_credentials(&mut self, agent: &str) {
        if let Some(credentials) = &mut self.credentials {
            credentials.set_valid(agent, true);
        }
    }

    /// Admin `status`: what the master knows of `agent`'s reconnection.
    pub fn admin_status(&mut self, now: Instant, agent: &str) {
        let connected = (self.nodes.slot_of_agent(agent))
            .and_then(|slot| self.nodes.get_mut(slot))
            .is_some_and(|entry| entry.session.is_some() && entry.liveness == Liveness::Online);
        let (attempts, next_retry_ms, reason) = match self.attempts.status(agent) {
            Some((record, next)) => {
                let wait = next.saturating_duration_since(now).as_millis() as u64;
                (record.attempts, Some(wait), record.reason.clone())
            }
            None => (0, None, String::new()),
        };
        self.events.push(MasterEvent::AdminStatus {
            agent: agent.to_string(),
            connected,
            attempts,
            next_retry_ms,
            reason,
        });
    }

    /// Admin `active`: the agents reconnecting, by the master's records.
    pub fn admin_active(&mut self, now: Instant) {
        let agents = self.attempts.active(now);
        self.events.push(MasterEvent::AdminActive { agents });
    }

    /// Admin `cleanup`: drops expired records.
    pub fn admin_cleanup(&mut self, now: Instant) {
        let removed = self.attempts.cleanup(now) as u64;
        self.events.push(MasterEvent::AdminCleanup { removed });
    }

    /// Admin `force`: forgets `agent`'s attempts and ends its session as going away, so it
    /// reconnects at once and is let in.
    pub fn admin_force(&mut self, agent: &str) {
        self.attempts.forget(agent);
        let had_session = self.end_session(agent, CloseCode::GoingAway, "forced by an operator");
        self.events.push(MasterEvent::AdminForce {
            agent: agent.to_string(),
            had_session,
        });
    }

    /// Admin `decommission`: ends `agent`'s session with a normal close (it does not come
    /// back) and drops it from the registry.
    pub fn admin_decommission(&mut self, agent: &str) {
        self.end_session(agent, CloseCode::Normal, "decommissioned");
        if let Some(slot) = self.nodes.slot_of_agent(agent) {
            if let Some(entry) = self.nodes.remove(slot) {
                self.events.push(MasterEvent::NodeUnregistered {
                    agent: entry.info.node_name,
                });
            }
        }
        self.attempts.forget(agent);
    }

    /// Graceful shutdown: says goodbye (going away) to every agent and refuses registrations
    /// from now on, so agents move to the next master at once.
    pub fn shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        self.events.push(MasterEvent::ShuttingDown {
            agents: sessions.len() as u64,
        });
        for session in sessions {
            self.say_goodbye(session, CloseCode::GoingAway, "master shutting down");
        }
        self.sessions.clear();
        self.nodes.for_each_mut(|entry| entry.session = None);
    }

    /// Marks every node silent for `offline_after` as offline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|at| now < at) {
            return;
        }
        let offline_after = self.config.offline_after();
        let mut next_sweep = None::<Instant>;
        self.nodes.for_each_mut(|entry| {
            if entry.liveness == Liveness::Offline {
                return;
            }
            let deadline = entry.last_heard + offline_after;
            if now >= deadline {
                entry.liveness = Liveness::Offline;
                let silent_ms = now.duration_since(entry.last_heard).as_millis() as u64;
                self.events.push(MasterEvent::NodeOffline {
                    agent: entry.info.node_name.clone(),
                    instance_id: entry.info.instance_id.clone(),
                    silent_ms,
                });
            } else {
                next_sweep = Some(next_sweep.map_or(deadline, |at| at.min(deadline)));
            }
        });
        self.next_sweep = next_sweep;
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<MasterAction> {
        self.actions.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Every registered node by instance id, in that order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeEntry)> {
        self.nodes.iter()
    }

    pub fn online_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|(_, entry)| entry.liveness == Liveness::Online)
            .count()
    }

    fn entry_for(&mut self, session: SessionId) -> Option<&mut NodeEntry> {
        let slot = *self.sessions.get(&session)?;
        self.nodes.get_mut(slot)
    }

    fn schedule_sweep(&mut self, at: Instant) {
        // Deadlines only move later, so an existing earlier sweep stays a valid lower bound.
        if self.next_sweep.is_none() {
            self.next_sweep = Some(at);
        }
    }

    fn send(&mut self, session: SessionId, message: Message) {
        self.actions
            .push_back(MasterAction::Send { session, message });
    }

    fn close(&mut self, session: SessionId, reason: &'static str) {
        self.actions
            .push_back(MasterAction::Close { session, reason });
    }
}

fn close_code_name(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "normal",
        CloseCode::GoingAway => "going_away",
        CloseCode::Unauthorized => "unauthorized",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BuildInfo, Heartbeat, Unregister};

    fn config() -> MasterConfig {
        MasterConfig::default()
    }

    fn register(name: &str, pid: u32) -> Message {
        Message::Register(Box::new(Register {
            node_name: name.into(),
            instance_id: crate::wire::instance_id(name, "host", pid),
            version: "test".into(),
            pid,
            start_time_ms: 0,
            capabilities: vec![],
            metadata: BTreeMap::new(),
            build: BuildInfo::default(),
            token: crate::auth::token("secret", name),
        }))
    }

    fn heartbeat(seq: u64) -> Message {
        Message::Heartbeat(Heartbeat {
            seq,
            status: NodeStatus::Online,
            uptime_ms: 0,
            metrics: BTreeMap::new(),
        })
    }

    fn drain(registry: &mut Registry) -> Vec<MasterAction> {
        std::iter::from_fn(|| registry.poll_action()).collect()
    }

    fn liveness(registry: &Registry) -> Vec<Liveness> {
        registry.nodes().map(|(_, entry)| entry.liveness).collect()
    }

    #[test]
    fn register_is_acked_and_heartbeats_keep_a_node_online() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        let actions = drain(&mut registry);
        assert!(matches!(
            &actions[..],
            [MasterAction::Send { session: 1, message: Message::RegisterAck(ack) }] if ack.accepted()
        ));
        for second in 1..10 {
            let now = t0 + Duration::from_secs(second);
            registry.handle_message(now, 1, heartbeat(second));
            registry.handle_timeout(now);
        }
        assert_eq!(liveness(&registry), vec![Liveness::Online]);
    }

    #[test]
    fn the_master_keeps_each_agents_latest_status_and_metrics() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        let busy = Message::Heartbeat(Heartbeat {
            seq: 1,
            status: NodeStatus::Busy,
            uptime_ms: 0,
            metrics: BTreeMap::from([("commands_queued".into(), 4.0)]),
        });
        registry.handle_message(t0, 1, busy);
        let entry = |registry: &Registry| registry.nodes().next().unwrap().1.clone();
        assert_eq!(entry(&registry).status, NodeStatus::Busy);
        assert_eq!(entry(&registry).metrics["commands_queued"], 4.0);
        registry.handle_message(t0, 1, heartbeat(2));
        assert_eq!(entry(&registry).status, NodeStatus::Online);
        assert!(entry(&registry).metrics.is_empty());
        let acks: Vec<u64> = drain(&mut registry)
            .into_iter()
            .filter_map(|action| match action {
                MasterAction::Send {
                    message: Message::HeartbeatAck(ack),
                    ..
                } => Some(ack.config.version),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [0, 0], "every ack names the config version");
    }

    /// The refusal a registration on `session` got, if any.
    fn refusal_on(actions: &[MasterAction], on: SessionId) -> Option<(Refusal, u64)> {
        actions.iter().find_map(|action| match action {
            MasterAction::Send {
                session,
                message: Message::RegisterAck(ack),
            } if *session == on && !ack.accepted() => Some((ack.refusal, ack.retry_after_ms)),
            _ => None,
        })
    }

    fn goodbye_on(actions: &[MasterAction], on: SessionId) -> Option<CloseCode> {
        actions.iter().find_map(|action| match action {
            MasterAction::Send {
                session,
                message: Message::Goodbye(goodbye),
            } if *session == on => Some(goodbye.code),
            _ => None,
        })
    }

    #[test]
    fn credentials_are_checked_revoked_and_restored() {
        let t0 = Instant::now();
        let mut registry = Registry::new(MasterConfig {
            auth_secret: Some("secret".into()),
            ..config()
        });
        registry.handle_message(t0, 1, register("agent-1", 7));
        assert_eq!(refusal_on(&drain(&mut registry), 1), None);
        let Message::Register(mut forged) = register("agent-2", 8) else {
            unreachable!()
        };
        forged.token = crate::auth::token("guess", "agent-2");
        registry.handle_message(t0, 2, Message::Register(forged));
        assert_eq!(
            refusal_on(&drain(&mut registry), 2),
            Some((Refusal::Unauthorized, 0))
        );

        registry.revoke_credentials("agent-1");
        let actions = drain(&mut registry);
        assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::Unauthorized));
        registry.handle_message(t0, 3, register("agent-1", 7));
        assert_eq!(
            refusal_on(&drain(&mut registry), 3),
            Some((Refusal::Unauthorized, 0))
        );
        registry.restore_credentials("agent-1");
        registry.handle_message(t0, 4, register("agent-1", 7));
        assert_eq!(refusal_on(&drain(&mut registry), 4), None);
    }

    #[test]
    fn admission_refuses_past_capacity_with_retry_after_only_when_set() {
        let t0 = Instant::now();
        for retry_after in [None, Some(Duration::from_secs(2))] {
            let mut registry = Registry::new(MasterConfig {
                admission: Some(Admission {
                    capacity: 2,
                    retry_after,
                }),
                ..config()
            });
            for session in 1..=3 {
                registry.handle_message(t0, session, register(&format!("agent-{session}"), 1));
            }
            let actions = drain(&mut registry);
            assert_eq!(refusal_on(&actions, 2), None);
            let expected = retry_after.map_or(0, |after| after.as_millis() as u64);
            assert_eq!(refusal_on(&actions, 3), Some((Refusal::Busy, expected)));
            let later = t0 + Duration::from_millis(500);
            registry.handle_message(later, 4, register("agent-3", 1));
            assert_eq!(refusal_on(&drain(&mut registry), 4), None, "refilled");
        }
    }

    /// A master whose attempt manager enforces the design's backoff (1s x 2^n).
    fn enforcing() -> Registry {
        Registry::new(MasterConfig {
            attempts: AttemptPolicy {
                enforce: true,
                ..AttemptPolicy::default()
            },
            ..config()
        })
    }

    #[test]
    fn an_enforcing_master_makes_a_returning_agent_wait_its_backoff() {
        let t0 = Instant::now();
        let mut registry = enforcing();
        registry.handle_message(t0, 1, register("agent-1", 7));
        registry.handle_session_closed(t0, 1);
        let soon = t0 + Duration::from_millis(400);
        registry.handle_message(soon, 2, register("agent-1", 7));
        // Too soon (400ms of 1s), and that attempt counts: 2s from it.
        assert_eq!(
            refusal_on(&drain(&mut registry), 2),
            Some((Refusal::Busy, 2000))
        );
        registry.admin_status(soon, "agent-1");
        let ready = soon + Duration::from_secs(2);
        registry.handle_message(ready, 3, register("agent-1", 7));
        assert_eq!(refusal_on(&drain(&mut registry), 3), None);
        assert!(registry.attempts.status("agent-1").is_none());
    }

    #[test]
    fn force_lets_an_agent_straight_back_and_decommission_closes_it_for_good() {
        let t0 = Instant::now();
        let mut registry = enforcing();
        registry.handle_message(t0, 1, register("agent-1", 7));
        drain(&mut registry);
        registry.admin_force("agent-1");
        let actions = drain(&mut registry);
        assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::GoingAway));
        registry.handle_session_closed(t0, 1);
        registry.handle_message(t0, 2, register("agent-1", 7));
        assert_eq!(
            refusal_on(&drain(&mut registry), 2),
            None,
            "no record: let in"
        );
        registry.admin_decommission("agent-1");
        assert_eq!(
            goodbye_on(&drain(&mut registry), 2),
            Some(CloseCode::Normal)
        );
        assert_eq!(registry.nodes().count(), 0);
    }

    #[test]
    fn a_master_shutting_down_says_goodbye_and_takes_no_one() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        registry.handle_message(t0, 2, register("agent-2", 8));
        drain(&mut registry);
        registry.shutdown();
        let actions = drain(&mut registry);
        assert_eq!(goodbye_on(&actions, 1), Some(CloseCode::GoingAway));
        assert_eq!(goodbye_on(&actions, 2), Some(CloseCode::GoingAway));
        registry.handle_message(t0, 3, register("agent-1", 7));
        assert_eq!(
            refusal_on(&drain(&mut registry), 3),
            Some((Refusal::ShuttingDown, 0))
        );
    }

    #[test]
    fn what_a_master_writes_to_disk_reads_back_as_its_durable_state() {
        let mut registry = Registry::new(config());
        registry
            .submit("agent-1", "echo", BTreeMap::new(), Duration::from_secs(1))
            .unwrap();
        registry
            .push_config(BTreeMap::from([("k".into(), "v".into())]))
            .unwrap();
        registry.handle_leadership(Leadership::Follower { leader: None });
        let back: Durable = serde_json::from_slice(&registry.durable_json()).unwrap();
        assert_eq!(back, registry.durable());
        assert_eq!(back.unconfirmed.len(), 1);
    }

    #[test]
    fn silence_for_max_miss_intervals_marks_offline_and_a_heartbeat_brings_it_back() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        registry.handle_timeout(t0 + Duration::from_millis(2999));
        assert_eq!(liveness(&registry), vec![Liveness::Online]);
        registry.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(liveness(&registry), vec![Liveness::Offline]);
        assert_eq!(
            registry.poll_timeout(),
            None,
            "nothing online, nothing to watch"
        );
        registry.handle_message(t0 + Duration::from_secs(5), 1, heartbeat(1));
        assert_eq!(liveness(&registry), vec![Liveness::Online]);
        assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn a_sweep_only_marks_the_silent_nodes() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 1));
        registry.handle_message(t0, 2, register("agent-2", 2));
        registry.handle_message(t0 + Duration::from_secs(2), 2, heartbeat(1));
        registry.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(
            liveness(&registry),
            vec![Liveness::Offline, Liveness::Online]
        );
        assert_eq!(registry.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn a_new_instance_of_an_agent_replaces_the_old_one_and_its_session() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 101));
        drain(&mut registry);
        let later = t0 + Duration::from_secs(1);
        registry.handle_message(later, 2, register("agent-1", 102));
        let actions = drain(&mut registry);
        assert!(
            actions.iter().any(|action| matches!(
                action,
                MasterAction::Close {
                    session: 1,
                    reason: "replaced by a new instance"
                }
            )),
            "{actions:?}"
        );
        let instances: Vec<&str> = registry.nodes().map(|(id, _)| id).collect();
        assert_eq!(instances, ["agent-1-host-102"]);
        // The old instance never goes offline in the new one's name.
        registry.handle_timeout(t0 + Duration::from_millis(3500));
        assert_eq!(liveness(&registry), vec![Liveness::Online]);
        // Its session closing later changes nothing either.
        registry.handle_session_closed(t0, 1);
        assert_eq!(registry.online_count(), 1);
    }

    #[test]
    fn the_newest_session_of_an_instance_wins() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        drain(&mut registry);
        registry.handle_message(t0, 2, register("agent-1", 7));
        let actions = drain(&mut registry);
        assert!(actions.contains(&MasterAction::Close {
            session: 1,
            reason: "superseded by a newer session"
        }));
        assert_eq!(registry.nodes().count(), 1);
        assert_eq!(registry.nodes().next().unwrap().1.session, Some(2));
        // The old session no longer speaks for the node.
        registry.handle_message(t0, 1, heartbeat(1));
        assert!(matches!(
            drain(&mut registry)[..],
            [MasterAction::Close { session: 1, .. }]
        ));
    }

    #[test]
    fn unregister_removes_the_node_and_closes_the_session() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        drain(&mut registry);
        registry.handle_message(
            t0,
            1,
            Message::Unregister(Unregister {
                reason: "shutdown".into(),
            }),
        );
        assert_eq!(registry.nodes().count(), 0);
        assert_eq!(
            drain(&mut registry),
            vec![MasterAction::Close {
                session: 1,
                reason: "unregistered"
            }]
        );
    }

    #[test]
    fn a_follower_redirects_and_a_leader_that_steps_down_lets_go() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_leadership(Leadership::Follower {
            leader: Some("master-2".into()),
        });
        registry.handle_message(t0, 1, register("agent-1", 7));
        assert_eq!(
            drain(&mut registry),
            vec![
                MasterAction::Send {
                    session: 1,
                    message: Message::Redirect(Redirect {
                        leader: "master-2".into()
                    })
                },
                MasterAction::Close {
                    session: 1,
                    reason: "redirected to the leader"
                }
            ]
        );
        registry.handle_leadership(Leadership::Follower { leader: None });
        registry.handle_message(t0, 2, register("agent-1", 7));
        assert!(matches!(
            &drain(&mut registry)[..],
            [MasterAction::Send { message: Message::RegisterAck(ack), .. }, MasterAction::Close { .. }]
                if !ack.accepted()
        ));
        registry.handle_leadership(Leadership::Leader);
        registry.handle_message(t0, 3, register("agent-1", 7));
        registry.handle_message(t0, 4, register("agent-2", 8));
        drain(&mut registry);
        registry.handle_leadership(Leadership::Follower { leader: None });
        assert_eq!(registry.nodes().count(), 0);
        let closed: Vec<_> = drain(&mut registry)
            .into_iter()
            .filter_map(|action| match action {
                MasterAction::Close { session, .. } => Some(session),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![3, 4]);
        assert_eq!(registry.poll_timeout(), None);
    }

    #[test]
    fn a_closed_session_leaves_the_node_to_the_liveness_rule() {
        let t0 = Instant::now();
        let mut registry = Registry::new(config());
        registry.handle_message(t0, 1, register("agent-1", 7));
        registry.handle_session_closed(t0, 1);
        assert_eq!(liveness(&registry), vec![Liveness::Online]);
        registry.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(liveness(&registry), vec![Liveness::Offline]);
    }
}
