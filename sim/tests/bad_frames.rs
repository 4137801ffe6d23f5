//! A master fed garbage closes that one connection, says so in the trace, and keeps serving
//! everyone else: bad input is never a panic and loses nothing already accepted (a command in
//! flight still completes).
#![cfg(madsim)]

mod common;

use fleet_core::timeline::{Event, ShellEvent};
use madsim::runtime::Runtime;
use sim::run::record::{CaptureLayer, Locate};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn garbage_closes_only_its_own_connection() {
    let runtime = Runtime::with_seed_and_config(3, madsim::Config::default());
    let master = common::MASTER;
    let state = common::master_and_agent(&runtime);
    let vandal = runtime
        .create_node()
        .name("vandal")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)))
        .build();

    let locate: Locate = Arc::new(|| (0, String::new()));
    let (layer, recorder) = CaptureLayer::new(locate, sim::run::budget::Budget::unlimited());
    let events = recorder.timeline;
    let subscriber = tracing_subscriber::registry().with(layer);
    let submitter = state.clone();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let master_state = submitter.lock().unwrap().clone().unwrap();
            let args = std::collections::BTreeMap::from([("ms".to_string(), "3000".to_string())]);
            let sleep =
                master_state.submit(None, "agent-1", "sleep", args, Duration::from_secs(10));
            assert!(sleep.is_ok(), "{sleep:?}");
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
    let pending = (state.lock().unwrap().as_ref().unwrap()).with_registry(|r| r.pending_commands());
    assert_eq!(
        pending, 0,
        "the command accepted before the garbage completed"
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
