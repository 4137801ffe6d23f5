//! Who was online, as the masters saw it: `node_registered` and `node_online` make an agent
//! online, `node_offline` and `node_unregistered` make it offline, and so does the end of its
//! master's registry (the master stopped leading, crashed or was restarted). An agent is the
//! instance that registered last: an older instance going offline says nothing about it.

use crate::history::{Entry, Happening};
use fleet_core::timeline::{Event, MasterEvent};
use std::collections::BTreeMap;

/// Each agent's registrations in time order: `Some(master)` while online at that master,
/// `None` while offline.
pub struct OnlineHistory {
    transitions: BTreeMap<String, Vec<(u64, Option<String>)>>,
}

impl OnlineHistory {
    pub(crate) fn from_entries(entries: &[Entry]) -> OnlineHistory {
        let mut history = OnlineHistory {
            transitions: BTreeMap::new(),
        };
        // Which master last accepted each agent, and which instance of it.
        let mut registered_at: BTreeMap<String, String> = BTreeMap::new();
        let mut instances: BTreeMap<String, String> = BTreeMap::new();
        for entry in entries {
            let masters_lost = match &entry.event {
                Happening::System(Event::Master(event)) => match event {
                    MasterEvent::NodeRegistered { agent, instance_id } => {
                        registered_at.insert(agent.clone(), entry.node.clone());
                        instances.insert(agent.clone(), instance_id.clone());
                        history.set(agent, entry.t_ms, Some(&entry.node));
                        continue;
                    }
                    MasterEvent::NodeOnline { agent } => {
                        history.set(agent, entry.t_ms, Some(&entry.node));
                        continue;
                    }
                    MasterEvent::NodeOffline {
                        agent, instance_id, ..
                    } => {
                        if instances.get(agent) == Some(instance_id) {
                            history.set(agent, entry.t_ms, None);
                        }
                        continue;
                    }
                    MasterEvent::NodeUnregistered { agent } => {
                        history.set(agent, entry.t_ms, None);
                        continue;
                    }
                    // The new instance's registration already made the agent online.
                    MasterEvent::InstanceReplaced { .. } => continue,
                    // A master shutting down leaves its agents as one that stopped leading does.
                    MasterEvent::RegistryCleared { .. } | MasterEvent::ShuttingDown { .. } => {
                        vec![entry.node.clone()]
                    }
                    // Liveness follows heartbeats: an agent whose session was ended goes
                    // offline by silence, or comes straight back.
                    MasterEvent::RegistrationRefused { .. }
                    | MasterEvent::SessionEnded { .. }
                    | MasterEvent::AdminStatus { .. }
                    | MasterEvent::AdminActive { .. }
                    | MasterEvent::AdminCleanup { .. }
                    | MasterEvent::AdminForce { .. } => continue,
                },
                Happening::Fault(fault) => match fault.processes_ended() {
                    Some(nodes) => nodes.to_vec(),
                    None => continue,
                },
                Happening::System(
                    Event::Agent(_)
                    | Event::Raft(_)
                    | Event::Lease(_)
                    | Event::Single(_)
                    | Event::Call(_)
                    | Event::Shell(_)
                    | Event::Command(_),
                ) => continue,
            };
            history.lose_masters(&registered_at, &masters_lost, entry.t_ms);
        }
        history
    }

    /// Every agent last registered at one of `masters` goes offline at `t_ms`.
    fn lose_masters(
        &mut self,
        registered_at: &BTreeMap<String, String>,
        masters: &[String],
        t_ms: u64,
    ) {
        for (agent, master) in registered_at {
            if masters.contains(master) {
                self.set(agent, t_ms, None);
            }
        }
    }

    fn set(&mut self, agent: &str, t_ms: u64, master: Option<&str>) {
        let history = self.transitions.entry(agent.to_string()).or_default();
        if history.last().map(|(_, state)| state.as_deref()) != Some(master) {
            history.push((t_ms, master.map(str::to_string)));
        }
    }

    /// The master `agent` was online at, at `t_ms` (after every event at that millisecond).
    pub(crate) fn master_at(&self, agent: &str, t_ms: u64) -> Option<&str> {
        self.transitions
            .get(agent)
            .and_then(|history| history.iter().take_while(|(t, _)| *t <= t_ms).last())
            .and_then(|(_, master)| master.as_deref())
    }

    pub(crate) fn online_at(&self, agent: &str, t_ms: u64) -> bool {
        self.master_at(agent, t_ms).is_some()
    }

    /// The first moment in `[from, to]` at which `agent` was offline.
    pub(crate) fn first_offline(&self, agent: &str, from: u64, to: u64) -> Option<u64> {
        if !self.online_at(agent, from) {
            return Some(from);
        }
        self.transitions.get(agent).and_then(|history| {
            history
                .iter()
                .find(|(t, master)| *t > from && *t <= to && master.is_none())
                .map(|(t, _)| *t)
        })
    }
    /// When `agent` last came back online in `[from, end]` and stayed so until `end` (`from`
    /// if it was online throughout); `None` if it is not online at `end`.
    pub(crate) fn settled_online(&self, agent: &str, from: u64, end: u64) -> Option<u64> {
        if !self.online_at(agent, end) {
            return None;
        }
        let history = self.transitions.get(agent)?;
        // The last time it was offline before `end`, and the return after it.
        let last_offline = (history.iter())
            .rev()
            .find(|(t, master)| *t <= end && master.is_none())
            .map(|(t, _)| *t);
        match last_offline {
            Some(t) if t >= from => self.next_online(agent, t),
            _ => self.next_online(agent, from),
        }
    }

    /// `from` if `agent` was online then, or else the first moment after it that it was.
    pub(crate) fn next_online(&self, agent: &str, from: u64) -> Option<u64> {
        if self.online_at(agent, from) {
            return Some(from);
        }
        (self.transitions.get(agent)?.iter())
            .find(|(t, master)| *t > from && master.is_some())
            .map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{entry, fault, fired, registered};

    #[test]
    fn online_history_follows_master_events_and_master_crashes() {
        let entries = vec![
            registered(100, "master-1", "agent-1"),
            registered(100, "master-1", "agent-2"),
            entry(
                5000,
                "master-1",
                MasterEvent::NodeOffline {
                    agent: "agent-2".into(),
                    instance_id: "agent-2-sim-101".into(),
                    silent_ms: 3000,
                    will: false,
                },
            ),
            fault(9000, fired(r#"crash = "master-1""#, &[])),
        ];
        let history = OnlineHistory::from_entries(&entries);
        assert_eq!(history.master_at("agent-1", 100), Some("master-1"));
        assert!(!history.online_at("agent-1", 99));
        assert!(history.online_at("agent-1", 100));
        assert!(history.online_at("agent-2", 4999));
        assert!(!history.online_at("agent-2", 5000));
        assert!(!history.online_at("agent-1", 9000), "its master crashed");
        assert_eq!(history.first_offline("agent-1", 1000, 10_000), Some(9000));
        assert_eq!(history.first_offline("agent-1", 1000, 8000), None);
    }

    #[test]
    fn an_old_instance_going_offline_leaves_the_new_one_online() {
        let new_instance = entry(
            1000,
            "master-1",
            MasterEvent::NodeRegistered {
                agent: "agent-1".into(),
                instance_id: "agent-1-sim-102".into(),
            },
        );
        let old_offline = entry(
            3000,
            "master-1",
            MasterEvent::NodeOffline {
                agent: "agent-1".into(),
                instance_id: "agent-1-sim-101".into(),
                silent_ms: 3000,
                will: false,
            },
        );
        let entries = vec![
            registered(100, "master-1", "agent-1"),
            new_instance,
            old_offline,
        ];
        let history = OnlineHistory::from_entries(&entries);
        assert!(history.online_at("agent-1", 5000));
    }
}
