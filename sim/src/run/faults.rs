//! Applies a scenario's faults to the simulated network and machines through the run's
//! [`Engine`], and records each one on the timeline (with the nodes a target that depends on
//! the run meant at that moment, and what `as` captured).

use crate::history::captures::Captures;
use crate::history::leaders::LeaderHistory;
use crate::history::links::{Link, LinkOp, Links};
use crate::history::online::OnlineHistory;
use crate::history::{Effect, FaultEvent, Fired, Timeline};
use crate::run::effects::Effects;
use crate::run::engine::{sleep_until, Engine};
use crate::run::nodes::{AgentSlot, Built, MasterSlot, Revoked, ADMIN_PORT};
use crate::run::record::Recorder;
use crate::scenario::faults::{AdminOp, Condition, Fault, FaultAction};
use crate::scenario::selector::{Scope, Selector, Topology};
use fleet::admin::Method;
use fleet_node::disk::Disk;
use fleet_node::machine::{Gate, Machine};
use fleet_node::sync::lock;
use fleet_node::MasterState;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

/// How long a master that shuts down has for its goodbyes before it goes down.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

pub(crate) struct FaultInjector<E> {
    pub engine: E,
    /// The disks that outlive their nodes, for `wipe`, `power_fail` and `corrupt`.
    pub disks: BTreeMap<String, Disk>,
    /// What each node runs on, and its address.
    pub machines: BTreeMap<String, (Machine, IpAddr)>,
    /// The masters' states, for credentials, admin operations and shutdown.
    pub masters: BTreeMap<String, MasterSlot>,
    /// The agents' controls, for `stop`.
    pub agents: BTreeMap<String, AgentSlot>,
    pub revoked: Revoked,
    /// Which links the faults so far cut, held or slowed, so a heal restores exactly those.
    pub links: Links,
    pub topology: Topology,
    /// The timeline so far (who leads now is read off it), where each fault is recorded.
    pub recorder: Recorder,
    pub captures: Captures,
    /// Draws `any(...)`: from the run's seed, apart from madsim's stream.
    pub rng: ChaCha8Rng,
    /// What each fault did so far.
    effects: Effects,
    /// The nodes a fault took down and none restarted.
    down: BTreeSet<String>,
    /// What the faults asked of a paused master, to run in order once it resumes.
    deferred: BTreeMap<String, Vec<Job>>,
}

/// Something to run on a master's node.
type Job = Box<dyn FnOnce() + Send>;

/// What `from` sent towards `to` so far, by `from`'s machine.
fn sent_across(machines: &BTreeMap<String, (Machine, IpAddr)>, (from, to): &Link) -> u64 {
    match (machines.get(from), machines.get(to)) {
        (Some((machine, _)), Some((_, ip))) => machine.sent_to(*ip),
        _ => 0,
    }
}

/// A selector's view of the moment a fault or command fires.
pub(crate) struct Now<'a> {
    pub leader: Option<String>,
    pub captures: &'a Captures,
    pub rng: &'a mut ChaCha8Rng,
}

/// Who leads now, by the timeline so far.
pub(crate) fn leader_now(timeline: &Mutex<Timeline>) -> Option<String> {
    let timeline = lock(timeline);
    let history = LeaderHistory::from_entries(&timeline.entries);
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
        recorder: Recorder,
        seed: u64,
    ) -> FaultInjector<E> {
        FaultInjector {
            engine,
            disks: built.disks,
            machines: built.machines,
            masters: built.masters,
            agents: built.agents,
            revoked: built.revoked,
            links: Links::default(),
            topology,
            recorder,
            captures: Captures::default(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ ANY_STREAM),
            effects: Effects::default(),
            down: BTreeSet::new(),
            deferred: BTreeMap::new(),
        }
    }

    /// The nodes `selector` names at this moment.
    fn resolve(&mut self, selector: &Selector) -> Vec<String> {
        if !selector.is_dynamic() {
            return selector.nodes().to_vec();
        }
        let mut now = Now {
            leader: leader_now(&self.recorder.timeline),
            captures: &self.captures,
            rng: &mut self.rng,
        };
        selector.resolve(&self.topology, &mut now)
    }

    /// Whether `condition` holds now, by the timeline so far.
    pub fn holds(&self, condition: Condition, now_ms: u64) -> bool {
        let timeline = lock(&self.recorder.timeline);
        match condition {
            Condition::LeaderExists => LeaderHistory::from_entries(&timeline.entries)
                .leader_at(now_ms)
                .is_some(),
            Condition::AllOnline => {
                let online = OnlineHistory::from_entries(&timeline.entries);
                (self.topology.agents().iter()).all(|agent| online.online_at(agent, now_ms))
            }
        }
    }

    /// Records that `fault` never fired: the run ended first.
    pub fn unfired(&self, fault: &Fault, why: &str) {
        self.recorder.record(FaultEvent::Unfired {
            fault: fault.action.to_string(),
            when: why.to_string(),
        });
    }

    /// Runs `f` on the running registry of each of `masters`, on that master's node, so what
    /// it reports is the master's (one that is down has no registry, and is skipped).
    async fn operate<F>(&mut self, masters: &[String], f: F)
    where
        F: Fn(&mut fleet_core::master::Registry) + Clone + Send + 'static,
    {
        self.on_masters(masters, move |state| state.operate(f.clone()))
            .await;
    }

    /// Runs `f` on each of `masters`, on its own node.
    async fn on_masters<F>(&mut self, masters: &[String], f: F)
    where
        F: Fn(&MasterState) + Clone + Send + 'static,
    {
        for master in masters {
            let state = self.masters.get(master).and_then(|slot| lock(slot).clone());
            let Some(state) = state else {
                continue;
            };
            let f = f.clone();
            let job: Job = Box::new(move || f(&state));
            if self.machine(master).is_paused() {
                // It runs when the master wakes, in order; the faults after it do not wait.
                self.deferred.entry(master.clone()).or_default().push(job);
            } else {
                // A node that goes down first never runs it.
                let _ = self.engine.run_on(master, job).await;
            }
        }
    }

    /// Revokes (`valid = false`) or restores the credentials of `agents` at every master, and
    /// in the list masters read when they boot.
    async fn set_credentials(&mut self, agents: Vec<String>, valid: bool) {
        {
            let mut revoked = lock(&self.revoked);
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

    /// Sends `op` about `agents` to `master`, the leader of the moment (with none, it goes
    /// nowhere, and the record says so), through its admin API: HTTP requests from the master's
    /// own machine to its admin port, as an operator's `curl` on that host, one after another.
    /// What the master does, its registry reports on the timeline.
    async fn admin(&mut self, op: &AdminOp, agents: Vec<String>, master: Option<String>) {
        let Some((master, &(_, ip))) = master.and_then(|m| self.machines.get_key_value(&m)) else {
            return;
        };
        let address = SocketAddr::new(ip, ADMIN_PORT);
        let requests: Vec<(Method, String, Option<Value>)> = match op {
            AdminOp::Status(_) => (agents.iter())
                .map(|a| {
                    (
                        Method::GET,
                        format!("/api/reconnection/status?agent={a}"),
                        None,
                    )
                })
                .collect(),
            AdminOp::Active => vec![(Method::GET, "/api/reconnection/active".into(), None)],
            AdminOp::Cleanup => vec![(Method::POST, "/api/reconnection/cleanup".into(), None)],
            AdminOp::Force(_) => (agents.iter())
                .map(|a| {
                    let body = Some(json!({ "agent": a }));
                    (Method::POST, "/api/reconnection/force".into(), body)
                })
                .collect(),
            AdminOp::Decommission(_) => (agents.iter())
                .map(|a| (Method::DELETE, format!("/api/nodes/{a}"), None))
                .collect(),
        };
        let master = master.clone();
        self.on_masters(&[master], move |_| {
            let requests = requests.clone();
            fleet_node::task::spawn(async move {
                for (method, path, body) in requests {
                    let _ = fleet::admin::request(address, method, &path, body).await;
                }
            });
        })
        .await;
    }

    /// Resolves `action`'s selectors now (and, for an admin request, who leads): whom it hits.
    fn fire(&mut self, action: &FaultAction) -> Fired {
        let resolved = (action.selectors().into_iter())
            .map(|selector| self.resolve(selector))
            .collect();
        let master = matches!(action, FaultAction::Admin(_))
            .then(|| leader_now(&self.recorder.timeline))
            .flatten();
        Fired {
            action: action.clone(),
            resolved,
            master,
            effect: Effect::default(),
        }
    }

    /// Fires `fault`: records whom it hits, does it, and records what `as` captured.
    pub async fn apply(&mut self, fault: &Fault) {
        let fired = self.fire(&fault.action);
        let line = self
            .recorder
            .record(FaultEvent::Fired(Box::new(fired.clone())));
        let ops = self.links.apply(&fired, &self.topology.nodes());
        self.carry_out(&ops);
        let machines = &self.machines;
        self.effects
            .follow(line, &ops, |link| sent_across(machines, link));
        self.act(line, &fired).await;
        self.capture(fault, &fired);
        if let FaultAction::Shutdown(_) = fired.action {
            // The goodbyes go out; then the masters go down, as a crash would take them.
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            fired.nodes().iter().for_each(|node| self.kill(node));
        }
    }

    /// Does what `fired` does to processes, disks, clocks, the network's latency and loss, and
    /// the masters, counting its effect on line `line` (its links are done already).
    async fn act(&mut self, line: usize, fired: &Fired) {
        let nodes = fired.nodes().to_vec();
        match &fired.action {
            FaultAction::Crash(_) => self.stop(line, &nodes, false),
            FaultAction::Restart(_) => nodes.iter().for_each(|node| {
                self.machine(node).resume();
                self.engine.restart(node);
                self.deferred.remove(node);
                self.down.remove(node);
                self.effects.add(line, "restarted", 1);
            }),
            FaultAction::PowerFail(_) => self.stop(line, &nodes, true),
            FaultAction::Wipe(_) => self.on_disks(line, "records_lost", &nodes, Disk::wipe),
            FaultAction::Corrupt(_) => {
                self.on_disks(line, "records_damaged", &nodes, Disk::corrupt)
            }
            FaultAction::Clock {
                offset_ms, rate, ..
            } => {
                let now = fleet_node::clock::now();
                for node in &nodes {
                    self.machine(node).adjust_clock(now, *offset_ms, *rate);
                }
                self.effects.add(line, "clocks", nodes.len() as u64);
            }
            FaultAction::Pause(_) => {
                let paused = nodes.iter().filter(|node| self.machine(node).pause());
                let paused = paused.count() as u64;
                self.effects.add(line, "paused", paused);
            }
            FaultAction::Resume(_) => self.resume(line, &nodes).await,
            FaultAction::Latency(low, high) => self.engine.latency(*low, *high),
            FaultAction::Loss(rate) => self.engine.loss(*rate),
            FaultAction::Revoke(_) => self.set_credentials(nodes, false).await,
            FaultAction::Restore(_) => self.set_credentials(nodes, true).await,
            FaultAction::Stop(_) => {
                let controls: Vec<_> = (nodes.iter())
                    .filter(|node| !self.down.contains(*node))
                    .filter_map(|node| lock(self.agents.get(node)?).clone())
                    .collect();
                self.effects.add(line, "stopped", controls.len() as u64);
                controls.iter().for_each(|control| control.stop());
            }
            FaultAction::Shutdown(_) => {
                let up = nodes.iter().filter(|node| !self.down.contains(*node));
                self.effects.add(line, "stopped", up.count() as u64);
                self.on_masters(&nodes, MasterState::shutdown).await
            }
            FaultAction::Admin(op) => self.admin(op, nodes, fired.master.clone()).await,
            // The links: carried out already.
            FaultAction::Partition { .. }
            | FaultAction::Heal(_)
            | FaultAction::Isolate(_)
            | FaultAction::LinkLatency { .. }
            | FaultAction::Hold(_)
            | FaultAction::Release(_)
            | FaultAction::Ring(_)
            | FaultAction::Stall { .. } => {}
        }
    }

    /// Lets `nodes` carry on, counting those that were paused as `resumed`, then runs in order
    /// what the faults asked of them meanwhile.
    async fn resume(&mut self, line: usize, nodes: &[String]) {
        let resumed = nodes.iter().filter(|node| self.machine(node).resume());
        let resumed = resumed.count() as u64;
        self.effects.add(line, "resumed", resumed);
        for node in nodes {
            for job in self.deferred.remove(node).unwrap_or_default() {
                let _ = self.engine.run_on(node, job).await;
            }
        }
    }

    /// Kills `nodes`, counting those that were up as `stopped`; a power failure first loses
    /// each one's unsynced writes, counted as `writes_lost`.
    fn stop(&mut self, line: usize, nodes: &[String], power_fail: bool) {
        let up = nodes.iter().filter(|node| !self.down.contains(*node));
        self.effects.add(line, "stopped", up.count() as u64);
        if power_fail {
            self.on_disks(line, "writes_lost", nodes, Disk::power_fail);
        }
        for node in nodes {
            self.kill(node);
        }
    }

    /// Does `f` to the disk of each of `nodes` that has one, counting what it returns as
    /// `what`. A node without a disk (an agent, or `persist = false`) has nothing to lose.
    fn on_disks(
        &mut self,
        line: usize,
        what: &'static str,
        nodes: &[String],
        f: impl Fn(&Disk) -> usize,
    ) {
        let hit: usize = (nodes.iter())
            .filter_map(|node| self.disks.get(node))
            .map(f)
            .sum();
        self.effects.add(line, what, hit as u64);
    }

    /// Writes what each fault did onto its line, once the run is over.
    pub fn settle_effects(&mut self) {
        let machines = &self.machines;
        let effects = std::mem::take(&mut self.effects);
        let mut timeline = lock(&self.recorder.timeline);
        effects.settle(&mut timeline, |link| sent_across(machines, link));
    }

    fn machine(&self, node: &str) -> &Machine {
        &self.machines[node].0
    }

    /// Ends `node`'s process; the next one starts unpaused, and what waited for the old one to
    /// wake is dropped with it.
    fn kill(&mut self, node: &str) {
        self.engine.kill(node);
        self.machine(node).resume();
        self.deferred.remove(node);
        self.down.insert(node.to_string());
    }

    /// `to` reads nothing `from` sends (`stalled`), or reads it again.
    fn stall(&self, (from, to): &(String, String), stalled: bool) {
        let gate = stalled.then_some(Gate::Stalled);
        self.machine(to).gate(self.machines[from].1, gate);
    }

    /// Hands the engine what a fault does to the links.
    fn carry_out(&self, ops: &[LinkOp]) {
        for op in ops {
            match op {
                LinkOp::Cut((a, b)) => self.engine.cut(a, b),
                LinkOp::Mend((a, b)) => self.engine.mend(a, b),
                LinkOp::Hold((a, b)) => self.engine.hold(a, b),
                LinkOp::Release((a, b)) => self.engine.release(a, b),
                LinkOp::Slow((a, b), low, high) => self.engine.link_latency(a, b, *low, *high),
                LinkOp::Stall(link) => self.stall(link, true),
                LinkOp::Unstall(link) => self.stall(link, false),
            }
        }
    }

    /// Records what `as` captured: each group's nodes (one group, but for a partition).
    fn capture(&mut self, fault: &Fault, fired: &Fired) {
        let now = self.engine.elapsed().as_millis() as u64;
        for (name, nodes) in fault.captures.iter().zip(fired.groups()) {
            self.recorder.record(FaultEvent::Captured {
                name: name.clone(),
                nodes: nodes.clone(),
            });
            self.captures.record(name, now, nodes);
        }
    }
}

/// Fires the faults in order. A fault with `when` waits for its condition (checked every
/// simulated millisecond) and holds back the faults after it; those the run's end catches
/// waiting are recorded as unfired.
pub(crate) async fn inject<E: Engine>(
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
                    injector.unfired(fault, when.name());
                    for later in &faults[i + 1..] {
                        injector.unfired(later, "waits for an unfired fault");
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        injector.apply(fault).await;
    }
}
