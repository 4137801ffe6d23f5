//! What the masters agree on: the commands and config a leader accepts. The leader proposes its
//! ledger to the cluster after each change, and a change counts (a command is accepted and
//! sent, a config pushed) only once the cluster has committed the index it was proposed at: a
//! majority of disks in raft, the store in lease mode, its own disk in single mode. A follower
//! installs what the leader replicates, so whichever master leads next holds everything that
//! counted.

use super::{Leadership, Registry};
use crate::bugs::Bug;
use crate::command::{CommandResult, Outbox};
use crate::timeline::{CommandEvent, MasterEvent};
use crate::wire::{ConfigId, ConfigPush, Message};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// What a master knows of one command (see [`Registry::command_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandState {
    Pending {
        agent: String,
        name: String,
        /// The cluster committed it (as far as this master knows).
        accepted: bool,
    },
    /// Answered: with the result, if this master received it.
    Completed(Option<CommandResult>),
}

/// The ledger as it is replicated and kept on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    pub outbox: Outbox,
    pub config: ConfigPush,
    /// The index the config was pushed at.
    pub config_index: u64,
}

/// What a master owes its agents: the replicated ledger, and how far the cluster has
/// committed it.
#[derive(Debug)]
pub(super) struct Ledger {
    /// Commands accepted (or proposed, past `committed`) and not yet answered.
    pub(super) outbox: Outbox,
    /// The newest config, committed or not.
    pub(super) fleet_config: ConfigPush,
    pub(super) config_index: u64,
    /// The config agents are brought to: the newest committed.
    pub(super) announced: ConfigPush,
    /// The highest term this master has been told of; it stamps the configs it pushes.
    pub(super) term: u64,
    /// The index of the state it holds: the last it installed or proposed. What changes
    /// next belongs to `index + 1`.
    pub(super) index: u64,
    /// Changed since the last proposal.
    pub(super) dirty: bool,
    /// Leader: the highest index the cluster committed in its term; `None` until the first.
    pub(super) committed: Option<u64>,
    /// Leader: the index it held when it took office; what is at or below it it inherited.
    pub(super) inherited: u64,
    /// Commits its own changes at once, with no cluster to replicate them: a registry run
    /// alone (tests, a shell without a cluster loop).
    pub(super) standalone: bool,
    /// The results this master received, for an operator who asks. Not replicated: a
    /// successor knows that a command completed, not what it answered.
    pub(super) results: Results,
}

/// The newest [`RESULTS_KEPT`] results, by request id.
#[derive(Debug, Default)]
pub(super) struct Results {
    by_id: BTreeMap<String, CommandResult>,
    order: VecDeque<String>,
}

/// As many results as an outbox remembers answered ids.
const RESULTS_KEPT: usize = 4096;

impl Results {
    pub(super) fn keep(&mut self, result: CommandResult) {
        self.order.push_back(result.request_id.clone());
        self.by_id.insert(result.request_id.clone(), result);
        if self.order.len() > RESULTS_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    pub(super) fn get(&self, request_id: &str) -> Option<&CommandResult> {
        self.by_id.get(request_id)
    }
}

impl Ledger {
    pub(super) fn new(name: &str) -> Ledger {
        Ledger {
            outbox: Outbox::new(name),
            fleet_config: ConfigPush::default(),
            config_index: 0,
            announced: ConfigPush::default(),
            term: 0,
            index: 0,
            dirty: false,
            committed: Some(0),
            inherited: 0,
            standalone: true,
            results: Results::default(),
        }
    }

    /// The index a change made now belongs to.
    pub(super) fn next_index(&self) -> u64 {
        self.index + 1
    }

    /// Whether what appeared at `index` counts: the cluster committed it.
    pub(super) fn is_committed(&self, index: u64) -> bool {
        self.committed.is_some_and(|committed| index <= committed)
    }
}

impl Registry {
    /// Names the commands this master accepts `{prefix}-N` instead of `{name}-N`; call before
    /// anything else. A master that lost its disk takes a new prefix, so its ids never repeat
    /// ones its agents still remember.
    pub fn name_commands(&mut self, prefix: &str) {
        self.ledger.outbox = Outbox::new(prefix);
    }

    /// From now on its changes count only once [`handle_commit`](Self::handle_commit) says
    /// the cluster committed them. Call before anything else.
    pub fn replicate(&mut self) {
        let ledger = &mut self.ledger;
        ledger.standalone = false;
        ledger.committed = None;
        // What it holds now was committed before (its disk): nothing of it is new.
        ledger.inherited = ledger.index;
    }

    /// The ledger to propose at the index it returns, if it changed since the last proposal
    /// and this master leads.
    pub fn take_proposal(&mut self) -> Option<(u64, Vec<u8>)> {
        let ledger = &mut self.ledger;
        if !ledger.dirty || self.leadership != Leadership::Leader {
            return None;
        }
        ledger.dirty = false;
        ledger.index += 1;
        #[derive(Serialize)]
        struct ReplicatedRef<'a> {
            outbox: &'a Outbox,
            config: &'a ConfigPush,
            config_index: u64,
        }
        let mut dropped = None;
        if self.config.bugs.has(Bug::CommandsReplicateDropsLast) {
            let mut outbox = ledger.outbox.clone();
            let newest = (outbox.pending_commands())
                .max_by_key(|pending| pending.order)
                .map(|pending| pending.command.request_id.clone());
            outbox.withdraw(&newest.unwrap_or_default());
            dropped = Some(outbox);
        }
        let state = ReplicatedRef {
            outbox: dropped.as_ref().unwrap_or(&ledger.outbox),
            config: &ledger.fleet_config,
            config_index: ledger.config_index,
        };
        let bytes = serde_json::to_vec(&state).expect("a ledger serializes");
        Some((ledger.index, bytes))
    }

    /// Takes the state the leader replicated (or this master's disk held) at `index`;
    /// empty bytes are an empty ledger. An unreadable state changes nothing.
    pub fn install(&mut self, index: u64, state: &[u8]) -> Result<(), String> {
        let replicated = if state.is_empty() {
            Replicated::default()
        } else {
            serde_json::from_slice::<Replicated>(state).map_err(|error| error.to_string())?
        };
        let ledger = &mut self.ledger;
        ledger.outbox.replace_with(replicated.outbox);
        ledger.announced = replicated.config.clone();
        ledger.fleet_config = replicated.config;
        ledger.config_index = replicated.config_index;
        ledger.index = index;
        ledger.dirty = false;
        Ok(())
    }

    /// Something changed that the next proposal carries.
    pub fn proposal_waiting(&self) -> bool {
        self.ledger.dirty && self.leadership == Leadership::Leader
    }

    /// What is the replicated ledger now, as [`install`](Self::install) reads it.
    pub fn replicated(&self) -> Replicated {
        Replicated {
            outbox: self.ledger.outbox.clone(),
            config: self.ledger.fleet_config.clone(),
            config_index: self.ledger.config_index,
        }
    }

    /// A change to the ledger: proposed next, or committed at once when standalone.
    pub(super) fn changed(&mut self) {
        self.ledger.dirty = true;
        if self.ledger.standalone && self.leadership == Leadership::Leader {
            self.ledger.index += 1;
            self.ledger.dirty = false;
            self.handle_commit(Some(self.ledger.index));
        }
    }

    /// The cluster committed through `committed` (this leader's term's highest index): what
    /// became accepted goes out. A leader's first commit accepts everything it inherited.
    pub fn handle_commit(&mut self, committed: Option<u64>) {
        let ledger = &mut self.ledger;
        if self.leadership != Leadership::Leader || committed <= ledger.committed {
            return;
        }
        let Some(through) = committed else { return };
        let after = ledger.committed.unwrap_or(0);
        let first = ledger.committed.is_none();
        ledger.committed = committed;
        let inherited = ledger.inherited;
        let mut adopted = 0;
        let mut accepted = Vec::new();
        for pending in ledger.outbox.pending_commands() {
            let newly = pending.index > after || first;
            let mut due = pending.index <= through;
            if self.config.bugs.has(Bug::CommandsCommitOffByOne) {
                due = pending.index < through;
            }
            if !newly || !due {
                continue;
            }
            let own = pending.index > inherited;
            adopted += u64::from(!own);
            let (agent, command) = (pending.agent.clone(), pending.command.clone());
            accepted.push((pending.order, agent, command, own));
        }
        accepted.sort_by_key(|(order, ..)| *order);
        if adopted > 0 {
            let count = adopted;
            self.output
                .events
                .push(CommandEvent::CommandsAdopted { count });
        }
        for (_, agent, command, own) in accepted {
            match self.agents.session_of(&agent) {
                Some(session) => self.output.send_command(session, &agent, command),
                None if own => self.output.events.push(CommandEvent::CommandQueued {
                    request_id: command.request_id,
                    agent,
                    name: command.name,
                }),
                None => {}
            }
        }
        self.announce_config(through);
    }

    /// A config committed at or below `through` is the one agents are brought to; one this
    /// leader pushed is pushed to every agent it serves.
    fn announce_config(&mut self, through: u64) {
        let ledger = &mut self.ledger;
        if ledger.config_index > through || ledger.announced == ledger.fleet_config {
            return;
        }
        ledger.announced = ledger.fleet_config.clone();
        if ledger.config_index <= ledger.inherited {
            return;
        }
        let id = ledger.announced.id;
        let sessions = &self.agents.sessions;
        self.output.events.push(CommandEvent::ConfigPushed {
            version: id.version,
            term: id.term,
            agents: sessions.len() as u64,
        });
        for &session in sessions.keys() {
            let push = Box::new(self.ledger.announced.clone());
            self.output.send(session, Message::ConfigPush(push));
        }
    }

    /// Whether the command `request_id` counts as accepted: this master leads and the
    /// cluster committed it (or its result already came).
    pub fn is_accepted(&self, request_id: &str) -> bool {
        if self.leadership != Leadership::Leader {
            return false;
        }
        match self.ledger.outbox.get(request_id) {
            Some(pending) => self.ledger.is_committed(pending.index),
            None => self.ledger.outbox.knows(request_id),
        }
    }

    /// What this master knows of command `request_id`: pending (accepted or proposed, not yet
    /// answered), answered, or nothing (never held, or answered too long ago to remember).
    pub fn command_state(&self, request_id: &str) -> Option<CommandState> {
        let outbox = &self.ledger.outbox;
        match outbox.get(request_id) {
            Some(pending) => Some(CommandState::Pending {
                agent: pending.agent.clone(),
                name: pending.command.name.clone(),
                accepted: self.ledger.is_committed(pending.index),
            }),
            None => match self.ledger.results.get(request_id) {
                Some(result) => Some(CommandState::Completed(Some(result.clone()))),
                None if outbox.knows(request_id) => Some(CommandState::Completed(None)),
                None => None,
            },
        }
    }

    /// The newest config the cluster committed: what agents are brought to.
    pub fn announced_config(&self) -> &ConfigPush {
        &self.ledger.announced
    }

    /// What became of config `id`, pushed by this master: `Some(true)` once the cluster
    /// committed it (or a newer one), `Some(false)` while it waits to be; `None` once it
    /// cannot tell (it no longer leads, or holds another config now), so a client pushes it
    /// again.
    pub fn config_accepted(&self, id: ConfigId) -> Option<bool> {
        let ledger = &self.ledger;
        if self.leadership != Leadership::Leader {
            return None;
        }
        if ledger.committed.is_some() && ledger.announced.id >= id {
            return Some(true);
        }
        (ledger.fleet_config.id == id).then_some(false)
    }

    /// Leadership changed. A leader that stops leading closes every agent session and forgets
    /// its registry: the next leader rebuilds its own from the agents' re-registrations.
    /// Registrations held for want of a leader are admitted or redirected once one is known.
    pub fn handle_leadership(&mut self, now: Instant, leadership: Leadership) {
        if leadership == self.leadership {
            return;
        }
        self.change_leadership(leadership);
        self.settle_waiting(now);
    }

    fn change_leadership(&mut self, leadership: Leadership) {
        let was_leader = self.leadership == Leadership::Leader;
        self.leadership = leadership;
        let leads = self.leadership == Leadership::Leader;
        if was_leader && !leads {
            self.step_down();
        }
        if !was_leader && leads {
            // What it holds now it inherited; it counts once this leader's first commit does.
            let ledger = &mut self.ledger;
            ledger.inherited = ledger.index;
            ledger.committed = None;
            if ledger.standalone {
                self.handle_commit(Some(self.ledger.index));
            }
        }
    }

    fn step_down(&mut self) {
        self.ledger.committed = None;
        if self.agents.nodes.len() > 0 {
            let sessions = self.agents.session_ids();
            self.output.events.push(MasterEvent::RegistryCleared {
                agents: self.agents.nodes.len() as u64,
            });
            self.agents.clear();
            for session in sessions {
                self.output.close(session, "master stopped leading");
            }
        }
    }
}
