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
    /// Raises the config to a new version with `values`; once the cluster commits it, it is
    /// pushed to every agent this leader serves, and an agent away pulls it when it is back.
    /// Returns the new config's id.
    pub fn push_config(
        &mut self,
        values: BTreeMap<String, String>,
    ) -> Result<ConfigId, SubmitError> {
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
        self.ledger.config_index = self.ledger.next_index();
        self.changed();
        Ok(id)
    }

    /// The config agents are brought to: the newest committed.
    pub fn config_id(&self) -> ConfigId {
        self.ledger.announced.id
    }

    /// The cluster's term as this master last saw it (a raft term, a lease's fencing token):
    /// the configs it pushes carry it.
    pub fn observe_term(&mut self, term: u64) {
        self.ledger.term = self.ledger.term.max(term);
    }

    /// Takes a command for `agent` and returns its request id. Once the cluster commits it,
    /// it is accepted: sent now if the agent has a session, or when the agent registers.
    /// Only the leader takes commands.
    pub fn submit(
        &mut self,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<String, SubmitError> {
        self.submit_once(None, agent, name, args, timeout)
    }

    /// [`submit`](Self::submit) under the client's `key`: a key this master holds (pending or
    /// answered) returns that command's id and changes nothing, so a client that did not
    /// learn whether a command was accepted can submit it again to the next leader.
    pub fn submit_once(
        &mut self,
        key: Option<&str>,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<String, SubmitError> {
        if self.leadership != Leadership::Leader {
            return Err(SubmitError::NotLeader);
        }
        if let Some(known) = key.and_then(|key| self.ledger.outbox.find_key(key)) {
            return Ok(known.to_string());
        }
        let index = self.ledger.next_index();
        let outbox = &mut self.ledger.outbox;
        let (bytes, budget) = (outbox.pending_bytes(), OUTBOX_BUDGET);
        if bytes >= budget {
            return Err(SubmitError::OutboxFull { bytes, budget });
        }
        let key = key.map(str::to_string);
        let command = outbox.accept_at(agent, name, args, timeout, index, key);
        let request_id = command.request_id.clone();
        let len = payload_len(&Message::Command(Box::new(command)));
        if len > MAX_FRAME_DEFAULT {
            outbox.withdraw(&request_id);
            let max = MAX_FRAME_DEFAULT;
            return Err(SubmitError::TooLarge { len, max });
        }
        self.changed();
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
            self.changed();
            self.output.events.push(CommandEvent::CommandResult {
                request_id: result.request_id.clone(),
                agent,
                outcome: result.outcome.name().to_string(),
            });
            self.ledger.results.keep(result);
        }
    }

    /// An agent behind on its config asks for it; one that is not is told nothing.
    pub(super) fn handle_config_pull(&mut self, session: SessionId, pull: ConfigPull) {
        if self.agents.entry_for(session).is_none() {
            return self.output.close(session, "config pull before register");
        }
        if pull.have < self.ledger.announced.id {
            let push = Box::new(self.ledger.announced.clone());
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
