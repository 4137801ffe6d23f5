//! What a run needs of its simulator, so one runner drives madsim (the simulation build) and
//! turmoil (the native build): machines to build, and hands on them once they run.

use crate::scenario::selector::NodeKind;
use fleet_node::machine::Machine;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What a machine runs when it boots, and again at each restart.
pub(crate) type Boot = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// Builds a run's machines.
pub(crate) trait Machines {
    /// The address of `name`, the `index`th node of its kind.
    fn address(&mut self, name: &str, kind: NodeKind, index: u32) -> IpAddr;
    /// Where a node that serves on `address` binds.
    fn listen(&self, address: SocketAddr) -> SocketAddr;
    /// Adds machine `name` at `ip`, running `boot` (and every job for it) on `machine`.
    fn add(&mut self, name: &str, ip: IpAddr, machine: Machine, boot: Boot);
}

/// Acts on a running simulation: the hands of the faults and of the operator. Cheap to clone.
pub(crate) trait Engine: Clone + Send + Sync + 'static {
    /// Simulated time since the run began.
    fn elapsed(&self) -> Duration;
    /// Ends `node`'s process, and everything it held.
    fn kill(&self, node: &str);
    /// A crash followed by a clean start.
    fn restart(&self, node: &str);
    /// Cuts traffic from `from` to `to`.
    fn cut(&self, from: &str, to: &str);
    /// Undoes [`Engine::cut`].
    fn mend(&self, from: &str, to: &str);
    /// Every link's latency from now on.
    fn latency(&self, low: Duration, high: Duration);
    /// Every link's loss rate from now on.
    fn loss(&self, rate: f64);
    /// The latency of the links between `a` and `b` (both ways); turmoil only.
    fn link_latency(&self, a: &str, b: &str, low: Duration, high: Duration);
    /// Queues the messages between `a` and `b` until [`Engine::release`]; turmoil only.
    fn hold(&self, a: &str, b: &str);
    /// Delivers what [`Engine::hold`] queued, and lets traffic flow again.
    fn release(&self, a: &str, b: &str);
    /// Runs `job` on `node` (its clock; not while it is paused), so what it emits is that
    /// node's; `None` when the node is down, or goes down or stays paused past [`JOB_TIMEOUT`].
    fn run_on<T: Send + 'static>(
        &self,
        node: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static;
}

/// How long [`Engine::run_on`] waits for a node to run a job.
pub(crate) const JOB_TIMEOUT: Duration = Duration::from_secs(1);

/// Sleeps until `at` after the start of the run. Fires at once when `at` has come: a sleep of
/// zero still waits a tick, which would fire faults written for the same moment apart.
pub(crate) async fn sleep_until(engine: &impl Engine, at: Duration) {
    let now = engine.elapsed();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}
