//! The native build's engine: turmoil. Each node is a turmoil host with its own paused tokio
//! runtime, and the harness is one more (a client named `sim`). The simulation advances one
//! tick at a time from here; what only the `Sim` can do (crash, restart, cut, latency, loss,
//! hold, release) the harness queues, and each is done after the step that asked for it.

use super::engine::{Boot, Engine, Machines, JOB_TIMEOUT};
use super::record::Locate;
use super::RunOutput;
use crate::history::HARNESS;
use crate::scenario::selector::NodeKind;
use crate::scenario::Scenario;
use fleet_node::machine::Machine;
use fleet_node::sync::lock;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A call to run on a node.
type Job = Box<dyn FnOnce() + Send>;

/// One host as the harness reaches it.
struct Host {
    /// Where its current incarnation takes jobs; empty while it is down.
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Crashed: its software does not run. turmoil's own crash stops delivering to the host
    /// at all, so a connect to it hangs as to a machine that lost power; a crash in a scenario
    /// is the process's, and the machine answers for it (refused at once), as in madsim. So a
    /// crashed host stays up, running nothing.
    down: AtomicBool,
    /// What its software runs on: its clock, and whether it is paused.
    machine: Machine,
}

/// Connections a listener holds before they are accepted.
const LISTEN_BACKLOG: usize = 1 << 16;

/// How often a link that `loss` broke is mended: the chance per message sent on it.
const REPAIR_RATE: f64 = 0.5;

/// What the harness asked of the `Sim`, done after the step.
#[derive(Debug)]
enum Effect {
    Kill(String),
    Restart(String),
    Cut(String, String),
    Mend(String, String),
    Latency(Duration, Duration),
    LinkLatency(String, String, Duration, Duration),
    Loss(f64),
    Hold(String, String),
    Release(String, String),
}

/// Builds hosts in a turmoil `Sim`, named as the scenario names them.
struct Hosts<'s, 'a> {
    sim: &'s mut turmoil::Sim<'a>,
    hosts: BTreeMap<String, Arc<Host>>,
}

impl Machines for Hosts<'_, '_> {
    fn address(&mut self, name: &str, _: NodeKind, _: u32) -> IpAddr {
        self.sim.lookup(name)
    }

    /// turmoil binds only the unspecified address (or loopback).
    fn listen(&self, address: SocketAddr) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), address.port())
    }

    fn add(&mut self, name: &str, _: IpAddr, machine: Machine, boot: Boot) {
        let host = Arc::new(Host {
            jobs: Mutex::default(),
            down: AtomicBool::default(),
            machine,
        });
        self.hosts.insert(name.to_string(), host.clone());
        self.sim.host(name, move || {
            let (boot, host) = (boot.clone(), host.clone());
            let machine = host.machine.clone();
            machine.run(async move {
                let down = host.down.load(Ordering::Relaxed);
                let jobs = (!down).then(|| {
                    let (sender, mut queue) = mpsc::unbounded_channel::<Job>();
                    fleet_node::task::spawn(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                    sender
                });
                *lock(&host.jobs) = jobs;
                if !down {
                    boot().await;
                }
                // A host whose software ends stops being run, tasks and all; a madsim node
                // runs on. Stay up, as a process whose main returned but whose tasks live.
                std::future::pending::<()>().await;
                Ok(())
            })
        });
    }
}

/// The running simulation, as the harness inside it sees it.
#[derive(Clone)]
pub(crate) struct Turmoil {
    effects: Arc<Mutex<Vec<Effect>>>,
    hosts: Arc<BTreeMap<String, Arc<Host>>>,
    /// The simulated time of the last step, for calls made outside a host.
    now_ms: Arc<AtomicU64>,
}

impl Turmoil {
    fn ask(&self, effect: Effect) {
        (lock(&self.effects)).push(effect);
    }
}

impl Engine for Turmoil {
    fn elapsed(&self) -> Duration {
        turmoil::sim_elapsed()
            .unwrap_or_else(|| Duration::from_millis(self.now_ms.load(Ordering::Relaxed)))
    }

    fn kill(&self, node: &str) {
        self.ask(Effect::Kill(node.to_string()));
    }

    fn restart(&self, node: &str) {
        self.ask(Effect::Restart(node.to_string()));
    }

    fn cut(&self, from: &str, to: &str) {
        self.ask(Effect::Cut(from.to_string(), to.to_string()));
    }

    fn mend(&self, from: &str, to: &str) {
        self.ask(Effect::Mend(from.to_string(), to.to_string()));
    }

    fn latency(&self, low: Duration, high: Duration) {
        self.ask(Effect::Latency(low, high));
    }

    fn loss(&self, rate: f64) {
        self.ask(Effect::Loss(rate));
    }

    fn link_latency(&self, a: &str, b: &str, low: Duration, high: Duration) {
        self.ask(Effect::LinkLatency(a.to_string(), b.to_string(), low, high));
    }

    fn hold(&self, a: &str, b: &str) {
        self.ask(Effect::Hold(a.to_string(), b.to_string()));
    }

    fn release(&self, a: &str, b: &str) {
        self.ask(Effect::Release(a.to_string(), b.to_string()));
    }

    fn run_on<T: Send + 'static>(
        &self,
        node: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let host = self.hosts.get(node).cloned();
        async move {
            let (done, result) = oneshot::channel();
            let job: Job = Box::new(move || {
                let _ = done.send(job());
            });
            let sender = lock(&host?.jobs).clone()?;
            sender.send(job).ok()?;
            tokio::time::timeout(JOB_TIMEOUT, result).await.ok()?.ok()
        }
    }
}

/// Does what the harness asked, in order.
fn apply(sim: &mut turmoil::Sim<'_>, effects: Vec<Effect>, hosts: &BTreeMap<String, Arc<Host>>) {
    let nodes: Vec<&String> = hosts.keys().collect();
    for effect in effects {
        let down = matches!(effect, Effect::Kill(_));
        match effect {
            // Both restart the host's software, which runs nothing while it is down.
            Effect::Kill(node) | Effect::Restart(node) => {
                hosts[&node].down.store(down, Ordering::Relaxed);
                sim.bounce(node.as_str());
            }
            Effect::Cut(from, to) => sim.partition_oneway(from.as_str(), to.as_str()),
            Effect::Mend(from, to) => sim.repair_oneway(from.as_str(), to.as_str()),
            Effect::Latency(low, high) => {
                for (i, a) in nodes.iter().enumerate() {
                    for b in &nodes[i + 1..] {
                        set_link_latency(sim, a, b, low, high);
                    }
                }
            }
            Effect::LinkLatency(a, b, low, high) => set_link_latency(sim, &a, &b, low, high),
            Effect::Loss(rate) => sim.set_fail_rate(rate),
            Effect::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
            Effect::Release(a, b) => sim.release(a.as_str(), b.as_str()),
        }
    }
}

/// A link's latency: `low` to `high`, drawn as turmoil draws (an exponential curve, capped).
fn set_link_latency(sim: &turmoil::Sim<'_>, a: &str, b: &str, low: Duration, high: Duration) {
    sim.set_link_latency(a, b, low);
    sim.set_link_max_message_latency(a, b, high.max(low));
}

/// The host whose tick is running, by turmoil's `node` span around each one.
#[derive(Clone, Default)]
struct CurrentHost(Arc<Mutex<Option<String>>>);

/// A `node` span's host name, kept on the span.
struct HostName(String);

impl CurrentHost {
    fn get(&self) -> Option<String> {
        lock(&self.0).clone()
    }

    fn set(&self, host: Option<String>) {
        *lock(&self.0) = host;
    }
}

impl<S: tracing::Subscriber + for<'l> LookupSpan<'l>> Layer<S> for CurrentHost {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !super::record::is_host_span(attrs.metadata()) {
            return;
        }
        let mut name = NameField(None);
        attrs.record(&mut name);
        if let (Some(name), Some(span)) = (name.0, ctx.span(id)) {
            span.extensions_mut().insert(HostName(name));
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(HostName(name)) = span.extensions().get::<HostName>() {
                self.set(Some(name.clone()));
            }
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if ctx
            .span(id)
            .is_some_and(|span| span.extensions().get::<HostName>().is_some())
        {
            self.set(None);
        }
    }
}

struct NameField(Option<String>);

impl tracing::field::Visit for NameField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "name" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "name" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// The simulation a scenario asks for, seeded.
fn builder(scenario: &Scenario, seed: u64) -> turmoil::Builder {
    let network = &scenario.network;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .tick_duration(network.tick)
        .min_message_latency(network.latency.0)
        .max_message_latency(network.latency.1.max(network.latency.0))
        // The harness ends the run; turmoil's own limit only has to stay out of the way.
        .simulation_duration(scenario.duration + Duration::from_secs(3600))
        // turmoil panics when a listener's backlog overflows; an OS would drop the SYN. A
        // storm of a fleet's reconnects in one tick must fit.
        .tcp_capacity(LISTEN_BACKLOG)
        .fail_rate(network.loss)
        .repair_rate(REPAIR_RATE);
    builder
}

/// [`super::run`] on turmoil, storing the simulated time in `progress` as it goes.
pub fn run_watched(scenario: &Scenario, seed: u64, progress: Option<Arc<AtomicU64>>) -> RunOutput {
    let mut sim = builder(scenario, seed).build();
    let mut hosts = Hosts {
        sim: &mut sim,
        hosts: BTreeMap::new(),
    };
    let built = super::nodes::build(&mut hosts, scenario, seed);
    let hosts = Arc::new(hosts.hosts);

    let now_ms = Arc::new(AtomicU64::new(0));
    let host = CurrentHost::default();
    let locate: Locate = {
        let (now_ms, host) = (now_ms.clone(), host.clone());
        Arc::new(move || {
            let t_ms = turmoil::sim_elapsed()
                .map_or_else(|| now_ms.load(Ordering::Relaxed), |t| t.as_millis() as u64);
            if let Some(progress) = &progress {
                progress.store(t_ms, Ordering::Relaxed);
            }
            (t_ms, host.get().unwrap_or_else(|| HARNESS.to_string()))
        })
    };
    let (subscriber, recorder) =
        super::subscriber(locate, super::budget::Budget::of(scenario), host);
    let engine = Turmoil {
        effects: Arc::default(),
        hosts: hosts.clone(),
        now_ms: now_ms.clone(),
    };
    let effects = engine.effects.clone();
    let sent = Arc::new(Mutex::new(None));
    let wall_start = std::time::Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        let (scenario, recorder, sent) = (scenario.clone(), recorder.clone(), sent.clone());
        sim.client(HARNESS, async move {
            let count = super::harness(engine, built, scenario, recorder, seed).await;
            *lock(&sent) = Some(count);
            Ok(())
        });
        loop {
            let finished = match sim.step() {
                Ok(finished) => finished,
                Err(error) => panic!("turmoil stopped the run: {error}"),
            };
            now_ms.store(sim.elapsed().as_millis() as u64, Ordering::Relaxed);
            let asked = std::mem::take(&mut *lock(&effects));
            apply(&mut sim, asked, &hosts);
            if finished {
                break;
            }
        }
    });
    let wall = wall_start.elapsed();
    drop(sim);
    let sent = lock(&sent).take();
    let sent = sent.unwrap_or_default();
    RunOutput {
        seed,
        timeline: super::finish(&recorder.timeline, scenario, &sent),
        wall,
    }
}
