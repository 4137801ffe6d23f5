//! Applies a scenario's faults to the simulated network and machines, and records each one on
//! the timeline (with the nodes a target that depends on the run meant at that moment, and
//! what `as` captured).

use crate::history::captures::Captures;
use crate::history::leaders::LeaderHistory;
use crate::history::online::OnlineHistory;
use crate::history::{FaultEvent, Timeline};
use crate::run::nodes::{AgentSlot, Built, MasterSlot, Revoked};
use crate::scenario::faults::{AdminOp, Condition, Fault, FaultAction};
use crate::scenario::selector::{Scope, Selector, Topology};
use fleet_core::fmt_duration;
use fleet_core::timeline::Json;
use fleet_node::disk::Disk;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// How long a master that shuts down has for its goodbyes before it goes down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

pub struct FaultInjector {
    pub ids: BTreeMap<String, NodeId>,
    /// The disks that outlive their nodes, for `wipe`.
    pub disks: BTreeMap<String, Disk>,
    /// The masters' states, for credentials, admin operations and shutdown.
    pub masters: BTreeMap<String, MasterSlot>,
    /// The agents' controls, for `stop`.
    pub agents: BTreeMap<String, AgentSlot>,
    pub revoked: Revoked,
    /// Links cut by partitions and isolations, as (from, to), so heal can restore exactly those.
    pub clogged: BTreeSet<(NodeId, NodeId)>,
    /// Nodes cut off by `isolate` and not yet healed.
    pub isolated: BTreeSet<String>,
    pub topology: Topology,
    /// The timeline so far: who leads now is read off it.
    pub timeline: Arc<Mutex<Timeline>>,
    pub captures: Captures,
    /// Draws `any(...)`: from the run's seed, apart from madsim's stream.
    pub rng: ChaCha8Rng,
}

/// A selector's view of the moment a fault or command fires.
pub struct Now<'a> {
    pub leader: Option<String>,
    pub captures: &'a Captures,
    pub rng: &'a mut ChaCha8Rng,
}

/// Who leads now, by the timeline so far.
pub fn leader_now(timeline: &Mutex<Timeline>, topology: &Topology) -> Option<String> {
    let timeline = timeline.lock().unwrap_or_else(|p| p.into_inner());
    let history = LeaderHistory::from_entries(&timeline.entries, topology);
    history.leader_at(u64::MAX).map(|span| span.node.clone())
}

impl Scope for Now<'_> {
    fn leader(&self) -> Option<String> {
        self.leader.clone()
    }
    fn capture(&self, name: &str) -> Vec<String> {
        self.captures.at(name, u64::MAX)
    }
    fn pick(&mut self, len: usize) -> usize {
        self.rng.gen_range(0..len)
    }
}

/// Keeps `any(...)` draws apart from the seed's other uses.
const ANY_STREAM: u64 = 0x616e_795f_7069_636b;

impl FaultInjector {
    pub fn new(
        built: Built,
        topology: Topology,
        timeline: Arc<Mutex<Timeline>>,
        seed: u64,
    ) -> FaultInjector {
        FaultInjector {
            ids: built.ids,
            disks: built.disks,
            masters: built.masters,
            agents: built.agents,
            revoked: built.revoked,
            clogged: BTreeSet::new(),
            isolated: BTreeSet::new(),
            topology,
            timeline,
            captures: Captures::default(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ ANY_STREAM),
        }
    }

    fn id(&self, node: &str) -> NodeId {
        self.ids[node]
    }

    /// The nodes `selector` names at this moment.
    fn resolve(&mut self, selector: &Selector) -> Vec<String> {
        if !selector.is_dynamic() {
            return selector.nodes().to_vec();
        }
        let mut now = Now {
            leader: leader_now(&self.timeline, &self.topology),
            captures: &self.captures,
            rng: &mut self.rng,
        };
        selector.resolve(&self.topology, &mut now)
    }

    /// Whether `condition` holds now, by the timeline so far.
    pub fn holds(&self, condition: Condition, now_ms: u64) -> bool {
        let timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        match condition {
            Condition::LeaderExists => {
                LeaderHistory::from_entries(&timeline.entries, &self.topology)
                    .leader_at(now_ms)
                    .is_some()
            }
            Condition::AllOnline => {
                let online = OnlineHistory::from_entries(&timeline.entries, &self.topology);
                (self.topology.agents().iter()).all(|agent| online.online_at(agent, now_ms))
            }
        }
    }

    /// Records that `fault` never fired: the run ended first.
    pub fn unfired(fault: &Fault, why: &str) {
        record(FaultEvent::Unfired {
            fault: fault.action.to_string(),
            when: why.to_string(),
        });
    }

    /// Runs `f` on the running registry of each of `masters`, on that master's node, so what
    /// it reports is the master's (one that is down has no registry, and is skipped).
    async fn operate<F>(&self, masters: &[String], f: F)
    where
        F: Fn(&mut fleet_core::master::Registry) + Clone + Send + 'static,
    {
        for master in masters {
            let slot = self.masters.get(master);
            let state =
                slot.and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).clone());
            let node = Handle::current().get_node(self.id(master));
            let (Some(state), Some(node)) = (state, node) else {
                continue;
            };
            let f = f.clone();
            let task = node.spawn(async move { state.operate(f) });
            // A node that goes down first never runs it.
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }

    /// Revokes (`valid = false`) or restores the credentials of `agents` at every master, and
    /// in the list masters read when they boot.
    async fn set_credentials(&self, agents: Vec<String>, valid: bool) {
        {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            for agent in &agents {
                if valid {
                    revoked.remove(agent);
                } else {
                    revoked.insert(agent.clone());
                }
            }
        }
        let masters: Vec<String> = self.masters.keys().cloned().collect();
        self.operate(&masters, move |registry| {
            for agent in &agents {
                if valid {
                    registry.restore_credentials(agent);
                } else {
                    registry.revoke_credentials(agent);
                }
            }
        })
        .await;
    }

    /// Sends `op` to the leader of the moment; with none, it goes nowhere (and the record says
    /// so).
    async fn admin(&mut self, op: &AdminOp) -> Vec<String> {
        let agents = match op.agents() {
            Some(selector) => self.resolve(selector),
            None => Vec::new(),
        };
        let master = leader_now(&self.timeline, &self.topology);
        record(FaultEvent::Admin {
            op: op.name().to_string(),
            agents: op.agents().map(ToString::to_string),
            nodes: (op.agents().is_some_and(Selector::is_dynamic)).then(|| agents.clone()),
            master: master.clone(),
        });
        let (op, named) = (op.clone(), agents.clone());
        self.operate(master.as_slice(), move |registry| {
            let now = fleet_node::clock::now();
            match &op {
                AdminOp::Status(_) => named.iter().for_each(|a| registry.admin_status(now, a)),
                AdminOp::Active => registry.admin_active(now),
                AdminOp::Cleanup => registry.admin_cleanup(now),
                AdminOp::Force(_) => named.iter().for_each(|a| registry.admin_force(a)),
                AdminOp::Decommission(_) => {
                    named.iter().for_each(|a| registry.admin_decommission(a))
                }
            }
        })
        .await;
        agents
    }

    pub async fn apply(&mut self, fault: &Fault) {
        let mut going_down = Vec::new();
        let hit: Vec<Vec<String>> = match &fault.action {
            FaultAction::Crash(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Crash { target, nodes });
                for node in &nodes {
                    Handle::current().kill(self.id(node));
                }
                vec![nodes]
            }
            FaultAction::Restart(target) => {
                let nodes = self.announce(target, |target, nodes| FaultEvent::Restart {
                    target,
                    nodes,
                });
                for node in &nodes {
                    // madsim's restart re-runs init without releasing the node's sockets; a
                    // kill first makes a restart a crash followed by a clean start.
                    Handle::current().kill(self.id(node));
                    Handle::current().restart(self.id(node));
                }
                vec![nodes]
            }
            FaultAction::Partition { groups, oneway } => self.partition(groups, *oneway),
            FaultAction::Heal(target) => vec![self.heal(target.as_ref())],
            FaultAction::Isolate(target) => vec![self.isolate(target)],
            FaultAction::Latency(low, high) => {
                let range = format!("{}..{}", fmt_duration(*low), fmt_duration(*high));
                record(FaultEvent::Latency { range });
                let range = latency_range(*low, *high);
                NetSim::current().update_config(|config| config.send_latency = range);
                Vec::new()
            }
            FaultAction::Loss(rate) => {
                record(FaultEvent::Loss { rate: *rate });
                let rate = *rate;
                NetSim::current().update_config(|config| config.packet_loss_rate = rate);
                Vec::new()
            }
            FaultAction::Wipe(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Wipe { target, nodes });
                // A node without a disk (an agent, or persist = false) has nothing to lose.
                for node in &nodes {
                    if let Some(disk) = self.disks.get(node) {
                        disk.wipe();
                    }
                }
                vec![nodes]
            }
            FaultAction::Revoke(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Revoke { target, nodes });
                self.set_credentials(nodes.clone(), false).await;
                vec![nodes]
            }
            FaultAction::Restore(target) => {
                let nodes = self.announce(target, |target, nodes| FaultEvent::Restore {
                    target,
                    nodes,
                });
                self.set_credentials(nodes.clone(), true).await;
                vec![nodes]
            }
            FaultAction::Stop(target) => {
                let nodes =
                    self.announce(target, |target, nodes| FaultEvent::Stop { target, nodes });
                for node in &nodes {
                    let slot = self.agents.get(node);
                    let control =
                        slot.and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone());
                    if let Some(control) = control {
                        control.stop();
                    }
                }
                vec![nodes]
            }
            FaultAction::Shutdown(target) => {
                let nodes = self.announce(target, |target, nodes| FaultEvent::Shutdown {
                    target,
                    nodes,
                });
                self.operate(&nodes, |registry| registry.shutdown()).await;
                going_down = nodes.clone();
                vec![nodes]
            }
            FaultAction::Admin(op) => vec![self.admin(op).await],
        };
        let now = TimeHandle::current().elapsed().as_millis() as u64;
        for (name, nodes) in fault.captures.iter().zip(hit) {
            record(FaultEvent::Captured {
                name: name.clone(),
                nodes: nodes.clone(),
            });
            self.captures.record(name, now, nodes);
        }
        if !going_down.is_empty() {
            // The goodbyes go out; then the masters go down, as a crash would take them.
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            for node in &going_down {
                Handle::current().kill(self.id(node));
            }
        }
    }

    /// Records the fault `make` describes and returns the nodes `target` hits. The record names
    /// those nodes when the target is dynamic; a fixed target speaks for itself.
    fn announce(
        &mut self,
        target: &Selector,
        make: impl FnOnce(String, Option<Vec<String>>) -> FaultEvent,
    ) -> Vec<String> {
        let nodes = self.resolve(target);
        let shown = target.is_dynamic().then(|| nodes.clone());
        record(make(target.to_string(), shown));
        nodes
    }

    /// Cuts links between groups; returns each group's nodes. A node two groups resolve to
    /// (the leader, when it is also named) stays in its first.
    fn partition(&mut self, groups: &[Vec<Selector>], oneway: bool) -> Vec<Vec<String>> {
        let mut placed: BTreeSet<String> = BTreeSet::new();
        let mut shown = Vec::new();
        let mut members: Vec<Vec<String>> = Vec::new();
        for group in groups {
            let mut names = Vec::new();
            let mut nodes = Vec::new();
            for selector in group {
                let resolved = self.resolve(selector);
                names.push(if selector.is_dynamic() {
                    format!("{selector}({})", resolved.join(","))
                } else {
                    selector.to_string()
                });
                nodes.extend(
                    resolved
                        .into_iter()
                        .filter(|node| placed.insert(node.clone())),
                );
            }
            shown.push(names.join(","));
            members.push(nodes);
        }
        record(FaultEvent::Partition {
            groups: shown.join(" | "),
            oneway,
        });
        for (i, from_group) in members.iter().enumerate() {
            for to_group in &members[i + 1..] {
                for a in from_group {
                    for b in to_group {
                        let (a, b) = (self.id(a), self.id(b));
                        self.clogged.insert((a, b));
                        // One way: only traffic from the earlier group is cut.
                        if !oneway {
                            self.clogged.insert((b, a));
                        }
                    }
                }
            }
        }
        self.clog_all();
        members
    }

    fn clog_all(&self) {
        let net = NetSim::current();
        for &(a, b) in &self.clogged {
            net.clog_link(a, b);
        }
    }

    /// Cuts each selected node off from every other node.
    fn isolate(&mut self, target: &Selector) -> Vec<String> {
        let nodes = self.announce(target, |target, nodes| FaultEvent::Isolate {
            target,
            nodes,
        });
        let everyone: Vec<NodeId> = self.ids.values().copied().collect();
        for node in &nodes {
            self.isolated.insert(node.clone());
            let id = self.id(node);
            for &other in everyone.iter().filter(|&&other| other != id) {
                self.clogged.insert((id, other));
                self.clogged.insert((other, id));
            }
        }
        self.clog_all();
        nodes
    }

    /// Heals every link (`None`), or reconnects the selected nodes to every node that is not
    /// itself isolated.
    fn heal(&mut self, target: Option<&Selector>) -> Vec<String> {
        let (healed, nodes): (Vec<(NodeId, NodeId)>, Vec<String>) = match target {
            None => {
                record(FaultEvent::Heal {
                    target: "all".into(),
                });
                self.isolated.clear();
                let healed = std::mem::take(&mut self.clogged).into_iter().collect();
                (healed, self.topology.nodes())
            }
            Some(selector) => {
                let nodes = self.resolve(selector);
                record(FaultEvent::Heal {
                    target: self.shown(selector, &nodes),
                });
                for node in &nodes {
                    self.isolated.remove(node);
                }
                let touched: BTreeSet<NodeId> = nodes.iter().map(|node| self.id(node)).collect();
                let still: BTreeSet<NodeId> =
                    self.isolated.iter().map(|node| self.id(node)).collect();
                let healed: Vec<_> = (self.clogged.iter())
                    .filter(|(a, b)| {
                        (touched.contains(a) && !still.contains(b))
                            || (touched.contains(b) && !still.contains(a))
                    })
                    .copied()
                    .collect();
                for link in &healed {
                    self.clogged.remove(link);
                }
                (healed, nodes)
            }
        };
        let net = NetSim::current();
        for (a, b) in healed {
            net.unclog_link(a, b);
        }
        nodes
    }

    /// A selector as the timeline shows it: `@old(master-2)` for one that depends on the run.
    fn shown(&self, selector: &Selector, nodes: &[String]) -> String {
        if selector.is_dynamic() {
            format!("{selector}({})", nodes.join(","))
        } else {
            selector.to_string()
        }
    }
}
