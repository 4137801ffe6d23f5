//! The machines of a run: where each node lives on the network and what it runs.
//!
//! Address plan (madsim): `master-i` is 10.0.0.i, serving agents on port 7000 and its cluster
//! peers on 7001; `agent-i` is 10.1.(i / 256).(i % 256); `store-1` is 10.2.0.1, port 6379;
//! `broker-1` (MQTT) is 10.3.0.1, port 1883.
//! turmoil hands out its own addresses by name, on the same ports. Every node's RNG is seeded
//! from the scenario seed, the node's name and its incarnation (1 at boot, +1 per restart).
//! Agents boot at 100ms, once the masters listen. Each master has a disk that outlives its
//! crashes, owned here as the store's keyspace is: its commands and config, and raft's term
//! and vote (unless the scenario sets `persist = false`).

use crate::run::engine::{Boot, Machines};
use crate::run::store::{self, Store};
use crate::scenario::faults::FaultAction;
use crate::scenario::selector::{NodeKind, Topology, BROKER, STORE};
use crate::scenario::{ClusterSpec, Scenario};
use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::cluster::lease::LeaseConfig;
use fleet_core::cluster::raft::RaftConfig;
use fleet_core::master::{Leadership, MasterConfig};
use fleet_core::timeline::ShellEvent;
use fleet_core::transport::Transport;
use fleet_node::cluster::{ClusterConfig, ClusterHandle, ClusterMode};
use fleet_node::disk::Disk;
use fleet_node::machine::Machine;
use fleet_node::report::emit;
use fleet_node::sync::lock;
use fleet_node::transport::{Acceptor, Serve};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const MASTER_PORT: u16 = 7000;
/// Where every master answers the operators' admin API (the `fleet` binary's router).
pub(crate) const ADMIN_PORT: u16 = 8080;
pub(crate) const CLUSTER_PORT: u16 = 7001;
pub(crate) const STORE_PORT: u16 = 6379;
/// Agents start this long after the masters, so the first attempt finds a listener.
pub(crate) const AGENT_BOOT_DELAY: Duration = Duration::from_millis(100);

/// The address plan madsim's nodes get (turmoil picks its own): `master-i` 10.0.0.i,
/// `agent-i` 10.1.(i/256).(i%256), `store-1` 10.2.0.1, `broker-1` 10.3.0.1.
#[cfg(madsim)]
pub(crate) fn node_ip(kind: NodeKind, index: u32) -> IpAddr {
    use std::net::Ipv4Addr;
    debug_assert!(index < 1 << 16);
    let (high, low) = ((index >> 8) as u8, index as u8);
    match kind {
        NodeKind::Master => IpAddr::V4(Ipv4Addr::new(10, 0, high, low)),
        NodeKind::Agent => IpAddr::V4(Ipv4Addr::new(10, 1, high, low)),
        NodeKind::Store => IpAddr::V4(Ipv4Addr::new(10, 2, high, low)),
        NodeKind::Broker => IpAddr::V4(Ipv4Addr::new(10, 3, high, low)),
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

/// Counts a node's incarnations and seeds each one's RNG.
#[derive(Clone)]
struct Incarnations {
    seed: u64,
    name: String,
    count: Arc<AtomicU32>,
}

impl Incarnations {
    fn new(seed: u64, name: &str) -> Incarnations {
        Incarnations {
            seed,
            name: name.to_string(),
            count: Arc::new(AtomicU32::new(0)),
        }
    }

    /// A seed for one `part` of incarnation `incarnation` other than its RNG's.
    fn seed_of(&self, incarnation: u32, part: &str) -> u64 {
        node_seed(self.seed, &format!("{}/{part}", self.name), incarnation)
    }

    /// The next incarnation's number (1 at boot) and RNG.
    fn next(&self) -> (u32, ChaCha8Rng) {
        let incarnation = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let seed = node_seed(self.seed, &self.name, incarnation);
        (incarnation, ChaCha8Rng::seed_from_u64(seed))
    }
}

/// A master's running state, as its current incarnation set it: the harness submits
/// commands and config through it.
pub(crate) type MasterSlot = Arc<Mutex<Option<fleet_node::MasterState>>>;

/// An agent's control, as its current incarnation set it: the harness stops it through it.
pub(crate) type AgentSlot = Arc<Mutex<Option<Arc<fleet_node::AgentControl>>>>;

/// The agents whose credentials are revoked, cluster-wide: a master that boots takes the list,
/// as it would read it from the cluster's credential store.
pub(crate) type Revoked = Arc<Mutex<BTreeSet<String>>>;

/// The nodes of a run: the disks that outlive them, the masters' states and the agents'
/// controls, by name.
pub(crate) struct Built {
    pub disks: BTreeMap<String, Disk>,
    /// What each node runs on, and its address: for the faults on clocks, pauses and stalls.
    pub machines: BTreeMap<String, (Machine, IpAddr)>,
    pub masters: BTreeMap<String, MasterSlot>,
    pub agents: BTreeMap<String, AgentSlot>,
    pub revoked: Revoked,
}

/// Builds every node of `scenario` on `machines`.
pub(crate) fn build(machines: &mut impl Machines, scenario: &Scenario, seed: u64) -> Built {
    let mut machines = OwnMachines {
        engine: machines,
        made: BTreeMap::new(),
        buggify: scenario.buggify.map(|_| seed),
    };
    let machines = &mut machines;
    let topology = &scenario.topology;
    let mut disks = BTreeMap::new();
    let mut slots = BTreeMap::new();
    let revoked = Revoked::default();
    let (store, broker) = build_services(machines, topology);
    let cluster = cluster_configs(machines, scenario, store);
    for (index, config) in (1..).zip(cluster) {
        let name = config.me.clone();
        // One disk per master: its commands and config, and raft's term and vote if kept.
        let disk = config.disk.clone().expect("every master has a disk");
        disks.insert(name.clone(), disk.clone());
        let slot = MasterSlot::default();
        slots.insert(name.clone(), slot.clone());
        let master = MasterNode {
            scenario,
            seed,
            index,
            cluster: config,
            disk,
            slot,
            revoked: revoked.clone(),
            broker,
        };
        master.build(machines);
    }
    let masters = topology.masters();
    // Through a broker, every master is reached at the broker's address.
    let addresses: Vec<SocketAddr> = (1..=topology.masters)
        .map(|i| {
            let name = Topology::node_name(NodeKind::Master, i);
            let ip = machines.address(&name, NodeKind::Master, i);
            broker.unwrap_or(SocketAddr::new(ip, MASTER_PORT))
        })
        .collect();
    let mut agents = BTreeMap::new();
    for index in 1..=topology.agents {
        let name = Topology::node_name(NodeKind::Agent, index);
        let slot = AgentSlot::default();
        agents.insert(name.clone(), slot.clone());
        let agent = Agent {
            name: name.clone(),
            index,
            scenario,
            masters: &masters,
            addresses: &addresses,
            slot,
        };
        agent.build(machines, seed);
    }
    Built {
        machines: std::mem::take(&mut machines.made),
        disks,
        masters: slots,
        agents,
        revoked,
    }
}

/// Adds each node on a [`Machine`] of its own, and keeps them: a machine outlives its node's
/// crashes, as its clock does.
struct OwnMachines<'m, M> {
    engine: &'m mut M,
    made: BTreeMap<String, (Machine, IpAddr)>,
    /// The run's seed, when its fault points are on (`buggify`).
    buggify: Option<u64>,
}

/// Keeps a machine's fault points' draws apart from its node's other uses of the seed.
const BUGGIFY_STREAM: u64 = 0x6275_6767_6966_7921;

impl<M: Machines> Machines for OwnMachines<'_, M> {
    fn address(&mut self, name: &str, kind: NodeKind, index: u32) -> IpAddr {
        self.engine.address(name, kind, index)
    }

    fn listen(&self, address: SocketAddr) -> SocketAddr {
        self.engine.listen(address)
    }

    fn add(&mut self, name: &str, ip: IpAddr, machine: Machine, boot: Boot) {
        if let Some(seed) = self.buggify {
            // Incarnation 0: no boot of the node draws from this seed.
            machine.buggify(node_seed(seed, name, 0) ^ BUGGIFY_STREAM);
        }
        self.made.insert(name.to_string(), (machine.clone(), ip));
        self.engine.add(name, ip, machine, boot);
    }
}

/// The nodes that serve the others, if the scenario has them: the lease store and the MQTT
/// broker, and their addresses.
fn build_services(
    machines: &mut impl Machines,
    topology: &Topology,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let store = topology
        .store
        .then(|| store_address(machines.address(STORE, NodeKind::Store, 1)));
    if let Some(address) = store {
        build_store(machines, address);
    }
    let broker = topology.broker.then(|| {
        let ip = machines.address(BROKER, NodeKind::Broker, 1);
        SocketAddr::new(ip, fleet_node::transport::mqtt::PORT)
    });
    if let Some(address) = broker {
        build_broker(machines, address);
    }
    (store, broker)
}

fn store_address(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, STORE_PORT)
}

fn build_store(machines: &mut impl Machines, address: SocketAddr) {
    // The keyspace outlives the node, as Redis's append-only file would: a crash loses no
    // grant and no token.
    let keyspace = Arc::new(Mutex::new(Store::default()));
    let listen = machines.listen(address);
    let boot: Boot = Arc::new(move || {
        let keyspace = keyspace.clone();
        Box::pin(async move {
            match fleet_node::net::TcpListener::bind(listen).await {
                Ok(listener) => {
                    let _ = store::serve(listener, keyspace).await;
                }
                Err(error) => emit(ShellEvent::BindFailed {
                    error: error.to_string(),
                }),
            }
        })
    });
    machines.add(STORE, address.ip(), super::budget::machine(), boot);
}

/// The MQTT broker: nothing outlives a crash (mosquitto with `persistence false`).
fn build_broker(machines: &mut impl Machines, address: SocketAddr) {
    let listen = machines.listen(address);
    let boot: Boot = Arc::new(move || {
        Box::pin(async move {
            match fleet_node::net::TcpListener::bind(listen).await {
                Ok(listener) => fleet_node::transport::mqtt::broker::serve(listener).await,
                Err(error) => emit(ShellEvent::BindFailed {
                    error: error.to_string(),
                }),
            }
        })
    });
    machines.add(BROKER, address.ip(), super::budget::machine(), boot);
}

/// Every master's view of the cluster, in index order.
fn cluster_configs(
    machines: &mut impl Machines,
    scenario: &Scenario,
    store: Option<SocketAddr>,
) -> Vec<ClusterConfig> {
    let masters = scenario.topology.masters;
    let members: BTreeMap<String, SocketAddr> = (1..=masters)
        .map(|i| {
            let name = Topology::node_name(NodeKind::Master, i);
            let ip = machines.address(&name, NodeKind::Master, i);
            (name, SocketAddr::new(ip, CLUSTER_PORT))
        })
        .collect();
    let mode = match (&scenario.cluster, store) {
        (ClusterSpec::Single, _) => ClusterMode::Single,
        (ClusterSpec::Raft { config, .. }, _) => ClusterMode::Raft(RaftConfig {
            bugs: scenario.bugs,
            ..config.clone()
        }),
        (ClusterSpec::Lease(config), Some(store)) => ClusterMode::Lease {
            config: LeaseConfig {
                bugs: scenario.bugs,
                ..config.clone()
            },
            store,
        },
        (ClusterSpec::Lease(_), None) => unreachable!("a lease cluster's topology has a store"),
    };
    let persist = matches!(scenario.cluster, ClusterSpec::Raft { persist: true, .. });
    let fsync = !matches!(scenario.cluster, ClusterSpec::Raft { fsync: false, .. });
    (1..=masters)
        .map(|i| ClusterConfig {
            me: Topology::node_name(NodeKind::Master, i),
            members: members.clone(),
            mode: mode.clone(),
            disk: Some(Disk::default()),
            save_votes: persist,
            fsync,
            first_start: true,
        })
        .collect()
}

/// One master, before it is built.
struct MasterNode<'a> {
    scenario: &'a Scenario,
    seed: u64,
    index: u32,
    cluster: ClusterConfig,
    disk: Disk,
    slot: MasterSlot,
    revoked: Revoked,
    /// The MQTT broker's address, when agents come through one.
    broker: Option<SocketAddr>,
}

impl MasterNode<'_> {
    fn build(self, machines: &mut impl Machines) {
        let MasterNode {
            scenario,
            seed,
            index,
            cluster,
            disk,
            slot,
            revoked,
            broker,
        } = self;
        let config = MasterConfig {
            name: cluster.me.clone(),
            heartbeat_interval: scenario.heartbeat.interval,
            max_miss: scenario.heartbeat.max_miss,
            auth_secret: scenario.auth.as_ref().map(|auth| auth.secret.clone()),
            admission: scenario.master.admission,
            attempts: scenario.master.attempts,
            leader_wait: leader_wait(&scenario.cluster),
            bugs: scenario.bugs,
        };
        let ip = machines.address(&cluster.me, NodeKind::Master, index);
        let name = cluster.me.clone();
        let listen = Listen {
            agents: machines.listen(SocketAddr::new(ip, MASTER_PORT)),
            peers: machines.listen(cluster.members[&cluster.me]),
            admin: machines.listen(SocketAddr::new(ip, ADMIN_PORT)),
        };
        let api = admin_api(scenario, &cluster);
        let incarnations = Incarnations::new(seed, &cluster.me);
        let transport = scenario.transport.clone();
        let boot: Boot = Arc::new(move || {
            let (incarnation, rng) = incarnations.next();
            let tokens = incarnations.seed_of(incarnation, "sessions");
            let boot = (incarnation > 1).then(|| incarnation.to_string());
            let (disk, config, slot) = (Some(disk.clone()), config.clone(), slot.clone());
            let (revoked, api) = (revoked.clone(), api.clone());
            let transport = transport.clone();
            // A first start is one that finds a disk nothing was ever synced to: a node whose
            // first start died before it wrote finds a new disk, not a lost one.
            let cluster = ClusterConfig {
                first_start: disk.as_ref().is_none_or(|disk| !disk.is_used()),
                ..cluster.clone()
            };
            // The disk is read on the node, so what the read reports is the node's.
            Box::pin(async move {
                let state = fleet_node::MasterState::open(config, disk, boot.as_deref());
                // Read as it boots, not when it was told to restart: a `restore` in between
                // finds this registry in the slot, or the list already changed.
                let revoked = lock(&revoked).clone();
                state.operate(|registry| {
                    for agent in &revoked {
                        registry.revoke_credentials(agent);
                    }
                });
                *lock(&slot) = Some(state.clone());
                let agents = Agents {
                    transport: &transport,
                    tokens,
                    broker,
                };
                run_master(listen, agents, state, cluster, rng, api).await
            })
        });
        machines.add(&name, ip, super::budget::machine(), boot);
    }
}

/// What a master's admin API needs (its mode, and every master's admin address, where a
/// follower sends writes), if the scenario uses the API.
fn admin_api(
    scenario: &Scenario,
    cluster: &ClusterConfig,
) -> Option<(&'static str, BTreeMap<String, String>)> {
    let admins: BTreeMap<String, String> = (cluster.members.iter())
        .map(|(name, peers)| {
            (
                name.clone(),
                SocketAddr::new(peers.ip(), ADMIN_PORT).to_string(),
            )
        })
        .collect();
    // Served only where the harness will ask it something: binding a socket draws from
    // madsim's random stream, and would shift every run that never uses the API.
    (scenario.faults.iter())
        .any(|fault| matches!(fault.action, FaultAction::Admin(_)))
        .then_some((scenario.cluster.mode(), admins))
}

/// How long a follower that knows no leader tells agents to stay away: about as long as its
/// cluster takes to find one (raft's shortest election timeout, lease mode's sync interval).
fn leader_wait(cluster: &ClusterSpec) -> Duration {
    match cluster {
        ClusterSpec::Raft { config, .. } => config.election_timeout.0,
        ClusterSpec::Lease(config) => config.sync_interval,
        ClusterSpec::Single => MasterConfig::default().leader_wait,
    }
}

/// Where a master binds: for its agents, its cluster peers and the admin API.
#[derive(Clone, Copy)]
struct Listen {
    agents: SocketAddr,
    peers: SocketAddr,
    admin: SocketAddr,
}

/// How a master serves its agents.
struct Agents<'a> {
    transport: &'a Transport,
    /// The seed of its session tokens (HTTP).
    tokens: u64,
    /// Where its agents' broker is (MQTT).
    broker: Option<SocketAddr>,
}

/// A master as the `fleet` binary runs one: the agent server, the cluster loop and, with `api`
/// (its mode, and every master's admin address, for redirects), the admin API.
async fn run_master(
    listen: Listen,
    agents: Agents<'_>,
    state: fleet_node::MasterState,
    cluster: ClusterConfig,
    rng: ChaCha8Rng,
    api: Option<(&'static str, BTreeMap<String, String>)>,
) {
    if !matches!(cluster.mode, ClusterMode::Single) {
        // Until elected, a cluster member serves no agents.
        state.set_leadership(Leadership::Follower { leader: None }, None);
    }
    let listeners = (
        fleet_node::net::TcpListener::bind(listen.agents).await,
        fleet_node::net::TcpListener::bind(listen.peers).await,
    );
    let (listener, peers) = match listeners {
        (Ok(agents), Ok(peers)) => (agents, peers),
        (Err(error), _) | (_, Err(error)) => return bind_failed(error),
    };
    // The servers' tasks end with this node, like everything else here.
    let serve = match agents.broker {
        Some(address) => Serve::Broker {
            address,
            name: &cluster.me,
        },
        None => Serve::Listen {
            listener,
            seed: agents.tokens,
        },
    };
    let agents = Acceptor::new(agents.transport, serve);
    fleet_node::task::spawn(fleet_node::run_master(agents, state.clone()));
    let handle = ClusterHandle::new(&cluster.me);
    if let Some((mode, admins)) = api {
        let admin = match fleet_node::net::TcpListener::bind(listen.admin).await {
            Ok(admin) => admin,
            Err(error) => return bind_failed(error),
        };
        let api = fleet::admin::Admin {
            name: cluster.me.clone(),
            mode,
            master: state.clone(),
            cluster: handle.clone(),
            admins,
            metrics: Default::default(),
        };
        let router = fleet::admin::router(Arc::new(api));
        fleet_node::task::spawn(fleet::admin::serve(admin, router));
    }
    fleet_node::cluster::run_cluster(cluster, peers, rng, state, handle).await;
}

fn bind_failed(error: std::io::Error) {
    emit(ShellEvent::BindFailed {
        error: error.to_string(),
    });
}

/// One agent, before it is built.
struct Agent<'a> {
    name: String,
    index: u32,
    scenario: &'a Scenario,
    masters: &'a [String],
    addresses: &'a [SocketAddr],
    slot: AgentSlot,
}

impl Agent<'_> {
    fn build(self, machines: &mut impl Machines, seed: u64) {
        let incarnations = Incarnations::new(seed, &self.name);
        let (heartbeat, backoff) = (&self.scenario.heartbeat, &self.scenario.backoff);
        let (interval, timeout, backoff) = (heartbeat.interval, heartbeat.timeout, backoff.clone());
        let (masters, addresses) = (self.masters.to_vec(), self.addresses.to_vec());
        let commands = self.scenario.executor.clone();
        let transport = self.scenario.transport.clone();
        let (reauth_delay, bugs) = (self.scenario.reauth_delay, self.scenario.bugs);
        let token = (self.scenario.auth.as_ref())
            .map(|auth| fleet_core::auth::token(&auth.secret, &self.name))
            .unwrap_or_default();
        let ip = machines.address(&self.name, NodeKind::Agent, self.index);
        let (name, slot) = (self.name, self.slot);
        let node = name.clone();
        let boot: Boot = Arc::new(move || {
            let (incarnation, rng) = incarnations.next();
            let (name, masters, addresses) = (name.clone(), masters.clone(), addresses.clone());
            let (backoff, commands, token) = (backoff.clone(), commands.clone(), token.clone());
            let transport = transport.clone();
            let control = Arc::new(fleet_node::AgentControl::default());
            *lock(&slot) = Some(control.clone());
            Box::pin(async move {
                if incarnation == 1 {
                    tokio::time::sleep(AGENT_BOOT_DELAY).await;
                }
                // Simulated processes get small, distinct pids: 100 + incarnation.
                let start_time_ms = fleet_node::clock::unix_ms();
                let pid = 100 + incarnation;
                let config = AgentConfig {
                    masters,
                    heartbeat_interval: interval,
                    heartbeat_timeout: timeout,
                    backoff,
                    register: fleet_node::registration(&name, "sim", pid, start_time_ms, token),
                    commands: commands.clone(),
                    reauth_delay,
                    bugs,
                };
                let connector = Connector::new(config, rng, fleet_node::clock::now());
                let masters = fleet_node::Masters {
                    addresses,
                    transport,
                };
                fleet_node::run_agent(connector, masters, &control, &Default::default()).await;
            })
        });
        machines.add(&node, ip, super::budget::machine(), boot);
    }
}
