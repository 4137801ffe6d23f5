//! Registration: the gate a registration must pass, the refusals, and how a registered node
//! takes its place in the table, replacing an older instance or an older session.

use super::nodes::{Agents, NodeEntry};
use super::{Leadership, Liveness, MasterConfig, Output, Registry, SessionId};
use crate::attempts::{AttemptManager, Refuse, TokenBucket};
use crate::auth::{AuthError, Credentials};
use crate::bugs::{Bug, Bugs};
use crate::timeline::{Events, MasterEvent};
use crate::wire::{ConfigId, Message, NodeStatus, Redirect, Refusal, Register, RegisterAck};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a registration must pass before it is let in.
#[derive(Debug)]
pub(super) struct Gate {
    /// What registrations are checked against, when the cluster authenticates.
    pub(super) credentials: Option<Credentials>,
    pub(super) admission: Option<TokenBucket>,
    pub(super) attempts: AttemptManager,
    /// Shutting down: it has said goodbye to its agents and takes no more.
    pub(super) shutting_down: bool,
    /// Shutting down, the master it handed leadership to: newcomers are sent there.
    pub(super) successor: Option<String>,
    /// Registrations that came while no leader was known, held until one is (then admitted or
    /// redirected) or until their deadline (then refused `no_leader`), oldest first.
    pub(super) waiting: Vec<(SessionId, Box<Register>, Instant)>,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    bugs: Bugs,
}

impl Gate {
    pub(super) fn new(config: &MasterConfig) -> Gate {
        Gate {
            credentials: config.auth_secret.as_deref().map(Credentials::new),
            admission: (config.admission).map(|limit| TokenBucket::new(limit.capacity)),
            attempts: AttemptManager::new(config.attempts),
            shutting_down: false,
            successor: None,
            waiting: Vec::new(),
            bugs: config.bugs,
        }
    }

    /// The leader's gate: admission capacity first (it protects the master from a storm, so
    /// it counts every registration), then credentials, then the attempt manager. Every
    /// registration goes on the agent's record, let in or not; a refusal says how long the
    /// agent should wait, if it should.
    fn admit(
        &mut self,
        now: Instant,
        info: &Register,
        retry_after: Option<Duration>,
    ) -> Result<(), (Refusal, Option<Duration>)> {
        let id = &info.instance_id;
        if let Some(bucket) = &mut self.admission {
            if !bucket.try_take(now) && !self.bugs.has(Bug::AdmissionUnlimited) {
                return self.refused(now, id, Refusal::Busy, retry_after);
            }
        }
        if let Some(credentials) = &self.credentials {
            let verified = credentials.verify(&info.node_name, &info.token);
            let revoked = matches!(verified, Err(AuthError::Revoked));
            let let_in = revoked && self.bugs.has(Bug::AuthRevocationIgnored);
            if verified.is_err() && !let_in {
                return self.refused(now, id, Refusal::Unauthorized, None);
            }
        }
        match self.attempts.should_reconnect(id, now) {
            Ok(()) => {}
            Err(Refuse::TooSoon(_)) => {
                // Counted as a failed attempt first: the wait named is the one the next
                // attempt will be judged by.
                self.attempts.record_attempt(id, now, false);
                return Err((Refusal::Busy, self.attempts.wait(id, now)));
            }
            Err(Refuse::RetryLimit) => {
                return self.refused(now, id, Refusal::RetryLimit, None);
            }
        }
        self.attempts.record_attempt(id, now, true);
        Ok(())
    }

    /// A failed attempt on the record of `instance_id`, refused with `refusal`.
    fn refused(
        &mut self,
        now: Instant,
        instance_id: &str,
        refusal: Refusal,
        retry_after: Option<Duration>,
    ) -> Result<(), (Refusal, Option<Duration>)> {
        self.attempts.record_attempt(instance_id, now, false);
        Err((refusal, retry_after))
    }
}

impl Registry {
    /// A master shutting down takes no one; a leader admits, a follower points the agent at
    /// its leader, or, while it knows none, holds the registration until it learns of one (an
    /// election takes a round trip or two) or [`MasterConfig::leader_wait`] has passed.
    pub(super) fn handle_register(
        &mut self,
        now: Instant,
        session: SessionId,
        info: Box<Register>,
    ) {
        if self.gate.shutting_down {
            return match self.gate.successor.clone() {
                Some(leader) => self.redirect(session, leader),
                None => self.refuse(now, session, &info, Refusal::ShuttingDown, None),
            };
        }
        match self.leadership.clone() {
            Leadership::Leader => self.admit(now, session, *info),
            Leadership::Follower {
                leader: Some(leader),
            } => self.redirect(session, leader),
            Leadership::Follower { leader: None } => {
                let until = now + self.config.leader_wait;
                self.gate.waiting.push((session, info, until));
            }
        }
    }

    /// Refuses `info` as busy though admission would have taken it: a shell's fault point for a
    /// master too loaded to answer (`buggify`), told the admission's `retry_after`.
    pub fn refuse_busy(&mut self, now: Instant, session: SessionId, info: &Register) {
        let retry_after = self.config.admission.and_then(|limit| limit.retry_after);
        self.refuse(now, session, info, Refusal::Busy, retry_after);
    }

    fn redirect(&mut self, session: SessionId, leader: String) {
        self.output
            .send(session, Message::Redirect(Redirect { leader }));
        self.output.close(session, "redirected to the leader");
    }

    fn admit(&mut self, now: Instant, session: SessionId, info: Register) {
        let retry_after = self.config.admission.and_then(|limit| limit.retry_after);
        match self.gate.admit(now, &info, retry_after) {
            Ok(()) => self.register(now, session, info),
            Err((refusal, wait)) => self.refuse_counted(session, &info, refusal, wait),
        }
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
            (self.gate.attempts).record_attempt(&info.instance_id, now, false);
        }
        self.refuse_counted(session, info, refusal, retry_after);
    }

    /// [`refuse`](Self::refuse), with the attempt already on the record.
    pub(super) fn refuse_counted(
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
            self.output.events.push(MasterEvent::RegistrationRefused {
                agent: info.node_name.clone(),
                refusal: name.to_string(),
                retry_after_ms,
            });
        }
        self.output.send(
            session,
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id: info.instance_id.clone(),
                reason: reason.into(),
                heartbeat_interval_ms: 0,
                refusal,
                retry_after_ms: retry_after_ms.unwrap_or(0),
            })),
        );
        self.output.close(session, reason);
    }

    fn register(&mut self, now: Instant, session: SessionId, info: Register) {
        let existing = self.agents.nodes.slot(&info.instance_id);
        (self.agents).replace_older_instance(&info, existing, &mut self.output);
        self.agents.detach_other_instance(session, existing);
        let instance_id = info.instance_id.clone();
        let agent = info.node_name.clone();
        let events = &mut self.output.events;
        let heard_before =
            existing.and_then(|slot| Some(self.agents.nodes.get_mut(slot)?.last_heard));
        let (slot, superseded) = self.agents.place(now, session, info, existing, events);
        if let Some(heard) =
            heard_before.filter(|_| self.config.bugs.has(Bug::LivenessKeepsLastHeard))
        {
            if let Some(entry) = self.agents.nodes.get_mut(slot) {
                entry.last_heard = heard;
            }
        }
        self.agents.watch(slot);
        self.agents.sessions.insert(session, slot);
        if let Some(old) = superseded {
            // The newest session wins; the old one is closed so its agent cannot linger.
            self.agents.sessions.remove(&old);
            self.output.close(old, "superseded by a newer session");
        }
        self.agents
            .schedule_sweep(now + self.config.offline_after());
        self.output.send(
            session,
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id,
                reason: String::new(),
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
                refusal: Refusal::None,
                retry_after_ms: 0,
            })),
        );
        // At least once: every accepted command still unanswered goes out again on each
        // registration.
        for pending in self.ledger.outbox.for_agent(&agent) {
            if self.ledger.is_committed(pending.index) {
                self.output
                    .send_command(session, &agent, pending.command.clone());
            }
        }
    }

    /// Registrations held for want of a leader: once one is known (this master, or another),
    /// each is admitted or redirected; past its deadline with none, refused `no_leader`,
    /// told to come back after [`MasterConfig::leader_wait`].
    pub(super) fn settle_waiting(&mut self, now: Instant) {
        let waiting = std::mem::take(&mut self.gate.waiting);
        let known = self.leadership != (Leadership::Follower { leader: None });
        for (session, info, until) in waiting {
            if known || self.gate.shutting_down {
                self.handle_register(now, session, info);
            } else if now >= until {
                let wait = Some(self.config.leader_wait);
                self.refuse(now, session, &info, Refusal::NoLeader, wait);
            } else {
                self.gate.waiting.push((session, info, until));
            }
        }
    }

    pub(super) fn handle_unregister(&mut self, session: SessionId) {
        if let Some(slot) = self.agents.sessions.remove(&session) {
            if let Some(entry) = self.agents.nodes.remove(slot) {
                self.output.events.push(MasterEvent::NodeUnregistered {
                    agent: entry.info.node_name,
                });
            }
        }
        self.output.close(session, "unregistered");
    }

    /// The connection behind `session` is gone. Its node stays registered and goes offline
    /// only by missing heartbeats, so a brief reconnect never flaps its state. The attempt
    /// manager starts a record of its reconnection.
    pub fn handle_session_closed(&mut self, now: Instant, session: SessionId) {
        self.gate
            .waiting
            .retain(|(waiting, ..)| *waiting != session);
        if let Some(slot) = self.agents.sessions.remove(&session) {
            if let Some(entry) = self.agents.nodes.get_mut(slot) {
                if entry.session == Some(session) {
                    entry.session = None;
                    let (instance, agent) = (&entry.info.instance_id, &entry.info.node_name);
                    (self.gate.attempts).record_disconnection(
                        instance,
                        agent,
                        now,
                        "connection closed",
                    );
                }
            }
        }
    }
}

impl Agents {
    /// A new instance of an agent (it restarted) replaces the old one at once: its entry and
    /// its session go, so the old instance can neither linger online nor go offline later in
    /// the new one's name.
    fn replace_older_instance(
        &mut self,
        info: &Register,
        existing: Option<usize>,
        output: &mut Output,
    ) {
        let Some(old) = self.nodes.slot_of_agent(&info.node_name) else {
            return;
        };
        if Some(old) == existing {
            return;
        }
        let Some(entry) = self.nodes.remove(old) else {
            return;
        };
        output.events.push(MasterEvent::InstanceReplaced {
            agent: entry.info.node_name,
            instance_id: entry.info.instance_id,
        });
        if let Some(session) = entry.session {
            self.sessions.remove(&session);
            output.close(session, "replaced by a new instance");
        }
    }

    /// A session speaks for one instance; re-registering under another id detaches the
    /// first, which then goes silent like any other.
    fn detach_other_instance(&mut self, session: SessionId, existing: Option<usize>) {
        let Some(previous) = self.sessions.get(&session).copied() else {
            return;
        };
        if Some(previous) != existing {
            if let Some(entry) = self.nodes.get_mut(previous) {
                entry.session = None;
            }
        }
    }

    /// Puts the node `info` names on `session`, online as of `now`: its entry in `existing`
    /// if it has one, a new entry otherwise. Returns its slot, and the older session it had
    /// if this one supersedes it.
    fn place(
        &mut self,
        now: Instant,
        session: SessionId,
        info: Register,
        existing: Option<usize>,
        events: &mut Events,
    ) -> (usize, Option<SessionId>) {
        let agent = info.node_name.clone();
        let instance_id = info.instance_id.clone();
        let Some(slot) = existing else {
            events.push(MasterEvent::NodeRegistered { agent, instance_id });
            let slot = self.nodes.insert(NodeEntry {
                info,
                session: Some(session),
                liveness: Liveness::Online,
                status: NodeStatus::Online,
                metrics: BTreeMap::new(),
                config: ConfigId::default(),
                last_heard: now,
            });
            return (slot, None);
        };
        let entry = self.nodes.get_mut(slot).expect("indexed slots hold a node");
        let superseded = entry.session.filter(|&old| old != session);
        let was_offline = entry.liveness == Liveness::Offline;
        entry.info = info;
        entry.session = Some(session);
        entry.liveness = Liveness::Online;
        entry.last_heard = now;
        events.push(MasterEvent::NodeRegistered {
            agent: agent.clone(),
            instance_id,
        });
        if was_offline {
            events.push(MasterEvent::NodeOnline { agent });
        }
        (slot, superseded)
    }
}
