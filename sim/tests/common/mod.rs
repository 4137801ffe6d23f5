//! One master and one agent inside madsim, built from the shell's own pieces (no scenario
//! file), for tests that reach into a running master.

use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::backoff::BackoffPolicy;
use fleet_core::master::MasterConfig;
use fleet_core::transport::Transport;
use fleet_node::transport::{Acceptor, Serve};
use fleet_node::{registration, run_agent, run_master, MasterState, Masters};
use madsim::runtime::Runtime;
use rand::SeedableRng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MASTER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7000);

/// The running master's state, once its node has started.
pub type Exposed = Arc<Mutex<Option<MasterState>>>;

/// Builds `master-1` (serving on [`MASTER`], 1s heartbeats, 3 misses) and `agent-1` (starting
/// at 100ms) in `runtime`.
pub fn master_and_agent(runtime: &Runtime) -> Exposed {
    let state: Exposed = Arc::default();
    let exposed = state.clone();
    runtime
        .create_node()
        .name("master-1")
        .ip(MASTER.ip())
        .init(move || {
            let exposed = exposed.clone();
            async move {
                let master_state = MasterState::new(MasterConfig {
                    name: "master-1".into(),
                    heartbeat_interval: Duration::from_secs(1),
                    max_miss: 3,
                    ..MasterConfig::default()
                });
                *exposed.lock().unwrap() = Some(master_state.clone());
                let listener = fleet_node::net::TcpListener::bind(MASTER).await.unwrap();
                let acceptor = Acceptor::new(&Transport::Tcp, Serve::Listen { listener, seed: 1 });
                let _ = run_master(acceptor, master_state).await;
            }
        })
        .build();
    runtime
        .create_node()
        .name("agent-1")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)))
        .init(move || async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let config = AgentConfig {
                masters: vec!["master-1".into()],
                heartbeat_interval: Duration::from_secs(1),
                heartbeat_timeout: Duration::from_secs(3),
                backoff: BackoffPolicy::default(),
                register: registration("agent-1", "sim", 101, 0, String::new()),
                commands: Default::default(),
                reauth_delay: Duration::from_secs(5),
                bugs: Default::default(),
            };
            let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let connector = Connector::new(config, rng, Instant::now());
            run_agent(
                connector,
                Masters {
                    addresses: vec![MASTER],
                    transport: Transport::Tcp,
                },
                &Default::default(),
                &Default::default(),
            )
            .await;
        })
        .build();
    state
}
