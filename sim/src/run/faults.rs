//! Applies a scenario's faults to the simulated network and machines, and records each one on
//! the timeline (with the nodes a `leader` or `followers` target meant at that moment).

use crate::history::leaders::LeaderHistory;
use crate::history::{FaultEvent, Timeline};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::{Selector, Topology};
use fleet_core::fmt_duration;
use fleet_core::timeline::Json;
use fleet_node::disk::Disk;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// madsim draws latency from a half-open range; a fixed latency is a range 1µs wide.
pub fn latency_range(low: Duration, high: Duration) -> Range<Duration> {
    low..high.max(low + Duration::from_micros(1))
}

fn record(event: FaultEvent) {
    tracing::info!(event = %Json(&event));
}

pub struct FaultInjector {
    pub ids: BTreeMap<String, NodeId>,
    /// The disks that outlive their nodes, for `wipe`.
    pub disks: BTreeMap<String, Disk>,
    /// Links cut by partitions, as (from, to), so heal can restore exactly those.
    pub clogged: BTreeSet<(NodeId, NodeId)>,
    pub topology: Topology,
    /// The timeline so far: who leads now is read off it.
    pub timeline: Arc<Mutex<Timeline>>,
}

impl FaultInjector {
    fn id(&self, node: &str) -> NodeId {
        self.ids[node]
    }

    /// The nodes `selector` names at this moment.
    fn resolve(&self, selector: &Selector) -> Vec<String> {
        if !selector.is_dynamic() {
            return selector.nodes().to_vec();
        }
        let timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        let history = LeaderHistory::from_entries(&timeline.entries, &self.topology);
        let leader = history.leader_at(u64::MAX).map(|span| span.node.clone());
        selector.resolve(leader.as_deref(), &self.topology)
    }

    pub fn apply(&mut self, action: &FaultAction) {
        match action {
            FaultAction::Crash(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Crash { target, nodes });
                for node in nodes {
                    Handle::current().kill(self.id(&node));
                }
            }
            FaultAction::Restart(target) => {
                let nodes = self.announce(target, |target, nodes| FaultEvent::Restart {
                    target,
                    nodes,
                });
                for node in nodes {
                    // madsim's restart re-runs init without releasing the node's sockets; a
                    // kill first makes a restart a crash followed by a clean start.
                    Handle::current().kill(self.id(&node));
                    Handle::current().restart(self.id(&node));
                }
            }
            FaultAction::Partition { groups, oneway } => self.partition(groups, *oneway),
            FaultAction::Heal(target) => self.heal(target.as_ref()),
            FaultAction::Latency(low, high) => {
                let range = format!("{}..{}", fmt_duration(*low), fmt_duration(*high));
                record(FaultEvent::Latency { range });
                let range = latency_range(*low, *high);
                NetSim::current().update_config(|config| config.send_latency = range);
            }
            FaultAction::Loss(rate) => {
                record(FaultEvent::Loss { rate: *rate });
                let rate = *rate;
                NetSim::current().update_config(|config| config.packet_loss_rate = rate);
            }
            FaultAction::Wipe(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Wipe { target, nodes });
                // A node without a disk (an agent, or persist = false) has nothing to lose.
                for node in nodes {
                    if let Some(disk) = self.disks.get(&node) {
                        disk.wipe();
                    }
                }
            }
        }
    }

    /// Records the fault `make` describes and returns the nodes `target` hits. The record names
    /// those nodes when the target is dynamic; a fixed target speaks for itself.
    fn announce(
        &self,
        target: &Selector,
        make: impl FnOnce(String, Option<Vec<String>>) -> FaultEvent,
    ) -> Vec<String> {
        let nodes = self.resolve(target);
        let shown = target.is_dynamic().then(|| nodes.clone());
        record(make(target.to_string(), shown));
        nodes
    }

    /// A selector as the timeline shows it: `leader(master-2)` for the dynamic ones.
    fn show(&self, selector: &Selector) -> String {
        if selector.is_dynamic() {
            format!("{selector}({})", self.resolve(selector).join(","))
        } else {
            selector.to_string()
        }
    }

    fn partition(&mut self, groups: &[Vec<Selector>], oneway: bool) {
        let shown: Vec<String> = groups
            .iter()
            .map(|group| {
                let names: Vec<String> = group.iter().map(|s| self.show(s)).collect();
                names.join(",")
            })
            .collect();
        record(FaultEvent::Partition {
            groups: shown.join(" | "),
            oneway,
        });
        // A node two groups resolve to (the leader, when it is also named) stays in its first.
        let mut placed: BTreeSet<NodeId> = BTreeSet::new();
        let members: Vec<Vec<NodeId>> = groups
            .iter()
            .map(|group| {
                let nodes = group.iter().flat_map(|selector| self.resolve(selector));
                let ids: Vec<NodeId> = nodes.map(|node| self.id(&node)).collect();
                ids.into_iter().filter(|id| placed.insert(*id)).collect()
            })
            .collect();
        for (i, from_group) in members.iter().enumerate() {
            for to_group in &members[i + 1..] {
                for &a in from_group {
                    for &b in to_group {
                        self.clogged.insert((a, b));
                        // One way: only traffic from the earlier group is cut.
                        if !oneway {
                            self.clogged.insert((b, a));
                        }
                    }
                }
            }
        }
        let net = NetSim::current();
        for &(a, b) in &self.clogged {
            net.clog_link(a, b);
        }
    }

    fn heal(&mut self, target: Option<&Selector>) {
        let healed: Vec<(NodeId, NodeId)> = match target {
            None => {
                record(FaultEvent::Heal {
                    target: "all".into(),
                });
                std::mem::take(&mut self.clogged).into_iter().collect()
            }
            Some(selector) => {
                record(FaultEvent::Heal {
                    target: selector.to_string(),
                });
                let touched: BTreeSet<NodeId> = self
                    .resolve(selector)
                    .iter()
                    .map(|node| self.id(node))
                    .collect();
                let healed: Vec<_> = self
                    .clogged
                    .iter()
                    .filter(|(a, b)| touched.contains(a) || touched.contains(b))
                    .copied()
                    .collect();
                for link in &healed {
                    self.clogged.remove(link);
                }
                healed
            }
        };
        let net = NetSim::current();
        for (a, b) in healed {
            net.unclog_link(a, b);
        }
    }
}
