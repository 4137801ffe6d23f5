//! What happened to each command, config version and agent status, read off the timeline:
//! who sent a command and when (every copy), which agent incarnation started and finished it,
//! whether its result reached a master or it was reported lost.

use crate::history::{Entry, FaultEvent, Happening};
use crate::scenario::faults::FaultAction;
use fleet_core::timeline::{CommandEvent, Event};
use fleet_core::wire::ConfigId;
use std::collections::BTreeMap;

/// One command's story.
#[derive(Clone, Debug, Default)]
pub struct CommandStory {
    /// The agent the master addressed it to.
    pub agent: String,
    /// When it was accepted for an agent the master had no session with.
    pub queued: Option<u64>,
    /// Every moment a master sent it (again, after the agent re-registered).
    pub sent: Vec<u64>,
    /// `(t_ms, agent, incarnation)` of each start and each finish.
    pub started: Vec<(u64, String, u32)>,
    pub finished: Vec<(u64, String, u32, String)>,
    /// The first result a master took: `(t_ms, master, outcome)`.
    pub result: Option<(u64, String, String)>,
    /// `(t_ms, master, reason)` of the first report that it was lost.
    pub lost: Option<(u64, String, String)>,
}

/// Commands by request id, config versions and statuses by agent.
#[derive(Clone, Debug, Default)]
pub struct CommandHistory {
    pub commands: BTreeMap<String, CommandStory>,
    /// Ids started, finished or answered that no master ever sent: `(t_ms, node, id)`.
    pub strangers: Vec<(u64, String, String)>,
    /// Copies an agent answered from memory.
    pub duplicates: u64,
    /// `(t_ms, config)` of each push.
    pub pushes: Vec<(u64, ConfigId)>,
    /// Per agent: `(t_ms, incarnation, config)` of each config applied.
    pub applied: BTreeMap<String, Vec<(u64, u32, ConfigId)>>,
    /// Per agent: `(t_ms, status)` of each change, `down` while crashed; every agent starts
    /// `online`.
    pub statuses: BTreeMap<String, Vec<(u64, String)>>,
    /// Per node whose process a crash or restart ended: its last process's number and when
    /// the one before it ended. Others are still in process 1, begun at 0.
    pub processes: BTreeMap<String, (u32, u64)>,
    /// Per node, when it woke from each pause.
    pub resumed: BTreeMap<String, Vec<u64>>,
}

impl CommandHistory {
    /// The last moment at or before `t` that any of `nodes` woke from a pause.
    pub fn last_resumed(&self, nodes: &[&str], t: u64) -> Option<u64> {
        (nodes.iter())
            .filter_map(|node| self.resumed.get(*node))
            .flat_map(|times| times.iter().copied().filter(|&at| at <= t))
            .max()
    }
}

impl CommandHistory {
    pub(crate) fn from_entries(entries: &[Entry]) -> CommandHistory {
        let mut history = CommandHistory::default();
        // Each agent's incarnation: 1 at boot, +1 each time a crash or restart ends it.
        let mut incarnations: BTreeMap<String, u32> = BTreeMap::new();
        for entry in entries {
            match &entry.event {
                Happening::Fault(fault) => history.fault(fault, entry.t_ms, &mut incarnations),
                Happening::System(Event::Command(event)) => {
                    let incarnation = incarnations.get(&entry.node).copied().unwrap_or(1);
                    history.command(event, entry.t_ms, entry.node.clone(), incarnation);
                }
                Happening::System(_) => {}
            }
        }
        history
    }

    /// A fault that ended processes starts their next incarnation. A crashed or stopped agent
    /// reports nothing (`down`); a restarted one starts online, as the first process did.
    fn fault(&mut self, fault: &FaultEvent, t: u64, incarnations: &mut BTreeMap<String, u32>) {
        if let Some(fired) = fault
            .fired()
            .filter(|f| matches!(f.action, FaultAction::Resume(_)))
        {
            for node in fired.nodes() {
                self.resumed.entry(node.clone()).or_default().push(t);
            }
        }
        for node in fault.processes_ended().unwrap_or_default() {
            let incarnation = incarnations.entry(node.clone()).or_insert(1);
            *incarnation += 1;
            self.processes.insert(node.clone(), (*incarnation, t));
            let restarted = fault.fired().map(|fired| &fired.action);
            let status = match restarted {
                Some(FaultAction::Restart(_)) => "online",
                _ => "down",
            };
            let statuses = self.statuses.entry(node.clone()).or_default();
            statuses.push((t, status.into()));
        }
    }

    /// What one command or config event adds to the stories.
    fn command(&mut self, event: &CommandEvent, t: u64, node: String, incarnation: u32) {
        let config = |term: &u64, version: &u64| ConfigId {
            term: *term,
            version: *version,
        };
        match event {
            CommandEvent::CommandSent {
                request_id, agent, ..
            } => {
                let story = self.commands.entry(request_id.clone()).or_default();
                story.agent = agent.clone();
                story.sent.push(t);
            }
            CommandEvent::CommandQueued {
                request_id, agent, ..
            } => {
                let story = self.commands.entry(request_id.clone()).or_default();
                story.agent = agent.clone();
                story.queued = Some(t);
            }
            CommandEvent::CommandStarted { request_id, .. } => {
                match self.commands.get_mut(request_id) {
                    Some(story) => story.started.push((t, node, incarnation)),
                    None => self.strangers.push((t, node, request_id.clone())),
                }
            }
            CommandEvent::CommandFinished {
                request_id,
                outcome,
            } => match self.commands.get_mut(request_id) {
                Some(story) => story.finished.push((t, node, incarnation, outcome.clone())),
                None => self.strangers.push((t, node, request_id.clone())),
            },
            CommandEvent::CommandDuplicate { .. } => self.duplicates += 1,
            CommandEvent::CommandResult {
                request_id,
                outcome,
                ..
            } => match self.commands.get_mut(request_id) {
                Some(story) => {
                    story.result.get_or_insert((t, node, outcome.clone()));
                }
                None => self.strangers.push((t, node, request_id.clone())),
            },
            CommandEvent::CommandLost { request_id, reason } => {
                let story = self.commands.entry(request_id.clone()).or_default();
                story.lost.get_or_insert((t, node, reason.clone()));
            }
            CommandEvent::CommandsAdopted { .. } => {}
            CommandEvent::ConfigPushed { version, term, .. } => {
                self.pushes.push((t, config(term, version)));
            }
            CommandEvent::ConfigApplied { version, term } => {
                let applied = self.applied.entry(node).or_default();
                applied.push((t, incarnation, config(term, version)));
            }
            CommandEvent::StatusChanged { status } => {
                let statuses = self.statuses.entry(node).or_default();
                statuses.push((t, status.clone()));
            }
        }
    }

    /// An agent's status at `t_ms`, as it last reported it (`down` while crashed).
    pub(crate) fn status_at(&self, agent: &str, t_ms: u64) -> &str {
        (self.statuses.get(agent))
            .and_then(|changes| changes.iter().rev().find(|(t, _)| *t <= t_ms))
            .map_or("online", |(_, status)| status.as_str())
    }

    /// A node's last process: its number and when it began (0 for the first).
    pub(crate) fn last_process(&self, node: &str) -> (u32, u64) {
        self.processes.get(node).copied().unwrap_or((1, 0))
    }

    /// The newest config pushed, if any was.
    pub(crate) fn last_push(&self) -> Option<(u64, ConfigId)> {
        self.pushes.iter().copied().max_by_key(|(_, id)| *id)
    }
}
