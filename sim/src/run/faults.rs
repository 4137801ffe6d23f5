//! Applies a scenario's faults to the simulated network and machines through the run's
//! [`Engine`], and records each one on the timeline (with the nodes a target that depends on
//! the run meant at that moment, and what `as` captured).

use crate::history::captures::Captures;
use crate::history::leaders::LeaderHistory;
use crate::history::online::OnlineHistory;
use crate::history::{FaultEvent, Timeline};
use crate::run::engine::{sleep_until, Engine};
use crate::run::nodes::{AgentSlot, Built, MasterSlot, Revoked};
use crate::scenario::faults::{show_pair, AdminOp, Condition, Fault, FaultAction};
use crate::scenario::selector::{Scope, Selector, Topology};
use fleet_core::fmt_duration;
use fleet_core::timeline::Json;
use fleet_node::disk::Disk;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn record(event: FaultEvent) {
    tracing::info!(event = %Json(&event));
}

/// How long a master that shuts down has for its goodbyes before it goes down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

pub struct FaultInjector<E> {
    pub engine: E,
    /// The disks that outlive their nodes, for `wipe`.
    pub disks: BTreeMap<String, Disk>,
    /// The masters' states, for credentials, admin operations and shutdown.
    pub masters: BTreeMap<String, MasterSlot>,
    /// The agents' controls, for `stop`.
    pub agents: BTreeMap<String, AgentSlot>,
    pub revoked: Revoked,
    /// Links cut by partitions and isolations, as (from, to), so heal can restore exactly those.
    pub clogged: BTreeSet<(String, String)>,
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

impl<E: Engine> FaultInjector<E> {
    pub fn new(
        engine: E,
        built: Built,
        topology: Topology,
        timeline: Arc<Mutex<Timeline>>,
        seed: u64,
    ) -> FaultInjector<E> {
        FaultInjector {
            engine,
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
            let Some(state) = state else {
                continue;
            };
            let f = f.clone();
            // A node that goes down first never runs it.
            let _ = self.engine.run_on(master, move || state.operate(f)).await;
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
                    self.engine.kill(node);
                }
                vec![nodes]
            }
            FaultAction::Restart(target) => {
                let nodes = self.announce(target, |target, nodes| FaultEvent::Restart {
                    target,
                    nodes,
                });
                for node in &nodes {
                    self.engine.restart(node);
                }
                vec![nodes]
            }
            FaultAction::Partition { groups, oneway } => self.partition(groups, *oneway),
            FaultAction::Heal(target) => vec![self.heal(target.as_ref())],
            FaultAction::Isolate(target) => vec![self.isolate(target)],
            FaultAction::Latency(low, high) => {
                let range = format!("{}..{}", fmt_duration(*low), fmt_duration(*high));
                record(FaultEvent::Latency {
                    range,
                    between: None,
                });
                self.engine.latency(*low, *high);
                Vec::new()
            }
            FaultAction::LinkLatency { between, low, high } => {
                let range = format!("{}..{}", fmt_duration(*low), fmt_duration(*high));
                let (ends, shown) = self.ends(between);
                record(FaultEvent::Latency {
                    range,
                    between: Some(shown),
                });
                self.each_link(&ends, |engine, a, b| engine.link_latency(a, b, *low, *high));
                ends.into()
            }
            FaultAction::Loss(rate) => {
                record(FaultEvent::Loss { rate: *rate });
                self.engine.loss(*rate);
                Vec::new()
            }
            FaultAction::Hold(between) => {
                let (ends, shown) = self.ends(between);
                record(FaultEvent::Hold { between: shown });
                self.each_link(&ends, |engine, a, b| engine.hold(a, b));
                ends.into()
            }
            FaultAction::Release(between) => {
                let (ends, shown) = self.ends(between);
                record(FaultEvent::Release { between: shown });
                self.each_link(&ends, |engine, a, b| engine.release(a, b));
                ends.into()
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
        let now = self.engine.elapsed().as_millis() as u64;
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
                self.engine.kill(node);
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

    /// The nodes at each end of a link fault, and the ends as the timeline shows them.
    fn ends(&mut self, between: &[Selector; 2]) -> ([Vec<String>; 2], String) {
        let [a, b] = between;
        let (a_nodes, b_nodes) = (self.resolve(a), self.resolve(b));
        let shown = format!("{} | {}", self.shown(a, &a_nodes), self.shown(b, &b_nodes));
        debug_assert!(a.is_dynamic() || b.is_dynamic() || shown == show_pair(between));
        ([a_nodes, b_nodes], shown)
    }

    /// Calls `f` once for each link between the two ends, a node never with itself.
    fn each_link(&self, [a, b]: &[Vec<String>; 2], f: impl Fn(&E, &str, &str)) {
        for x in a {
            for y in b.iter().filter(|y| *y != x) {
                f(&self.engine, x, y);
            }
        }
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
                        self.clogged.insert((a.clone(), b.clone()));
                        // One way: only traffic from the earlier group is cut.
                        if !oneway {
                            self.clogged.insert((b.clone(), a.clone()));
                        }
                    }
                }
            }
        }
        self.clog_all();
        members
    }

    fn clog_all(&self) {
        for (a, b) in &self.clogged {
            self.engine.cut(a, b);
        }
    }

    /// Cuts each selected node off from every other node.
    fn isolate(&mut self, target: &Selector) -> Vec<String> {
        let nodes = self.announce(target, |target, nodes| FaultEvent::Isolate {
            target,
            nodes,
        });
        let everyone = self.topology.nodes();
        for node in &nodes {
            self.isolated.insert(node.clone());
            for other in everyone.iter().filter(|other| *other != node) {
                self.clogged.insert((node.clone(), other.clone()));
                self.clogged.insert((other.clone(), node.clone()));
            }
        }
        self.clog_all();
        nodes
    }

    /// Heals every link (`None`), or reconnects the selected nodes to every node that is not
    /// itself isolated.
    fn heal(&mut self, target: Option<&Selector>) -> Vec<String> {
        let (healed, nodes): (Vec<(String, String)>, Vec<String>) = match target {
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
                let touched: BTreeSet<&String> = nodes.iter().collect();
                let still = &self.isolated;
                let healed: Vec<_> = (self.clogged.iter())
                    .filter(|(a, b)| {
                        (touched.contains(a) && !still.contains(b))
                            || (touched.contains(b) && !still.contains(a))
                    })
                    .cloned()
                    .collect();
                for link in &healed {
                    self.clogged.remove(link);
                }
                (healed, nodes)
            }
        };
        for (a, b) in healed {
            self.engine.mend(&a, &b);
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

/// Fires the faults in order. A fault with `when` waits for its condition (checked every
/// simulated millisecond) and holds back the faults after it; those the run's end catches
/// waiting are recorded as unfired.
pub async fn inject<E: Engine>(
    injector: &mut FaultInjector<E>,
    faults: &[Fault],
    duration: Duration,
) {
    for (i, fault) in faults.iter().enumerate() {
        sleep_until(&injector.engine, fault.at).await;
        if let Some(when) = fault.when {
            loop {
                let now = injector.engine.elapsed();
                if injector.holds(when, now.as_millis() as u64) {
                    break;
                }
                if now >= duration {
                    FaultInjector::<E>::unfired(fault, when.name());
                    for later in &faults[i + 1..] {
                        FaultInjector::<E>::unfired(later, "waits for an unfired fault");
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        injector.apply(fault).await;
    }
}
