//! What an operator does to the fleet through its master: credentials, the attempt manager's
//! admin commands, and a graceful shutdown. The sessions these end, the master ends on purpose.

use super::{Liveness, Output, Registry, SessionId};
use crate::timeline::MasterEvent;
use crate::wire::{CloseCode, Goodbye, Message};
use std::time::Instant;

/// What a master knows of one agent's reconnection (the reconnection design's status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnection {
    /// It has a session and is online.
    pub connected: bool,
    /// Failed attempts on its record.
    pub attempts: u32,
    /// How long until the master lets it in again; `None` without a record.
    pub next_retry_ms: Option<u64>,
    /// Why its last connection ended, by its record.
    pub reason: String,
}

impl Registry {
    /// Ends `agent`'s session on purpose, telling it why; no attempt record starts, since the
    /// master chose this. Returns whether it had one.
    fn end_session(&mut self, agent: &str, code: CloseCode, reason: &str) -> bool {
        let Some(slot) = self.agents.nodes.slot_of_agent(agent) else {
            return false;
        };
        let Some(session) = (self.agents.nodes)
            .get_mut(slot)
            .and_then(|entry| entry.session.take())
        else {
            return false;
        };
        self.agents.sessions.remove(&session);
        self.output.events.push(MasterEvent::SessionEnded {
            agent: agent.to_string(),
            code: close_code_name(code).to_string(),
            reason: reason.to_string(),
        });
        self.output.say_goodbye(session, code, reason);
        true
    }

    /// Invalidates `agent`'s credentials and ends its session; it re-authenticates on its fixed
    /// schedule and is refused until [`restore_credentials`](Self::restore_credentials).
    pub fn revoke_credentials(&mut self, agent: &str) {
        if let Some(credentials) = &mut self.gate.credentials {
            credentials.set_valid(agent, false);
            self.end_session(agent, CloseCode::Unauthorized, "credentials revoked");
        }
    }

    pub fn restore_credentials(&mut self, agent: &str) {
        if let Some(credentials) = &mut self.gate.credentials {
            credentials.set_valid(agent, true);
        }
    }

    /// What the master knows of `agent`'s reconnection, now.
    pub fn reconnection(&self, now: Instant, agent: &str) -> Reconnection {
        let connected = (self.agents.nodes.slot_of_agent(agent))
            .and_then(|slot| self.agents.nodes.get(slot))
            .is_some_and(|entry| entry.session.is_some() && entry.liveness == Liveness::Online);
        let (attempts, next_retry_ms, reason) = match self.gate.attempts.status(agent) {
            Some((record, next)) => {
                let wait = next.saturating_duration_since(now).as_millis() as u64;
                (record.attempts, Some(wait), record.reason.clone())
            }
            None => (0, None, String::new()),
        };
        Reconnection {
            connected,
            attempts,
            next_retry_ms,
            reason,
        }
    }

    /// Admin `status`: reports [`reconnection`](Self::reconnection), and returns it.
    pub fn admin_status(&mut self, now: Instant, agent: &str) -> Reconnection {
        let status = self.reconnection(now, agent);
        self.output.events.push(MasterEvent::AdminStatus {
            agent: agent.to_string(),
            connected: status.connected,
            attempts: status.attempts,
            next_retry_ms: status.next_retry_ms,
            reason: status.reason.clone(),
        });
        status
    }

    /// Admin `active`: the agents reconnecting, by the master's records.
    pub fn admin_active(&mut self, now: Instant) -> Vec<String> {
        let agents = self.gate.attempts.active(now);
        self.output.events.push(MasterEvent::AdminActive {
            agents: agents.clone(),
        });
        agents
    }

    /// Admin `cleanup`: drops expired records; returns how many.
    pub fn admin_cleanup(&mut self, now: Instant) -> u64 {
        let removed = self.gate.attempts.cleanup(now) as u64;
        self.output
            .events
            .push(MasterEvent::AdminCleanup { removed });
        removed
    }

    /// Admin `force`: forgets `agent`'s attempts and ends its session as going away, so it
    /// reconnects at once and is let in.
    /// Returns whether it had a session.
    pub fn admin_force(&mut self, agent: &str) -> bool {
        self.gate.attempts.forget(agent);
        let had_session = self.end_session(agent, CloseCode::GoingAway, "forced by an operator");
        self.output.events.push(MasterEvent::AdminForce {
            agent: agent.to_string(),
            had_session,
        });
        had_session
    }

    /// Admin `decommission`: ends `agent`'s session with a normal close (it does not come
    /// back) and drops it from the registry.
    pub fn admin_decommission(&mut self, agent: &str) {
        self.end_session(agent, CloseCode::Normal, "decommissioned");
        if let Some(slot) = self.agents.nodes.slot_of_agent(agent) {
            if let Some(entry) = self.agents.nodes.remove(slot) {
                self.output.events.push(MasterEvent::NodeUnregistered {
                    agent: entry.info.node_name,
                });
            }
        }
        self.gate.attempts.forget(agent);
    }

    /// Graceful shutdown: says goodbye (going away) to every agent, naming `successor` (the
    /// master it handed leadership to) if there is one, and from now on sends newcomers there,
    /// or refuses them, so agents move to the successor, or the next master, at once.
    pub fn shutdown(&mut self, now: Instant, successor: Option<&str>) {
        if self.gate.shutting_down {
            return;
        }
        self.gate.shutting_down = true;
        self.gate.successor = successor.map(str::to_string);
        let sessions = std::mem::take(&mut self.agents.sessions);
        self.output.events.push(MasterEvent::ShuttingDown {
            agents: sessions.len() as u64,
        });
        for &session in sessions.keys() {
            let goodbye = Goodbye {
                code: CloseCode::GoingAway,
                reason: "master shutting down".into(),
                leader: successor.map(str::to_string),
            };
            self.output.send(session, Message::Goodbye(goodbye));
            self.output.close(session, "ended by the master");
        }
        (self.agents.nodes).for_each_mut(|entry| entry.session = None);
        // Those held for want of a leader go the same way.
        self.settle_waiting(now);
    }
}

impl Output {
    fn say_goodbye(&mut self, session: SessionId, code: CloseCode, reason: &str) {
        let reason = reason.to_string();
        let leader = None;
        self.send(
            session,
            Message::Goodbye(Goodbye {
                code,
                reason,
                leader,
            }),
        );
        self.close(session, "ended by the master");
    }
}

fn close_code_name(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "normal",
        CloseCode::GoingAway => "going_away",
        CloseCode::Unauthorized => "unauthorized",
    }
}
