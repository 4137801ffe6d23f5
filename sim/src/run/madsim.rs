//! The simulation build's engine: madsim. Nodes are madsim nodes, links are clogged and
//! unclogged, and a job runs as a task spawned on its node.

use super::engine::{Boot, Engine, Machines, JOB_TIMEOUT};
use super::nodes::node_ip;
use super::record::Locate;
use super::RunOutput;
use crate::history::HARNESS;
use crate::scenario::selector::NodeKind;
use crate::scenario::Scenario;
use fleet_node::machine::{Gate, Machine};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// madsim draws latency from a half-open range; a fixed latency is a range 1µs wide.
pub(crate) fn latency_range(low: Duration, high: Duration) -> Range<Duration> {
    low..high.max(low + Duration::from_micros(1))
}

/// Builds nodes in a madsim runtime, on the address plan.
struct Nodes<'a> {
    runtime: &'a Runtime,
    ids: BTreeMap<String, NodeId>,
    machines: BTreeMap<String, (Machine, IpAddr)>,
}

impl Machines for Nodes<'_> {
    fn address(&mut self, _: &str, kind: NodeKind, index: u32) -> IpAddr {
        node_ip(kind, index)
    }

    fn listen(&self, address: SocketAddr) -> SocketAddr {
        address
    }

    fn add(&mut self, name: &str, ip: IpAddr, machine: Machine, boot: Boot) {
        let node = self.runtime.create_node().name(name).ip(ip);
        let on = machine.clone();
        let id = node.init(move || on.run(boot())).build().id();
        self.ids.insert(name.to_string(), id);
        self.machines.insert(name.to_string(), (machine, ip));
    }
}

/// The running simulation, by node name.
#[derive(Clone)]
pub(crate) struct Madsim {
    ids: Arc<BTreeMap<String, NodeId>>,
    machines: Arc<BTreeMap<String, (Machine, IpAddr)>>,
}

impl Madsim {
    fn id(&self, node: &str) -> NodeId {
        self.ids[node]
    }

    /// Holds (or releases) the link between `a` and `b` at both ends' gates: madsim cannot
    /// hold a link itself (a clogged one refuses connects and drops what is sent).
    fn gate(&self, a: &str, b: &str, gate: Option<Gate>) {
        let (machine_a, ip_a) = &self.machines[a];
        let (machine_b, ip_b) = &self.machines[b];
        machine_a.gate(*ip_b, gate);
        machine_b.gate(*ip_a, gate);
    }

    fn unsupported(&self, what: &str) -> ! {
        unreachable!("{what} is turmoil's alone, and refused when a scenario is checked")
    }
}

impl Engine for Madsim {
    fn elapsed(&self) -> Duration {
        TimeHandle::current().elapsed()
    }

    fn kill(&self, node: &str) {
        Handle::current().kill(self.id(node));
    }

    fn restart(&self, node: &str) {
        // madsim's restart re-runs init without releasing the node's sockets; a kill first
        // makes a restart a crash followed by a clean start.
        Handle::current().kill(self.id(node));
        Handle::current().restart(self.id(node));
    }

    fn cut(&self, from: &str, to: &str) {
        NetSim::current().clog_link(self.id(from), self.id(to));
    }

    fn mend(&self, from: &str, to: &str) {
        NetSim::current().unclog_link(self.id(from), self.id(to));
    }

    fn latency(&self, low: Duration, high: Duration) {
        let range = latency_range(low, high);
        NetSim::current().update_config(|config| config.send_latency = range);
    }

    fn loss(&self, rate: f64) {
        NetSim::current().update_config(|config| config.packet_loss_rate = rate);
    }

    fn link_latency(&self, _: &str, _: &str, _: Duration, _: Duration) {
        self.unsupported("one link's latency")
    }

    fn hold(&self, a: &str, b: &str) {
        self.gate(a, b, Some(Gate::Held));
    }

    fn release(&self, a: &str, b: &str) {
        self.gate(a, b, None);
    }

    fn run_on<T: Send + 'static>(
        &self,
        node: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let machine = self.machines[node].0.clone();
        let node = Handle::current().get_node(self.id(node));
        async move {
            let task = node?.spawn(machine.run(async move { job() }));
            tokio::time::timeout(JOB_TIMEOUT, task).await.ok()?.ok()
        }
    }
}

/// [`super::run`], storing the simulated time of each event in `progress` as it happens, for
/// a watcher outside the simulation (a progress bar): it touches nothing the run draws from.
pub fn run_watched(scenario: &Scenario, seed: u64, progress: Option<Arc<AtomicU64>>) -> RunOutput {
    let mut config = madsim::Config::default();
    let network = &scenario.network;
    config.net.send_latency = latency_range(network.latency.0, network.latency.1);
    config.net.packet_loss_rate = network.loss;
    let runtime = Runtime::with_seed_and_config(seed, config);
    let mut nodes = Nodes {
        runtime: &runtime,
        ids: BTreeMap::new(),
        machines: BTreeMap::new(),
    };
    let built = super::nodes::build(&mut nodes, scenario, seed);
    let (ids, machines) = (nodes.ids, nodes.machines);
    let names: BTreeMap<NodeId, String> =
        ids.iter().map(|(name, id)| (*id, name.clone())).collect();
    let locate: Locate = Arc::new(move || {
        let t_ms = TimeHandle::current().elapsed().as_millis() as u64;
        if let Some(progress) = &progress {
            progress.store(t_ms, Ordering::Relaxed);
        }
        let node = names
            .get(&madsim::plugin::node())
            .map_or_else(|| HARNESS.to_string(), String::clone);
        (t_ms, node)
    });
    let (subscriber, recorder) = super::subscriber(
        locate,
        super::budget::Budget::of(scenario),
        tracing_subscriber::layer::Identity::new(),
    );
    let engine = Madsim {
        ids: Arc::new(ids.clone()),
        machines: Arc::new(machines),
    };
    let wall_start = std::time::Instant::now();
    let (scenario_run, captured) = (scenario.clone(), recorder.clone());
    let sent = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(super::harness(engine, built, scenario_run, captured, seed))
    });
    let wall = wall_start.elapsed();
    // Every task still pending here owns an `Arc` of its own `TaskInfo`, which holds the
    // task's waker: a cycle that only running or dropping the future breaks, and madsim's
    // `Runtime` has no `Drop` that does it. Dropping the runtime as is would leak every
    // pending task with all it holds (sockets, buffers, node state): about 1 MB a run for a
    // small cluster, 5-7 MB for a fleet. Killing the nodes wakes their tasks, and one more
    // `block_on` runs the queue, which drops killed tasks' futures. This happens outside the
    // capture, so the timeline is already complete.
    for id in ids.values() {
        runtime.handle().kill(*id);
    }
    runtime.block_on(async {});
    drop(runtime);
    RunOutput {
        seed,
        timeline: super::finish(&recorder.timeline, scenario, &sent),
        wall,
    }
}
