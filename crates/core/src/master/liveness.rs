//! Liveness: heartbeats keep a node online, and a sweep marks the silent ones offline.

use super::nodes::{Agents, NodeEntry};
use super::{Liveness, Registry, SessionId};
use crate::timeline::MasterEvent;
use crate::wire::{Heartbeat, HeartbeatAck, Message};
use std::time::Instant;

impl Registry {
    /// A heartbeat brings its node back online and is answered with the config's id, so an
    /// agent behind on its config learns it and pulls.
    pub(super) fn handle_heartbeat(
        &mut self,
        now: Instant,
        session: SessionId,
        heartbeat: Heartbeat,
    ) {
        let config = self.ledger.announced.id;
        let Some(&slot) = self.agents.sessions.get(&session) else {
            return self.output.close(session, "heartbeat before register");
        };
        let Some(entry) = self.agents.nodes.get_mut(slot) else {
            return self.output.close(session, "heartbeat before register");
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
            self.agents.watch(slot);
            self.output.events.push(MasterEvent::NodeOnline { agent });
        }
        self.agents
            .schedule_sweep(now + self.config.offline_after());
        self.output.send(
            session,
            Message::HeartbeatAck(HeartbeatAck {
                seq: heartbeat.seq,
                config,
            }),
        );
    }

    /// Marks every node silent for `offline_after` as offline, and lets go of its session:
    /// the agent, unanswered as long, has given up on it too, so a frame that still arrives on
    /// it (held up on the way) is stale, brings nothing back, and closes the connection then.
    /// Only a registration brings the node back. The connection is not closed at once: across
    /// a cut link the agent would not hear of it either.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle_waiting(now);
        if self.agents.next_sweep.is_none_or(|at| now < at) {
            return;
        }
        let offline_after = self.config.offline_after();
        let silent = self.agents.silent(now, offline_after);
        self.agents.next_sweep = (self.agents.earliest_heard()).map(|heard| heard + offline_after);
        let mut dead = Vec::new();
        for slot in silent {
            let Some(entry) = self.agents.nodes.get_mut(slot) else {
                continue;
            };
            if let Some(session) = entry.session.take() {
                let (instance, agent) = (&entry.info.instance_id, &entry.info.node_name);
                dead.push((session, instance.clone(), agent.clone()));
            }
            self.output.events.push(entry.go_offline(now, false));
        }
        for (session, instance, agent) in dead {
            self.agents.sessions.remove(&session);
            let attempts = &mut self.gate.attempts;
            attempts.record_disconnection(&instance, &agent, now, "missed heartbeats");
        }
    }

    /// The transport says the agent behind `session` is gone: an MQTT broker published its
    /// will, having lost its connection, or heard nothing for 1.5 keepalives. It goes offline
    /// at once, without waiting out its heartbeats, and its session closes.
    pub fn handle_agent_lost(&mut self, now: Instant, session: SessionId) {
        let slot = self.agents.sessions.get(&session).copied();
        let entry = slot.and_then(|slot| self.agents.nodes.get_mut(slot));
        if let Some(entry) = entry.filter(|entry| entry.session == Some(session)) {
            if entry.liveness == Liveness::Online {
                self.output.events.push(entry.go_offline(now, true));
            }
        }
        self.handle_session_closed(now, session);
    }

    pub fn online_count(&self) -> usize {
        (self.agents.nodes.iter())
            .filter(|(_, entry)| entry.liveness == Liveness::Online)
            .count()
    }
}

impl NodeEntry {
    /// Marks the node offline as of `now` (by the transport's word that it is gone: `will`),
    /// and says so for the timeline, with how long it had been silent.
    fn go_offline(&mut self, now: Instant, will: bool) -> MasterEvent {
        self.liveness = Liveness::Offline;
        MasterEvent::NodeOffline {
            agent: self.info.node_name.clone(),
            instance_id: self.info.instance_id.clone(),
            silent_ms: now.duration_since(self.last_heard).as_millis() as u64,
            will,
        }
    }
}

impl Agents {
    pub(super) fn schedule_sweep(&mut self, at: Instant) {
        // Deadlines only move later, so an existing earlier sweep stays a valid lower bound.
        if self.next_sweep.is_none() {
            self.next_sweep = Some(at);
        }
    }
}
