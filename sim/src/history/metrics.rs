//! What every run measures, whatever it expects: the numbers a tuning sweep compares.
//!
//! - **detection**: from the moment an online agent is cut off from its master (its process
//!   ends, or a partition or isolation cuts the link) to its master's `node_offline`;
//! - **false offlines**: `node_offline` for an agent whose process lived, whose link to that
//!   master was up, and which believed itself registered (no `disconnected` since);
//! - **recovery**: from the last fault until the last agent (not stopped) is back online for
//!   good (none if one is offline at the end);
//! - **connect attempts** and **registrations**, in all and in the busiest second;
//! - **failover**: from a leader's last moment in office to the next leader's first;
//! - **elections** (raft): from a winning candidate starting its election to taking office;
//! - **terms**: the highest term any master took.

use crate::history::attempts::{connect_attempts, peak_connect_rate};
use crate::history::leaders::LeaderHistory;
use crate::history::links::Links;
use crate::history::online::OnlineHistory;
use crate::history::{Entry, FaultEvent, Happening};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::{NodeKind, Topology};
use fleet_core::timeline::{AgentEvent, CommandEvent, Event, MasterEvent};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Each detection, in ms.
    pub detection_ms: Vec<u64>,
    pub false_offlines: u64,
    /// When the last fault fired; `None` in a run without faults.
    pub last_fault_ms: Option<u64>,
    /// From the last fault until the last agent (not stopped) was back for good; `None` if one
    /// is offline at the end, or there was no fault.
    pub recovered_ms: Option<u64>,
    pub connect_attempts: u64,
    pub peak_connect_attempts: u64,
    pub registrations: u64,
    pub peak_registrations: u64,
    /// Each time without a leader between two, in ms.
    pub failover_ms: Vec<u64>,
    /// Each raft election that made a leader: from its candidate starting it to winning, in ms.
    pub election_ms: Vec<u64>,
    pub terms: u64,
    /// Each command's start on an agent: from its master first sending it there to the agent
    /// starting it, in ms.
    pub command_start_ms: Vec<u64>,
    /// What every node's sockets wrote (the harness fills it in from the run, not the
    /// timeline).
    pub wire_bytes: u64,
}

/// Per agent, as the walk through the timeline goes.
#[derive(Default)]
struct AgentState {
    dead: bool,
    /// Registered, and no `disconnected` since: it believes it is online.
    connected: bool,
    /// Since when it has been cut off from its master while the master still counts it online.
    separated_since: Option<u64>,
}

impl Metrics {
    pub(crate) fn measure(
        entries: &[Entry],
        topology: &Topology,
        online: &OnlineHistory,
        leaders: &LeaderHistory,
        end_ms: u64,
    ) -> Metrics {
        let mut walk = Walk {
            everyone: topology.nodes(),
            ..Walk::default()
        };
        for entry in entries {
            match &entry.event {
                Happening::Fault(fault) => walk.fault(fault, entry.t_ms, topology, online),
                Happening::System(Event::Agent(event)) => walk.agent(&entry.node, event),
                Happening::System(Event::Master(MasterEvent::NodeOffline { agent, .. })) => {
                    walk.offline(agent, &entry.node, entry.t_ms);
                }
                Happening::System(Event::Master(MasterEvent::NodeRegistered { .. })) => {
                    walk.metrics.registrations += 1;
                }
                Happening::System(_) => {}
            }
        }
        let (mut metrics, stopped, last_fault) = (walk.metrics, walk.stopped, walk.last_fault);
        metrics.last_fault_ms = last_fault;
        metrics.recovered_ms = last_fault.and_then(|from| {
            let back = (topology.agents().iter())
                .filter(|agent| !stopped.contains(*agent))
                .map(|agent| online.settled_online(agent, from, end_ms))
                .try_fold(from, |latest, back| back.map(|t| latest.max(t)))?;
            Some(back - from)
        });
        metrics.connect_attempts = connect_attempts(entries).count() as u64;
        metrics.peak_connect_attempts =
            peak_connect_rate(entries, 0, end_ms).map_or(0, |(count, _)| count);
        metrics.peak_registrations = peak_registrations(entries);
        metrics.failover_ms = failovers(leaders);
        metrics.election_ms = elections(leaders);
        metrics.terms = leaders.highest_term().map_or(0, |started| started.term);
        metrics.command_start_ms = command_starts(entries);
        metrics
    }
}

/// Each command's start: from the first time a master sent it to an agent to that agent
/// starting it (a copy sent again after a failover counts from the first sending).
fn command_starts(entries: &[Entry]) -> Vec<u64> {
    let mut sent: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut starts = Vec::new();
    for entry in entries {
        match &entry.event {
            Happening::System(Event::Command(CommandEvent::CommandSent {
                request_id,
                agent,
                ..
            })) => {
                sent.entry((agent, request_id)).or_insert(entry.t_ms);
            }
            Happening::System(Event::Command(CommandEvent::CommandStarted {
                request_id, ..
            })) => {
                if let Some(at) = sent.remove(&(entry.node.as_str(), request_id.as_str())) {
                    starts.push(entry.t_ms - at);
                }
            }
            _ => {}
        }
    }
    starts
}

/// The walk through a timeline: what is cut, who is dead or stopped, what was measured so far.
#[derive(Default)]
struct Walk {
    metrics: Metrics,
    links: Links,
    everyone: Vec<String>,
    agents: BTreeMap<String, AgentState>,
    stopped: BTreeSet<String>,
    last_fault: Option<u64>,
}

impl Walk {
    fn fault(
        &mut self,
        fault: &FaultEvent,
        t_ms: u64,
        topology: &Topology,
        online: &OnlineHistory,
    ) {
        let Some(fired) = fault.fired() else {
            return;
        };
        self.last_fault = Some(t_ms);
        self.links.apply(fired, &self.everyone);
        let is_agent = |node: &&String| node.starts_with(NodeKind::Agent.prefix());
        let ended = fired.processes_ended().unwrap_or_default();
        for node in ended.iter().filter(is_agent) {
            let state = self.agents.entry(node.clone()).or_default();
            let restart = matches!(fired.action, FaultAction::Restart(_));
            state.dead = !restart;
            state.connected = false;
            if matches!(fired.action, FaultAction::Stop(_)) {
                self.stopped.insert(node.clone());
            } else if restart {
                self.stopped.remove(node);
            }
        }
        // Who is cut off from the master that counts them online, from now.
        for agent in topology.agents() {
            let Some(master) = online.master_at(&agent, t_ms) else {
                continue;
            };
            let state = self.agents.entry(agent.clone()).or_default();
            let apart = state.dead || self.links.apart(&agent, master);
            if apart && state.separated_since.is_none() {
                state.separated_since = Some(t_ms);
            } else if !apart {
                state.separated_since = None;
            }
        }
    }

    fn agent(&mut self, agent: &str, event: &AgentEvent) {
        let state = self.agents.entry(agent.to_string()).or_default();
        match event {
            AgentEvent::Registered { .. } => {
                state.connected = true;
                state.dead = false;
            }
            AgentEvent::Disconnected { .. } => state.connected = false,
            _ => {}
        }
    }

    /// `master` marked `agent` offline: a detection if it was cut off, a false offline if
    /// it lived, believed itself registered, and its link was up.
    fn offline(&mut self, agent: &str, master: &str, t_ms: u64) {
        let state = self.agents.entry(agent.to_string()).or_default();
        match state.separated_since.take() {
            Some(since) => self.metrics.detection_ms.push(t_ms - since),
            None if !state.dead && state.connected && !self.links.apart(agent, master) => {
                self.metrics.false_offlines += 1;
            }
            None => {}
        }
    }
}

fn peak_registrations(entries: &[Entry]) -> u64 {
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in entries {
        if let Some(Event::Master(MasterEvent::NodeRegistered { .. })) = entry.system() {
            *per_second.entry(entry.t_ms / 1000).or_default() += 1;
        }
    }
    per_second.into_values().max().unwrap_or(0)
}

/// From each time in office that ended to the next one that began at or after its end.
fn failovers(leaders: &LeaderHistory) -> Vec<u64> {
    let mut gaps = Vec::new();
    for span in &leaders.spans {
        let Some(end) = span.to_ms else { continue };
        let next = (leaders.spans.iter())
            .filter(|other| other.from_ms >= end && other.term > span.term)
            .map(|other| other.from_ms)
            .min();
        if let Some(next) = next {
            gaps.push(next - end);
        }
    }
    gaps
}

/// From each winning candidate's `election_started` to its `became_leader` in that term.
fn elections(leaders: &LeaderHistory) -> Vec<u64> {
    (leaders.spans.iter())
        .filter_map(|span| {
            let started = (leaders.terms.iter())
                .find(|started| started.node == span.node && started.term == span.term)?;
            (started.t_ms < span.from_ms).then(|| span.from_ms - started.t_ms)
        })
        .collect()
}

/// The nearest-rank quantile `q` (0 < q <= 1) of `sorted`: the median is the lower middle.
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The median of `values` (the lower of the middle two), for a summary line.
pub fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    quantile(&sorted, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{entry, fault, fired, registered};

    fn topology() -> Topology {
        Topology {
            masters: 1,
            agents: 2,
            store: false,
            broker: false,
        }
    }

    fn offline(t: u64, agent: &str) -> Entry {
        let event = MasterEvent::NodeOffline {
            agent: agent.into(),
            instance_id: format!("{agent}-sim-101"),
            silent_ms: 3000,
            will: false,
        };
        entry(t, "master-1", event)
    }

    fn agent_registered(t: u64, agent: &str) -> Entry {
        let event = AgentEvent::Registered {
            instance_id: format!("{agent}-sim-101"),
        };
        entry(t, agent, event)
    }

    fn measure(entries: &[Entry]) -> Metrics {
        let topology = topology();
        let online = OnlineHistory::from_entries(entries);
        let leaders = LeaderHistory::from_entries(entries);
        Metrics::measure(entries, &topology, &online, &leaders, 60_000)
    }

    #[test]
    fn a_cut_agent_going_offline_is_a_detection_and_a_silent_link_is_a_false_offline() {
        let entries = vec![
            registered(100, "master-1", "agent-1"),
            agent_registered(105, "agent-1"),
            registered(100, "master-1", "agent-2"),
            agent_registered(105, "agent-2"),
            fault(10_000, fired(r#"isolate = "agent-1""#, &[])),
            offline(12_500, "agent-1"),
            // agent-2 lives, its link is up and it believes it is registered: a false offline.
            offline(20_000, "agent-2"),
            fault(30_000, fired(r#"heal = "all""#, &[])),
            registered(31_000, "master-1", "agent-1"),
            registered(32_000, "master-1", "agent-2"),
        ];
        let metrics = measure(&entries);
        assert_eq!(metrics.detection_ms, vec![2500]);
        assert_eq!(metrics.false_offlines, 1);
        assert_eq!(metrics.recovered_ms, Some(2000));
        assert_eq!(metrics.registrations, 4);
        assert_eq!(metrics.peak_registrations, 2);
    }

    #[test]
    fn a_crashed_agent_is_detected_and_never_counts_as_false() {
        let entries = vec![
            registered(100, "master-1", "agent-1"),
            agent_registered(105, "agent-1"),
            fault(10_000, fired(r#"crash = "agent-1""#, &[])),
            offline(13_000, "agent-1"),
        ];
        let metrics = measure(&entries);
        assert_eq!(metrics.detection_ms, vec![3000]);
        assert_eq!(metrics.false_offlines, 0);
        assert_eq!(metrics.recovered_ms, None, "agent-1 never came back");
    }

    #[test]
    fn medians_take_the_lower_middle() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }
}
