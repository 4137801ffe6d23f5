//! Hostile frames on framed TCP, both ways, over real sockets on loopback.
//!
//! - A master gets 100,000 connections' worth of frames mangled from an agent's own (length
//!   prefixes cut, flipped or made huge, bodies spliced with junk): each ends its own
//!   connection, nothing panics, and an agent registered before keeps its one session and
//!   keeps beating all along.
//! - An agent gets 100,000 mangled answers (a master's own frames): each ends only that channel,
//!   with an error the agent classifies, or yields messages; nothing panics.
//!
//! Native build only (`cargo native test -p fleet-node`). Seeded: the same inputs every run.
#![cfg(all(not(madsim), not(feature = "turmoil")))]

use bytes::BytesMut;
use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::command::{CommandResult, NodeStatus, Outcome};
use fleet_core::master::MasterConfig;
use fleet_core::transport::Transport;
use fleet_core::wire::{
    ConfigId, ConfigPull, Heartbeat, HeartbeatAck, Message, Redirect, Refusal, RegisterAck,
    Unregister,
};
use fleet_node::codec::FrameCodec;
use fleet_node::transport::{self, Acceptor, Ends, Serve};
use fleet_node::{registration, run_agent, run_master, MasterState, Masters};
use futures::{SinkExt, StreamExt};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener as RawListener, TcpStream as RawStream};
use tokio_util::codec::Encoder;

mod hostile;
use hostile::{agent_config, count_panics, hostile, io_error, INPUTS, WORKERS};

const ENDS: Ends<'static> = Ends {
    agent: "agent-1",
    master: "master-1",
    session: "1",
};

/// Spliced into the inputs: length prefixes that claim nothing, one byte, or far too much.
const JUNK: &[&[u8]] = &[
    &[0, 0, 0, 0],
    &[0, 0, 0, 1, 0],
    &[0xff, 0xff, 0xff, 0xff],
    &[0, 0x10, 0, 0],
    &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
    &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
];

/// `messages` as frames, back to back.
fn frames(messages: &[Message]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    for message in messages {
        FrameCodec::default()
            .encode(message.clone(), &mut bytes)
            .unwrap();
    }
    bytes.to_vec()
}

/// What an agent sends, well formed.
fn requests() -> Vec<Vec<u8>> {
    let register = Message::Register(Box::new(registration(
        "intruder",
        "fuzz",
        1,
        0,
        String::new(),
    )));
    let heartbeat = Message::Heartbeat(Heartbeat {
        seq: 7,
        status: NodeStatus::Online,
        uptime_ms: 1,
        metrics: BTreeMap::new(),
    });
    let result = Message::CommandResult(CommandResult {
        request_id: "r-1".into(),
        outcome: Outcome::UnknownCommand,
        output: String::new(),
        duration_ms: 1,
    });
    let pull = Message::ConfigPull(ConfigPull {
        have: ConfigId::default(),
    });
    let unregister = Message::Unregister(Unregister {
        reason: "fuzz".into(),
    });
    vec![
        frames(&[register.clone(), heartbeat.clone(), result]),
        frames(&[register.clone(), pull, unregister]),
        frames(&[heartbeat]),
        frames(&[register]),
    ]
}

/// Sends `input` on a connection of its own, half-closes it, and reads until the master ends
/// it: whether the master wrote anything back.
async fn send_raw(address: SocketAddr, input: &[u8]) -> &'static str {
    let mut stream = RawStream::connect(address).await.unwrap();
    let _ = stream.write_all(input).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a hostile connection was held open");
    match answer.is_empty() {
        true => "closed without a word",
        false => "answered, then closed",
    }
}

#[tokio::test]
async fn hostile_frames_end_only_their_own_connection() {
    let panics = count_panics();
    let listener = fleet_node::net::TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let state = MasterState::new(MasterConfig {
        name: "master-1".into(),
        heartbeat_interval: Duration::from_millis(100),
        max_miss: 30,
        ..MasterConfig::default()
    });
    tokio::spawn(run_master(
        Acceptor::new(&Transport::Tcp, Serve::Listen { listener, seed: 1 }),
        state.clone(),
    ));
    let config = AgentConfig {
        masters: vec!["master-1".into()],
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(3),
        register: registration("agent-1", "loopback", 1, 0, String::new()),
        ..agent_config()
    };
    let connector = Connector::new(
        config,
        ChaCha8Rng::seed_from_u64(1),
        std::time::Instant::now(),
    );
    let masters = Masters {
        addresses: vec![address],
        transport: Transport::Tcp,
    };
    tokio::spawn(async move {
        run_agent(connector, masters, &Default::default(), &Default::default()).await
    });
    let session_of_agent = || {
        state.with_registry(|registry| {
            (registry.nodes())
                .find(|(_, node)| node.info.node_name == "agent-1")
                .and_then(|(_, node)| node.session)
        })
    };
    for _ in 0..300 {
        if session_of_agent().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let session = session_of_agent().expect("agent-1 registered");
    let beats_before = state.heartbeats();

    let bases = Arc::new(requests());
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<&str, usize>::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (bases, next, outcomes) = (bases.clone(), next.clone(), outcomes.clone());
            tokio::spawn(async move {
                while let Some(input) = hostile(&bases, JUNK, 28, &next) {
                    let outcome = send_raw(address, &input).await;
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    eprintln!("hostile connections: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), INPUTS);
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
    assert_eq!(
        session_of_agent(),
        Some(session),
        "agent-1 kept its session"
    );
    assert!(state.heartbeats() > beats_before, "agent-1 kept beating");
}

/// A master's own answers, well formed.
fn answers() -> Vec<Vec<u8>> {
    let ack = |refusal| {
        Message::RegisterAck(Box::new(RegisterAck {
            instance_id: "agent-1-fuzz-1".into(),
            reason: String::new(),
            heartbeat_interval_ms: 1000,
            refusal,
            retry_after_ms: 0,
        }))
    };
    let beat = Message::HeartbeatAck(HeartbeatAck {
        seq: 1,
        config: ConfigId::default(),
    });
    let redirect = Message::Redirect(Redirect {
        leader: "master-2".into(),
    });
    vec![
        frames(&[ack(Refusal::None), beat]),
        frames(&[ack(Refusal::Busy)]),
        frames(&[redirect]),
    ]
}

#[tokio::test]
async fn hostile_answers_end_only_their_own_channel() {
    let panics = count_panics();
    let bases = answers();
    let next = AtomicUsize::new(0);
    let answers: VecDeque<Vec<u8>> =
        std::iter::from_fn(|| hostile(&bases, JUNK, 29, &next)).collect();
    let answers = Arc::new(Mutex::new(answers));
    // A master that answers each connection's first frames with the next hostile answer, and
    // closes it.
    let listener = RawListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn({
        let answers = answers.clone();
        async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let answer = answers.lock().unwrap().pop_front().unwrap_or_default();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
    });
    let register = Message::Register(Box::new(registration(
        "agent-1",
        "fuzz",
        1,
        0,
        String::new(),
    )));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (answers, outcomes, register) =
                (answers.clone(), outcomes.clone(), register.clone());
            tokio::spawn(async move {
                while !answers.lock().unwrap().is_empty() {
                    let tcp = Transport::Tcp;
                    let mut channel = transport::connect(&tcp, address, &ENDS).await.unwrap();
                    channel.send(register.clone()).await.unwrap();
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(1), channel.next()).await;
                    let outcome = match outcome {
                        Ok(Some(Ok(message))) => message.kind().to_string(),
                        Ok(Some(Err(error))) => {
                            format!("{:?}", fleet_node::agent::classify(&io_error(error)))
                        }
                        Ok(None) => "ended".to_string(),
                        Err(_) => "quiet".to_string(),
                    };
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    eprintln!("the agent's channel after each answer: {outcomes:?}");
    assert!(answers.lock().unwrap().is_empty(), "every answer was read");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
}
