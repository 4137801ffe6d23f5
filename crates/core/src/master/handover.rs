//! What outlives one leader: the commands and config a leader hands the other masters, what a
//! master keeps on disk, and what changes hands when leadership moves.

use super::{Leadership, Registry};
use crate::command::{Command, Outbox, Pending, OUTBOX_BUDGET};
use crate::timeline::{CommandEvent, Events, MasterEvent};
use crate::wire::ConfigPush;
use serde::{Deserialize, Serialize};

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

/// What a master owes its agents and its successors: the state a restart finds on disk and a
/// successor takes over, and the counters that tell the shell when to write it or hand it on.
#[derive(Debug)]
pub(super) struct Ledger {
    /// Commands accepted and not yet answered. A follower's is the leader's, as last handed
    /// over.
    pub(super) outbox: Outbox,
    /// The config agents are brought to.
    pub(super) fleet_config: ConfigPush,
    /// The highest term this master has been told of; it stamps the configs it pushes.
    pub(super) term: u64,
    /// Commands this master had when it stopped leading, until the next leader's handover says
    /// which it took over; the rest are reported lost then.
    pub(super) unconfirmed: Vec<Pending>,
    /// Counts changes to what [`Registry::durable`] returns, so the shell knows when to write.
    pub(super) changes: u64,
    /// Counts changes a successor must hear of at once: a command accepted, a config pushed,
    /// commands taken over. A result is not one: a successor that missed it sends the command
    /// again and the agent answers from memory, so results travel with the periodic handover.
    pub(super) handover_seq: u64,
}

impl Registry {
    /// Names the commands this master accepts `{prefix}-N` instead of `{name}-N`; call before
    /// anything else. A master that lost its disk takes a new prefix, so its ids never repeat
    /// ones its agents still remember.
    pub fn name_commands(&mut self, prefix: &str) {
        self.ledger.outbox = Outbox::new(prefix);
    }

    /// Takes back what an earlier incarnation kept on disk; call before anything else.
    pub fn restore(&mut self, durable: Durable) {
        self.ledger.restore(durable.handover, durable.unconfirmed);
        if !durable.leading {
            // It followed when it went down: what it holds is its leader's copy, nothing it
            // must account for when it first learns it does not lead.
            self.leadership = Leadership::Follower { leader: None };
        }
    }

    /// What this master keeps on disk, as JSON that reads back as a [`Durable`], written
    /// without copying the outbox.
    pub fn durable_json(&self) -> Vec<u8> {
        self.ledger
            .durable_json(self.leadership == Leadership::Leader)
    }

    /// What this master keeps on disk.
    pub fn durable(&self) -> Durable {
        Durable {
            handover: self.ledger.handover(),
            unconfirmed: self.ledger.unconfirmed.clone(),
            leading: self.leadership == Leadership::Leader,
        }
    }

    /// Goes up whenever [`durable`](Self::durable) would return something new.
    pub fn changes(&self) -> u64 {
        self.ledger.changes
    }

    /// Goes up whenever the other masters must be handed the news at once.
    pub fn handover_seq(&self) -> u64 {
        self.ledger.handover_seq
    }

    /// What a leader hands the other masters (even with nothing in it: it tells a master that
    /// gave up leading that nothing of its own went on); `None` unless it leads.
    pub fn handover(&self) -> Option<Handover> {
        (self.leadership == Leadership::Leader).then(|| self.ledger.handover())
    }

    /// The leader `from` handed over its commands and config. A follower of `from` keeps them
    /// for when it leads. Of what it gave up leading with, what `from` holds is settled; the
    /// rest it returns, and keeps returning with each handover until `from` holds it too
    /// ([`handle_hand_back`](Self::handle_hand_back)). Returns the commands to send back.
    pub fn handle_handover(&mut self, from: &str, handover: Handover) -> Vec<Pending> {
        let follows = matches!(&self.leadership, Leadership::Follower { leader: Some(leader) } if leader == from);
        if !follows || handover.term < self.ledger.term {
            return Vec::new();
        }
        self.ledger.take_handover(handover)
    }

    /// A master that gave up leading returns commands the leader does not hold: the leader
    /// takes them over and sends them, so a command accepted by a leader cut off from the
    /// others still runs. One it cannot hold (its outbox is full) is reported lost, and
    /// counted as answered so it is not returned again.
    pub fn handle_hand_back(&mut self, from: &str, returned: Vec<Pending>) {
        if self.leadership != Leadership::Leader {
            return;
        }
        let adopted = (self.ledger).take_back(from, returned, &mut self.output.events);
        if adopted.is_empty() {
            return;
        }
        self.output.events.push(CommandEvent::CommandsAdopted {
            count: adopted.len() as u64,
        });
        for (agent, command) in adopted {
            if let Some(session) = self.agents.session_of(&agent) {
                self.output.send_command(session, &agent, command);
            }
        }
    }

    /// Leadership changed. A leader that stops leading closes every agent session and forgets
    /// its registry: the next leader rebuilds its own from the agents' re-registrations.
    pub fn handle_leadership(&mut self, leadership: Leadership) {
        if leadership == self.leadership {
            return;
        }
        let was_leader = self.leadership == Leadership::Leader;
        self.leadership = leadership;
        let leads = self.leadership == Leadership::Leader;
        if was_leader && !leads {
            self.step_down();
        }
        if !was_leader && leads {
            // Leading again: what it gave up is its own to send once more, with whatever the
            // last leader handed over.
            self.ledger.lead_again(&mut self.output.events);
        }
    }

    fn step_down(&mut self) {
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
        // Nothing accepted vanishes silently: the next leader's handover says which of
        // these it took over, and the rest are reported lost then.
        let known = self.ledger.unconfirmed.clone();
        let new = (self.ledger.outbox.pending_commands())
            .filter(|pending| !known.iter().any(|p| p.command == pending.command));
        let new: Vec<Pending> = new.cloned().collect();
        self.ledger.unconfirmed.extend(new);
        self.ledger.changes += 1;
    }
}

impl Ledger {
    pub(super) fn new(name: &str) -> Ledger {
        Ledger {
            outbox: Outbox::new(name),
            fleet_config: ConfigPush::default(),
            term: 0,
            unconfirmed: Vec::new(),
            changes: 0,
            handover_seq: 0,
        }
    }

    fn restore(&mut self, handover: Handover, unconfirmed: Vec<Pending>) {
        // The outbox's numbering comes back too, so ids accepted before the crash never repeat.
        self.outbox = handover.outbox;
        self.outbox.recount();
        self.fleet_config = handover.config;
        self.term = self.term.max(handover.term);
        self.unconfirmed = unconfirmed;
    }

    fn handover(&self) -> Handover {
        Handover {
            outbox: self.outbox.clone(),
            config: self.fleet_config.clone(),
            term: self.term,
        }
    }

    fn durable_json(&self, leading: bool) -> Vec<u8> {
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
            leading,
        };
        serde_json::to_vec(&durable).expect("a registry serializes")
    }

    /// Takes the leader's commands and config; returns what it gave up leading with that the
    /// leader does not hold.
    fn take_handover(&mut self, handover: Handover) -> Vec<Pending> {
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

    /// Takes over the commands `from` returned that it does not hold yet, reporting lost the
    /// ones its full outbox cannot; returns the ones it took, to send to their agents.
    fn take_back(
        &mut self,
        from: &str,
        returned: Vec<Pending>,
        events: &mut Events,
    ) -> Vec<(String, Command)> {
        let mut adopted = Vec::new();
        let mut refused = false;
        for pending in returned {
            let id = pending.command.request_id.clone();
            if self.outbox.knows(&id) {
                continue;
            }
            if self.outbox.pending_bytes() >= OUTBOX_BUDGET {
                events.push(CommandEvent::CommandLost {
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
        adopted
    }

    /// Puts back in the outbox what it gave up leading with.
    fn lead_again(&mut self, events: &mut Events) {
        for pending in std::mem::take(&mut self.unconfirmed) {
            self.outbox.restore_pending(pending);
        }
        let count = self.outbox.pending() as u64;
        if count > 0 {
            events.push(CommandEvent::CommandsAdopted { count });
        }
        self.changes += 1;
        self.handover_seq += 1;
    }
}
