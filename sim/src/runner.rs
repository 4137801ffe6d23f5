//! Runs a scenario inside madsim and returns its timeline.
//!
//! Address plan: `master-i` is 10.0.0.i, serving agents on port 7000 and its cluster peers on
//! 7001; `agent-i` is 10.1.(i / 256).(i % 256); `store-1` is 10.2.0.1, port 6379. Every node's
//! RNG is seeded from the scenario seed, the node's name and its incarnation (1 at boot, +1 per
//! restart). Agents boot at 100ms, once the masters listen. Everything random in a run comes
//! from the one seed.

use crate::expect::LeaderHistory;
use crate::scenario::{ClusterSpec, FaultAction, Scenario};
use crate::selector::{Role, Selector, Topology, STORE};
use crate::trace::{CaptureLayer, Event, Locate};
use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::cluster::store::Store;
use fleet_core::master::Leadership;
use fleet_core::master::MasterConfig;
use fleet_node::cluster::{ClusterConfig, ClusterMode};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

pub const MASTER_PORT: u16 = 7000;
pub const CLUSTER_PORT: u16 = 7001;
pub const STORE_PORT: u16 = 6379;
/// Agents start this long after the masters, so the first attempt finds a listener.
pub const AGENT_BOOT_DELAY: Duration = Duration::from_millis(100);

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub seed: u64,
    pub events: Vec<Event>,
    /// Wall-clock time the simulation took.
    pub wall: Duration,
}

fn node_ip(role: Role, index: u32) -> IpAddr {
    match role {
        Role::Master => IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8)),
        Role::Agent => IpAddr::V4(Ipv4Addr::new(10, 1, (index >> 8) as u8, index as u8)),
        Role::Store => IpAddr::V4(Ipv4Addr::new(10, 2, 0, index as u8)),
    }
}

/// A stable 64-bit seed for one node incarnation (FNV-1a; std's hashers promise no stability).
pub fn node_seed(seed: u64, node: &str, incarnation: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(node.bytes())
        .chain(incarnation.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn latency_range(low: Duration, high: Duration) -> std::ops::Range<Duration> {
    // madsim draws from a half-open range; a fixed latency is a range one microsecond wide.
    low..high.max(low + Duration::from_micros(1))
}

/// Runs `scenario` with `seed` and returns every captured event, in order.
pub fn run(scenario: &Scenario, seed: u64) -> RunOutput {
    let mut config = madsim::Config::default();
    config.net.send_latency = latency_range(scenario.network.latency.0, scenario.network.latency.1);
    config.net.packet_loss_rate = scenario.network.loss;
    let runtime = Runtime::with_seed_and_config(seed, config);

    let mut ids: BTreeMap<String, NodeId> = BTreeMap::new();
    let master_addresses: Vec<SocketAddr> = (1..=scenario.topology.masters)
        .map(|i| SocketAddr::new(node_ip(Role::Master, i), MASTER_PORT))
        .collect();
    let cluster_members: BTreeMap<String, SocketAddr> = (1..=scenario.topology.masters)
        .map(|i| {
            let address = SocketAddr::new(node_ip(Role::Master, i), CLUSTER_PORT);
            (Topology::node_name(Role::Master, i), address)
        })
        .collect();
    let store_address = SocketAddr::new(node_ip(Role::Store, 1), STORE_PORT);
    let cluster_mode = match &scenario.cluster {
        ClusterSpec::Single => ClusterMode::Single,
        ClusterSpec::Raft(config) => ClusterMode::Raft(config.clone()),
        ClusterSpec::Lease(timing) => ClusterMode::Lease {
            config: LeaseConfig::new(
                timing.lease_period,
                timing.renew_interval,
                timing.sync_interval,
            ),
            store: store_address,
        },
    };
    if scenario.topology.store {
        // The keyspace outlives the node, as Redis's append-only file would: a crash loses
        // no grant and no token.
        let keyspace = Arc::new(Mutex::new(Store::default()));
        let node = runtime
            .create_node()
            .name(STORE)
            .ip(store_address.ip())
            .init(move || {
                let keyspace = keyspace.clone();
                async move {
                    match tokio::net::TcpListener::bind(store_address).await {
                        Ok(listener) => {
                            let _ = fleet_node::store::run_store(listener, keyspace).await;
                        }
                        Err(error) => tracing::info!(error = %error, "bind_failed"),
                    }
                }
            })
            .build();
        ids.insert(STORE.to_string(), node.id());
    }
    for index in 1..=scenario.topology.masters {
        let name = Topology::node_name(Role::Master, index);
        let config = MasterConfig {
            heartbeat_interval: scenario.heartbeat.interval,
            max_miss: scenario.heartbeat.max_miss,
        };
        let address = master_addresses[index as usize - 1];
        let cluster = ClusterConfig {
            me: name.clone(),
            members: cluster_members.clone(),
            mode: cluster_mode.clone(),
        };
        let incarnations = Arc::new(AtomicU32::new(0));
        let node = runtime
            .create_node()
            .name(&name)
            .ip(address.ip())
            .init(move || {
                let incarnation = incarnations.fetch_add(1, Ordering::Relaxed) + 1;
                let rng = rand_chacha::ChaCha8Rng::seed_from_u64(node_seed(
                    seed,
                    &cluster.me,
                    incarnation,
                ));
                let config = config.clone();
                let cluster = cluster.clone();
                async move {
                    let state = fleet_node::MasterState::new(config);
                    if !matches!(cluster.mode, ClusterMode::Single) {
                        // Until elected, a cluster member serves no agents.
                        state.set_leadership(Leadership::Follower { leader: None });
                    }
                    let cluster_address = cluster.members[&cluster.me];
                    let listeners = (
                        tokio::net::TcpListener::bind(address).await,
                        tokio::net::TcpListener::bind(cluster_address).await,
                    );
                    let (agents, peers) = match listeners {
                        (Ok(agents), Ok(peers)) => (agents, peers),
                        (Err(error), _) | (_, Err(error)) => {
                            tracing::info!(error = %error, "bind_failed");
                            return;
                        }
                    };
                    // The agent server's tasks end with this node, like everything else here.
                    tokio::spawn(fleet_node::run_master(agents, state.clone()));
                    let handle = fleet_node::cluster::ClusterHandle::new(&cluster.me);
                    fleet_node::cluster::run_cluster(cluster, peers, rng, state, handle).await;
                }
            })
            .build();
        ids.insert(name, node.id());
    }
    let master_names: Vec<String> = (1..=scenario.topology.masters)
        .map(|i| Topology::node_name(Role::Master, i))
        .collect();
    for index in 1..=scenario.topology.agents {
        let name = Topology::node_name(Role::Agent, index);
        let incarnations = Arc::new(AtomicU32::new(0));
        let (heartbeat, backoff) = (scenario.heartbeat.clone(), scenario.backoff.clone());
        let masters = master_names.clone();
        let addresses = master_addresses.clone();
        let node_name = name.clone();
        let node = runtime
            .create_node()
            .name(&name)
            .ip(node_ip(Role::Agent, index))
            .init(move || {
                let incarnation = incarnations.fetch_add(1, Ordering::Relaxed) + 1;
                let rng = rand_chacha::ChaCha8Rng::seed_from_u64(node_seed(
                    seed,
                    &node_name,
                    incarnation,
                ));
                let (heartbeat, backoff) = (heartbeat.clone(), backoff.clone());
                let (masters, addresses) = (masters.clone(), addresses.clone());
                let node_name = node_name.clone();
                async move {
                    if incarnation == 1 {
                        tokio::time::sleep(AGENT_BOOT_DELAY).await;
                    }
                    // Simulated processes get small, distinct pids: 100 + incarnation.
                    let start_time_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_millis() as u64);
                    let config = AgentConfig {
                        masters,
                        heartbeat_interval: heartbeat.interval,
                        heartbeat_timeout: heartbeat.timeout,
                        backoff,
                        register: fleet_node::registration(
                            &node_name,
                            "sim",
                            100 + incarnation,
                            start_time_ms,
                        ),
                    };
                    let connector = Connector::new(config, rng, Instant::now());
                    fleet_node::run_agent(connector, addresses).await;
                }
            })
            .build();
        ids.insert(name, node.id());
    }

    let names: Arc<BTreeMap<NodeId, String>> =
        Arc::new(ids.iter().map(|(name, id)| (*id, name.clone())).collect());
    let locate: Locate = Arc::new(move || {
        let t_ms = TimeHandle::current().elapsed().as_millis() as u64;
        let node = names
            .get(&madsim::plugin::node())
            .map_or_else(|| "sim".to_string(), String::clone);
        (t_ms, node)
    });
    let (layer, events) = CaptureLayer::new(locate);
    let subscriber = tracing_subscriber::registry().with(layer);

    let faults = scenario.faults.clone();
    let duration = scenario.duration;
    let topology = scenario.topology;
    let timeline = events.clone();
    let wall_start = std::time::Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async move {
            let mut faults_applied = FaultInjector {
                ids,
                clogged: BTreeSet::new(),
                topology,
                timeline,
            };
            for fault in faults {
                sleep_until(fault.at).await;
                faults_applied.apply(&fault.action);
            }
            sleep_until(duration).await;
        })
    });
    let wall = wall_start.elapsed();
    drop(runtime);
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|p| p.into_inner()));
    RunOutput { seed, events, wall }
}

/// Sleeps until `at` after the start of the run.
async fn sleep_until(at: Duration) {
    let now = TimeHandle::current().elapsed();
    tokio::time::sleep(at.saturating_sub(now)).await;
}

struct FaultInjector {
    ids: BTreeMap<String, NodeId>,
    /// Links cut by partitions, as (from, to), so heal can restore exactly those.
    clogged: BTreeSet<(NodeId, NodeId)>,
    topology: Topology,
    /// The events captured so far: who leads now is read off them.
    timeline: Arc<Mutex<Vec<Event>>>,
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
        let events = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        let history = LeaderHistory::from_events(&events, &self.topology);
        let leader = history.leader_at(u64::MAX).map(|span| span.node.clone());
        selector.resolve(leader.as_deref(), &self.topology)
    }

    fn apply(&mut self, action: &FaultAction) {
        let handle = Handle::current();
        let net = NetSim::current();
        match action {
            FaultAction::Crash(target) => {
                for node in self.announce("crash", target) {
                    handle.kill(self.id(&node));
                }
            }
            FaultAction::Restart(target) => {
                for node in self.announce("restart", target) {
                    // madsim's restart re-runs init without releasing the node's sockets; a
                    // kill first makes a restart a crash followed by a clean start.
                    handle.kill(self.id(&node));
                    handle.restart(self.id(&node));
                }
            }
            FaultAction::Partition { groups, oneway } => {
                let shown: Vec<String> = groups
                    .iter()
                    .map(|group| {
                        group
                            .iter()
                            .map(|selector| self.show(selector))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                if *oneway {
                    tracing::info!(groups = %shown.join(" | "), oneway = true, "partition");
                } else {
                    tracing::info!(groups = %shown.join(" | "), "partition");
                }
                let members: Vec<Vec<NodeId>> = groups
                    .iter()
                    .map(|group| {
                        group
                            .iter()
                            .flat_map(|selector| self.resolve(selector))
                            .map(|node| self.id(&node))
                            .collect()
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
                for &(a, b) in &self.clogged {
                    net.clog_link(a, b);
                }
            }
            FaultAction::Heal(target) => {
                let healed: Vec<(NodeId, NodeId)> = match target {
                    None => {
                        tracing::info!(target = "all", "heal");
                        std::mem::take(&mut self.clogged).into_iter().collect()
                    }
                    Some(selector) => {
                        tracing::info!(target = %selector, "heal");
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
                for (a, b) in healed {
                    net.unclog_link(a, b);
                }
            }
            FaultAction::Latency(low, high) => {
                tracing::info!(
                    range = %format!("{}..{}", fleet_core::fmt_duration(*low), fleet_core::fmt_duration(*high)),
                    "latency"
                );
                let range = latency_range(*low, *high);
                net.update_config(|config| config.send_latency = range);
            }
            FaultAction::Loss(rate) => {
                tracing::info!(rate = *rate, "loss");
                let rate = *rate;
                net.update_config(|config| config.packet_loss_rate = rate);
            }
        }
    }
}

impl FaultInjector {
    /// A selector as the timeline shows it: `leader(master-2)` for the dynamic ones.
    fn show(&self, selector: &Selector) -> String {
        if selector.is_dynamic() {
            format!("{selector}({})", self.resolve(selector).join(","))
        } else {
            selector.to_string()
        }
    }

    /// Emits the fault's event and returns the nodes it hits. A `leader` or `followers`
    /// target also records whom it meant then, as `nodes`.
    fn announce(&self, kind: &str, target: &Selector) -> Vec<String> {
        let nodes = self.resolve(target);
        if target.is_dynamic() {
            let resolved = nodes.join(",");
            match kind {
                "crash" => tracing::info!(target = %target, nodes = %resolved, "crash"),
                _ => tracing::info!(target = %target, nodes = %resolved, "restart"),
            }
        } else {
            match kind {
                "crash" => tracing::info!(target = %target, "crash"),
                _ => tracing::info!(target = %target, "restart"),
            }
        }
        nodes
    }
}
