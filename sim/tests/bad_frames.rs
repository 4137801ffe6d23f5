//! A master fed garbage closes that one connection, says so in the trace, and keeps serving
//! everyone else: bad input is never a panic and loses nothing already accepted.
#![cfg(madsim)]

use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::backoff::BackoffPolicy;
use fleet_core::master::MasterConfig;
use fleet_core::timeline::{Event, ShellEvent};
use fleet_node::{registration, run_agent, run_master, MasterState};
use madsim::runtime::Runtime;
use rand::SeedableRng;
use sim::run::capture::{CaptureLayer, Locate};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn garbage_closes_only_its_own_connection() {
    let runtime = Runtime::with_seed_and_config(3, madsim::Config::default());
    let master: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 7000).into();
    let state: Arc<Mutex<Option<MasterState>>> = Arc::default();
    let exposed = state.clone();
    runtime
        .create_node()
        .name("master-1")
        .ip(master.ip())
        .init(move || {
            let exposed = exposed.clone();
            async move {
                let master_state = MasterState::new(MasterConfig {
                    name: "master-1".into(),
                    heartbeat_interval: Duration::from_secs(1),
                    max_miss: 3,
                });
                *exposed.lock().unwrap() = Some(master_state.clone());
                let listener = tokio::net::TcpListener::bind(master).await.unwrap();
                let _ = run_master(listener, master_state).await;
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
                register: registration("agent-1", "sim", 101, 0),
                commands: Default::default(),
            };
            let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            run_agent(Connector::new(config, rng, Instant::now()), vec![master]).await;
        })
        .build();
    let vandal = runtime
        .create_node()
        .name("vandal")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)))
        .build();

    let locate: Locate = Arc::new(|| (0, String::new()));
    let (layer, events) = CaptureLayer::new(locate);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            // A frame claiming 4 GiB, then a well-sized frame of nonsense.
            for garbage in [vec![0xff, 0xff, 0xff, 0xff], vec![0, 0, 0, 3, 200, 1, 2]] {
                let closed = vandal
                    .spawn(async move {
                        let mut stream = tokio::net::TcpStream::connect(master).await.unwrap();
                        stream.write_all(&garbage).await.unwrap();
                        // madsim's streams send on flush, like a buffered writer.
                        stream.flush().await.unwrap();
                        let mut buf = [0u8; 16];
                        // The master hangs up on us: end of stream, or a reset.
                        let read =
                            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf));
                        matches!(read.await, Ok(Ok(0) | Err(_)))
                    })
                    .await
                    .unwrap();
                assert!(closed, "the master closed the garbage connection");
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
    });
    let online = state
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .with_registry(|r| r.online_count());
    assert_eq!(
        online, 1,
        "the well-behaved agent stayed registered and online"
    );
    let bad_frames = events
        .lock()
        .unwrap()
        .entries
        .iter()
        .filter(|entry| {
            matches!(
                entry.system(),
                Some(Event::Shell(ShellEvent::BadFrame { .. }))
            )
        })
        .count();
    assert_eq!(bad_frames, 2, "each garbage connection is reported once");
}
