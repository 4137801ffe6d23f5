//! The second stage: runs a scenario inside madsim and returns its timeline. Everything random
//! in a run comes from the one seed.

pub mod store;

#[cfg(madsim)]
pub mod capture;
#[cfg(madsim)]
pub mod commands;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod nodes;

#[cfg(madsim)]
pub use runner::{run, run_watched, RunOutput};

#[cfg(madsim)]
mod runner {
    use super::capture::{CaptureLayer, Locate};
    use super::commands::Commander;
    use super::faults::{latency_range, FaultInjector};
    use crate::history::{Timeline, HARNESS};
    use crate::scenario::faults::Fault;
    use crate::scenario::Scenario;
    use madsim::runtime::Runtime;
    use madsim::task::NodeId;
    use madsim::time::TimeHandle;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

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

    /// [`run`], storing the simulated time of each event in `progress` as it happens, for a
    /// watcher outside the simulation (a progress bar): it touches nothing the run draws from.
    pub fn run_watched(
        scenario: &Scenario,
        seed: u64,
        progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> RunOutput {
        let mut config = madsim::Config::default();
        let network = &scenario.network;
        config.net.send_latency = latency_range(network.latency.0, network.latency.1);
        config.net.packet_loss_rate = network.loss;
        let runtime = Runtime::with_seed_and_config(seed, config);
        let built = super::nodes::build(&runtime, scenario, seed);

        let names: BTreeMap<NodeId, String> = built
            .ids
            .iter()
            .map(|(name, id)| (*id, name.clone()))
            .collect();
        let nodes: Vec<NodeId> = names.keys().copied().collect();
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
        let (layer, timeline) = CaptureLayer::new(locate.clone());
        // RUST_LOG asks for more than the timeline: the control plane's and madsim's own
        // logging on stderr, stamped with simulated time and node.
        let logging = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_timer(super::capture::SimTime(locate))
                .with_target(true)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let layer = if logging.is_some() {
            layer.shared()
        } else {
            layer
        };
        let subscriber = tracing_subscriber::registry().with(layer).with(logging);

        let commander = Commander::new(
            built.ids.clone(),
            built.masters.clone(),
            scenario.topology,
            timeline.clone(),
            seed,
        );
        let mut injector = FaultInjector::new(built, scenario.topology, timeline.clone(), seed);
        let (faults, duration) = (scenario.faults.clone(), scenario.duration);
        let operations = scenario.operations.clone();
        let sent = Arc::new(AtomicUsize::new(0));
        let counted = sent.clone();
        let wall_start = std::time::Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async move {
                if !operations.is_empty() {
                    tokio::spawn(async move { commander.run(&operations, counted).await });
                }
                inject(&mut injector, &faults, duration).await;
                sleep_until(duration).await;
            })
        });
        let wall = wall_start.elapsed();
        let sent = sent.load(Ordering::Relaxed);
        super::commands::record_unsent(&timeline, &scenario.operations, sent, duration);
        // Every task still pending here owns an `Arc` of its own `TaskInfo`, which holds the
        // task's waker: a cycle that only running or dropping the future breaks, and madsim's
        // `Runtime` has no `Drop` that does it. Dropping the runtime as is would leak every
        // pending task with all it holds (sockets, buffers, node state): about 1 MB a run for
        // a small cluster, 5-7 MB for a fleet. Killing the nodes wakes their tasks, and one
        // more `block_on` runs the queue, which drops killed tasks' futures. This happens
        // outside the capture, so the timeline is already complete.
        for node in nodes {
            runtime.handle().kill(node);
        }
        runtime.block_on(async {});
        drop(runtime);
        let timeline = std::mem::take(&mut *timeline.lock().unwrap_or_else(|p| p.into_inner()));
        RunOutput {
            seed,
            timeline,
            wall,
        }
    }

    /// Fires the faults in order. A fault with `when` waits for its condition (checked every
    /// simulated millisecond) and holds back the faults after it; those the run's end
    /// catches waiting are recorded as unfired.
    async fn inject(injector: &mut FaultInjector, faults: &[Fault], duration: Duration) {
        for (i, fault) in faults.iter().enumerate() {
            sleep_until(fault.at).await;
            if let Some(when) = fault.when {
                loop {
                    let now = TimeHandle::current().elapsed();
                    if injector.holds(when, now.as_millis() as u64) {
                        break;
                    }
                    if now >= duration {
                        FaultInjector::unfired(fault, when.name());
                        for later in &faults[i + 1..] {
                            FaultInjector::unfired(later, "waits for an unfired fault");
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            injector.apply(fault).await;
        }
    }

    /// Sleeps until `at` after the start of the run.
    /// Fires at once when `at` has come: a sleep of zero still waits a tick in madsim, which
    /// would fire faults written for the same moment a millisecond apart.
    async fn sleep_until(at: Duration) {
        let now = TimeHandle::current().elapsed();
        if at > now {
            tokio::time::sleep(at - now).await;
        }
    }
}
