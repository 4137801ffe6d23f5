//! Commands and config: what a leader accepts for its agents, sends them, and hears back.

use super::{Leadership, Output, Registry, SessionId, SubmitError};
use crate::command::{Command, CommandResult, Received, OUTBOX_BUDGET};
use crate::timeline::CommandEvent;
use crate::wire::{
    payload_len, ConfigAck, ConfigId, ConfigPull, ConfigPush, Message, MAX_FRAME_DEFAULT,
};
use std::collections::BTreeMap;
use std::time::Duration;

impl Registry {
    /// Raises the config to a new version with `values` and pushes it to every agent this
    /// leader serves; an agent away now pulls it when it is back. Returns the new version.
    pub fn push_config(&mut self, values: BTreeMap<String, String>) -> Result<u64, SubmitError> {
        if self.leadership != Leadership::Leader {
            return Err(SubmitError::NotLeader);
        }
        let current = self.ledger.fleet_config.id;
        let id = ConfigId {
            term: self.ledger.term.max(current.term),
            version: current.version + 1,
        };
        let push = ConfigPush { id, values };
        let len = payload_len(&Message::ConfigPush(Box::new(push.clone())));
        if len > MAX_FRAME_DEFAULT {
            let max = MAX_FRAME_DEFAULT;
            return Err(SubmitError::TooLarge { len, max });
        }
        self.ledger.fleet_config = push;
        self.ledger.changes += 1;
        self.ledger.handover_seq += 1;
        let sessions = &self.agents.sessions;
        self.output.events.push(CommandEvent::ConfigPushed {
            version: id.version,
            term: id.term,
            agents: sessions.len() as u64,
        });
        for &session in sessions.keys() {
            let push = Box::new(self.ledger.fleet_config.clone());
            self.output.send(session, Message::ConfigPush(push));
        }
        Ok(id.version)
    }

    /// The current config.
    pub fn config_id(&self) -> ConfigId {
        self.ledger.fleet_config.id
    }

    /// The cluster's term as this master last saw it (a raft term, a lease's fencing token):
    /// the configs it pushes carry it.
    pub fn observe_term(&mut self, term: u64) {
        self.ledger.term = self.ledger.term.max(term);
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
        let outbox = &mut self.ledger.outbox;
        let (bytes, budget) = (outbox.pending_bytes(), OUTBOX_BUDGET);
        if bytes >= budget {
            return Err(SubmitError::OutboxFull { bytes, budget });
        }
        let command = outbox.accept(agent, name, args, timeout);
        let request_id = command.request_id.clone();
        let len = payload_len(&Message::Command(Box::new(command.clone())));
        if len > MAX_FRAME_DEFAULT {
            outbox.withdraw(&request_id);
            let max = MAX_FRAME_DEFAULT;
            return Err(SubmitError::TooLarge { len, max });
        }
        self.ledger.changes += 1;
        self.ledger.handover_seq += 1;
        match self.agents.session_of(agent) {
            Some(session) => self.output.send_command(session, agent, command),
            None => self.output.events.push(CommandEvent::CommandQueued {
                request_id: command.request_id,
                agent: agent.to_string(),
                name: command.name,
            }),
        }
        Ok(request_id)
    }

    /// Commands accepted and not yet answered.
    pub fn pending_commands(&self) -> usize {
        self.ledger.outbox.pending()
    }

    pub(super) fn handle_result(&mut self, session: SessionId, result: CommandResult) {
        if self.agents.entry_for(session).is_none() {
            return self.output.close(session, "result before register");
        }
        // A copy of a result already taken, or one for a command another master
        // accepted (before a failover), changes nothing.
        if let Received::First { agent } = self.ledger.outbox.receive(&result) {
            self.ledger.changes += 1;
            self.output.events.push(CommandEvent::CommandResult {
                request_id: result.request_id,
                agent,
                outcome: result.outcome.name().to_string(),
            });
        }
    }

    /// An agent behind on its config asks for it; one that is not is told nothing.
    pub(super) fn handle_config_pull(&mut self, session: SessionId, pull: ConfigPull) {
        if self.agents.entry_for(session).is_none() {
            return self.output.close(session, "config pull before register");
        }
        if pull.have < self.ledger.fleet_config.id {
            let push = Box::new(self.ledger.fleet_config.clone());
            self.output.send(session, Message::ConfigPush(push));
        }
    }

    pub(super) fn handle_config_ack(&mut self, session: SessionId, ack: ConfigAck) {
        let Some(entry) = self.agents.entry_for(session) else {
            return self.output.close(session, "config ack before register");
        };
        entry.config = entry.config.max(ack.id);
    }
}

impl Output {
    pub(super) fn send_command(&mut self, session: SessionId, agent: &str, command: Command) {
        self.events.push(CommandEvent::CommandSent {
            request_id: command.request_id.clone(),
            agent: agent.to_string(),
            name: command.name.clone(),
        });
        self.send(session, Message::Command(Box::new(command)));
    }
}
