//! The shell over real sockets on loopback, on each transport: an agent registers with a
//! master, keeps it updated with heartbeats, and when the master goes away, redials until a new
//! master answers.
//! Native build only (`cargo native test -p fleet-node`); the simulated build covers the same
//! code through the scenarios.
#![cfg(not(madsim))]

use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::backoff::BackoffPolicy;
use fleet_core::master::MasterConfig;
use fleet_core::transport::{GrpcTransport, HttpTransport, MqttTransport, Transport};
use fleet_node::net::TcpListener;
use fleet_node::transport::{Acceptor, Serve};
use fleet_node::{registration, run_agent, run_master, MasterState, Masters};
use rand::SeedableRng;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(20);
/// Missed intervals tolerated on both sides: wide, because this runs in real time and a
/// loaded CI machine may stall for a while.
const TOLERANCE: u32 = 10;

async fn start_master(
    serve: Serve<'_>,
    transport: &Transport,
) -> (MasterState, tokio::task::JoinHandle<()>) {
    let state = MasterState::new(MasterConfig {
        name: "master-1".into(),
        heartbeat_interval: INTERVAL,
        max_miss: TOLERANCE,
        ..MasterConfig::default()
    });
    let acceptor = Acceptor::new(transport, serve);
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            let _ = run_master(acceptor, state).await;
        }
    });
    (state, task)
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn an_agent_registers_and_comes_back_after_the_master_restarts() {
    comes_back_on(Transport::Tcp).await;
}

#[tokio::test]
async fn over_http_too() {
    let poll = Duration::from_millis(200);
    comes_back_on(Transport::Http(HttpTransport { poll })).await;
}

#[tokio::test]
async fn over_grpc_too() {
    comes_back_on(Transport::Grpc(GrpcTransport::default())).await;
}

/// Through our broker on loopback: the master's will tells the agent it went away.
#[tokio::test]
async fn over_mqtt_too() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let broker = listener.local_addr().unwrap();
    tokio::spawn(fleet_node::transport::mqtt::broker::serve(listener));
    let keepalive = Duration::from_secs(1);
    comes_back(Transport::Mqtt(MqttTransport { keepalive, qos: 1 }), broker).await;
}

async fn listen(address: std::net::SocketAddr) -> Serve<'static> {
    let listener = TcpListener::bind(address).await.unwrap();
    Serve::Listen { listener, seed: 1 }
}

/// [`comes_back`] on a free port.
async fn comes_back_on(transport: Transport) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    comes_back(transport, address).await;
}

/// An agent registers with a master at `address` (its listener, or the broker's), and comes back
/// to a new master after the first one is gone.
async fn comes_back(transport: Transport, address: std::net::SocketAddr) {
    let serve = || async {
        match &transport {
            Transport::Mqtt(_) => Serve::Broker {
                address,
                name: "master-1",
            },
            _ => listen(address).await,
        }
    };
    let (state, master) = start_master(serve().await, &transport).await;

    let config = AgentConfig {
        masters: vec!["master-1".into()],
        heartbeat_interval: INTERVAL,
        heartbeat_timeout: INTERVAL * TOLERANCE,
        backoff: BackoffPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
            ..BackoffPolicy::default()
        },
        register: registration("agent-1", "loopback", std::process::id(), 0, String::new()),
        commands: Default::default(),
        reauth_delay: Duration::from_secs(1),
        bugs: Default::default(),
    };
    let connector = Connector::new(
        config,
        rand_chacha::ChaCha8Rng::seed_from_u64(1),
        std::time::Instant::now(),
    );
    let masters = Masters {
        addresses: vec![address],
        transport: transport.clone(),
    };
    tokio::spawn(async move {
        run_agent(
            connector,
            masters,
            &fleet_node::AgentControl::default(),
            &Default::default(),
        )
        .await
    });

    wait_until("the agent is online", || {
        state.with_registry(|r| r.online_count() == 1)
    })
    .await;
    // Heartbeats keep it online well past max_miss intervals.
    tokio::time::sleep(INTERVAL * TOLERANCE * 3).await;
    assert_eq!(state.with_registry(|r| r.online_count()), 1);

    master.abort();
    let _ = master.await;
    // The listener was dropped with the task; a new master on the same port gets the agent back.
    let (state, _master) = start_master(serve().await, &transport).await;
    wait_until("the agent re-registers", || {
        state.with_registry(|r| r.online_count() == 1)
    })
    .await;
}
