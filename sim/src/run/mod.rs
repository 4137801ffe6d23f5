//! The second stage: runs a scenario on a simulator and returns its timeline. Everything random
//! in a run comes from the one seed. The simulation build runs madsim; the native build runs
//! turmoil, the second engine. Both build the same machines ([`nodes`]), fire the same faults
//! ([`faults`]) and send the same operations ([`commands`]) through an [`engine::Engine`].

pub mod budget;
pub mod commands;
mod effects;
pub mod engine;
pub mod faults;
pub mod nodes;
pub mod record;
pub mod store;

#[cfg(madsim)]
pub mod madsim;
#[cfg(not(madsim))]
pub mod turmoil;

#[cfg(madsim)]
pub use self::madsim::run_watched;
#[cfg(not(madsim))]
pub use self::turmoil::run_watched;

use crate::history::Timeline;
use crate::scenario::Scenario;
use commands::Commander;
use engine::{sleep_until, Engine};
use faults::FaultInjector;
use fleet_node::sync::lock;
use nodes::Built;
use record::{CaptureLayer, Locate, Recorder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// The engine this build runs scenarios on.
pub(crate) const ENGINE: &str = if cfg!(madsim) { "madsim" } else { "turmoil" };

/// The command that runs `sim` on this build's engine, for the reproduce lines.
pub(crate) const SIM: &str = if cfg!(madsim) {
    "cargo run --release -p sim --"
} else {
    "cargo native run --release -p sim --"
};

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub seed: u64,
    pub timeline: Timeline,
    /// Wall-clock time the simulation took.
    pub wall: Duration,
}

/// Runs `scenario` with `seed` and returns every captured event, in order.
pub fn run(scenario: &Scenario, seed: u64) -> RunOutput {
    run_watched(scenario, seed, None)
}

/// The run's `tracing` subscriber: the capture layer, and with `RUST_LOG` the control plane's
/// and the simulator's own logging on stderr, stamped with simulated time and node.
fn subscriber(
    locate: Locate,
    budget: budget::Budget,
    extra: impl Layer<tracing_subscriber::Registry> + Send + Sync,
) -> (impl tracing::Subscriber + Send + Sync, Recorder) {
    let (layer, recorder) = CaptureLayer::new(locate.clone(), budget);
    let logging = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_timer(record::SimTime(locate))
            .with_target(true)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    // Another layer that logs sees every event, so the capture picks its own.
    // Without it, the events come typed and never reach `tracing`.
    let (layer, typed) = if logging.is_some() {
        (layer.shared(), None)
    } else {
        let typed = layer.typed();
        (layer, Some(typed))
    };
    let subscriber = tracing_subscriber::registry()
        .with(extra)
        .with(layer)
        .with(typed)
        .with(logging);
    (subscriber, recorder)
}

/// The harness's part of a run, inside the simulation: sends the operations, fires the faults
/// and waits out the run. Returns how many operations were sent.
async fn harness<E: Engine>(
    engine: E,
    built: Built,
    scenario: Scenario,
    recorder: Recorder,
    seed: u64,
) -> Arc<AtomicUsize> {
    let timeline = recorder.timeline.clone();
    let topology = scenario.topology;
    let commander = Commander::new(
        engine.clone(),
        built.masters.clone(),
        topology,
        timeline.clone(),
        seed,
    );
    let mut injector = FaultInjector::new(engine.clone(), built, topology, recorder, seed);
    let operations = scenario.operations;
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    if !operations.is_empty() {
        fleet_node::task::spawn(async move { commander.run(&operations, counted).await });
    }
    if let Some(until) = scenario.buggify.filter(|until| *until < scenario.duration) {
        let machines: Vec<_> = (injector.machines.values())
            .map(|(m, _)| m.clone())
            .collect();
        let engine = engine.clone();
        fleet_node::task::spawn(async move {
            sleep_until(&engine, until).await;
            machines
                .iter()
                .for_each(fleet_node::machine::Machine::unbuggify);
        });
    }
    faults::inject(&mut injector, &scenario.faults, scenario.duration).await;
    sleep_until(&engine, scenario.duration).await;
    injector.settle_effects();
    // Outside any machine the clock reads true time: the run began this long ago.
    let start = fleet_node::clock::now() - engine.elapsed();
    let machines = (injector.machines.iter()).map(|(name, (machine, _))| (name, machine));
    let wire_bytes = machines
        .clone()
        .map(|(_, machine)| machine.bytes_sent())
        .sum();
    let mut recorded = lock(&timeline);
    recorded.wire_bytes = wire_bytes;
    budget::record_overruns(&mut recorded, machines, start);
    drop(recorded);
    sent
}

/// The timeline once the run is over, with the operations it never sent.
fn finish(timeline: &Mutex<Timeline>, scenario: &Scenario, sent: &AtomicUsize) -> Timeline {
    let sent = sent.load(Ordering::Relaxed);
    commands::record_unsent(timeline, &scenario.operations, sent, scenario.duration);
    std::mem::take(&mut *lock(timeline))
}
