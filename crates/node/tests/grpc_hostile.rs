//! Hostile input on the gRPC transport, both ways, over real sockets on loopback.
//!
//! - A master gets 100,000 connections' worth of bytes mangled from an agent's own (its HTTP/2
//!   preface, settings, and the Register, Heartbeat and stream calls, gzip on): each ends its
//!   own connection, nothing panics, and an agent registered before keeps its one session and
//!   keeps beating all along.
//! - An agent gets 100,000 mangled answers (a master's own bytes, cut, flipped, spliced): each
//!   ends only that channel, with an error the agent classifies, or yields messages; nothing
//!   panics. The answers unmangled read as a registration's ack, so the mangled ones reach
//!   past HTTP/2 into gRPC's framing, gzip and the messages.
//!
//! Native build only (`cargo native test -p fleet-node`). Seeded: the same inputs every run.
#![cfg(all(not(madsim), not(feature = "turmoil")))]

use fleet_core::agent::{AgentConfig, Connector};
use fleet_core::command::{CommandResult, NodeStatus, Outcome};
use fleet_core::master::MasterConfig;
use fleet_core::transport::{GrpcTransport, Transport};
use fleet_core::wire::{Heartbeat, Message};
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

mod hostile;
use hostile::{agent_config, count_panics, hostile, io_error, INPUTS, WORKERS};

const ENDS: Ends<'static> = Ends {
    agent: "agent-1",
    master: "master-1",
    session: "1",
};

fn grpc() -> Transport {
    Transport::Grpc(GrpcTransport::default())
}

/// Spliced into the inputs: HTTP/2 frame headers of every type with odd flags and lengths, a
/// preface, gRPC's message prefix claiming gzip or a huge length.
const JUNK: &[&[u8]] = &[
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    &[0, 0, 0, 4, 0, 0, 0, 0, 0],
    &[0, 0, 0, 4, 1, 0, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1],
    &[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    &[0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 8],
    &[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    &[0, 0, 4, 8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff],
    &[0, 0, 5, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    &[0, 0, 5, 0, 0, 0, 0, 0, 3, 0, 0xff, 0xff, 0xff, 0xff],
    &[0, 0, 0, 9, 4, 0, 0, 0, 1],
    &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0],
];

/// Records what a peer writes on a connection until it has been quiet for a while.
async fn record(stream: &mut RawStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer));
        match read.await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buffer[..n]),
            _ => return bytes,
        }
    }
}

/// The bytes an agent's channel writes to open and to send `message`: the HTTP/2 preface and
/// settings, the command stream's opening, and the call (a unary one for a registration or a
/// heartbeat, a message up the stream for the rest).
async fn agent_bytes(message: &Message) -> Vec<u8> {
    let listener = RawListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tap = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        record(&mut stream).await
    });
    let grpc = grpc();
    let connect = transport::connect(&grpc, address, &ENDS);
    let mut channel = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .unwrap()
        .unwrap();
    channel.send(message.clone()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(500), channel.next()).await;
    let bytes = tap.await.unwrap();
    drop(channel);
    bytes
}

/// What an agent sends, well formed, as bytes: what the mangling starts from.
async fn requests() -> Vec<Vec<u8>> {
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
    let mut bases = Vec::new();
    for message in [register, heartbeat, result] {
        bases.push(agent_bytes(&message).await);
    }
    bases
}

/// A master serving gRPC, with agent-1 registered and beating on it.
async fn master_with_an_agent() -> (MasterState, SocketAddr) {
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
        Acceptor::new(&grpc(), Serve::Listen { listener, seed: 1 }),
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
        transport: grpc(),
    };
    tokio::spawn(async move {
        run_agent(connector, masters, &Default::default(), &Default::default()).await
    });
    (state, address)
}

fn session_of_agent(state: &MasterState) -> Option<u64> {
    state.with_registry(|registry| {
        (registry.nodes())
            .find(|(_, node)| node.info.node_name == "agent-1")
            .and_then(|(_, node)| node.session)
    })
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
async fn hostile_connections_end_only_themselves() {
    let panics = count_panics();
    let bases = Arc::new(requests().await);
    let (state, address) = master_with_an_agent().await;
    for _ in 0..300 {
        if session_of_agent(&state).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let session = session_of_agent(&state).expect("agent-1 registered");
    let beats_before = state.heartbeats();

    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(BTreeMap::<&str, usize>::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (bases, next, outcomes) = (bases.clone(), next.clone(), outcomes.clone());
            tokio::spawn(async move {
                while let Some(input) = hostile(&bases, JUNK, 26, &next) {
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
        session_of_agent(&state),
        Some(session),
        "agent-1 kept its session"
    );
    assert!(state.heartbeats() > beats_before, "agent-1 kept beating");
}

/// What a master writes back to each of an agent's well-formed openings: its settings, and its
/// answers (a registration's ack, a heartbeat's, the stream's headers).
async fn answers(requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let (_state, address) = master_with_an_agent().await;
    let mut answers = Vec::new();
    for request in requests {
        let mut stream = RawStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        answers.push(record(&mut stream).await);
    }
    answers
}

#[tokio::test]
async fn hostile_answers_end_only_their_own_channel() {
    let panics = count_panics();
    let bases = answers(&requests().await).await;
    assert!(
        bases.iter().all(|answer| !answer.is_empty()),
        "the master answered"
    );
    assert_eq!(
        unmangled(&bases[0]).await,
        "RegisterAck",
        "the bases are answers"
    );
    let next = AtomicUsize::new(0);
    let answers: VecDeque<Vec<u8>> =
        std::iter::from_fn(|| hostile(&bases, JUNK, 27, &next)).collect();
    let answers = Arc::new(Mutex::new(answers));
    // A master that answers each connection, once it has read the agent's opening, with the
    // next hostile answer, and closes it a moment later (at once, the close would overtake
    // the answer's messages).
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
                    tokio::time::sleep(Duration::from_millis(20)).await;
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
                    let outcome = exchange(address, &register).await;
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

/// An agent's channel opened on `address`, a registration sent, and what came of it.
async fn exchange(address: SocketAddr, register: &Message) -> String {
    let grpc = grpc();
    let connect = tokio::time::timeout(
        Duration::from_secs(2),
        transport::connect(&grpc, address, &ENDS),
    );
    let mut channel = match connect.await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => return format!("connect {:?}", fleet_node::agent::classify(&error)),
        Err(_) => return "connect hung".to_string(),
    };
    if channel.send(register.clone()).await.is_err() {
        return "send failed".to_string();
    }
    match tokio::time::timeout(Duration::from_secs(1), channel.next()).await {
        Ok(Some(Ok(message))) => message.kind().to_string(),
        Ok(Some(Err(error))) => format!("{:?}", fleet_node::agent::classify(&io_error(error))),
        Ok(None) => "ended".to_string(),
        Err(_) => "quiet".to_string(),
    }
}

/// What the agent makes of `answer`, left open.
async fn unmangled(answer: &[u8]) -> String {
    let listener = RawListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let answer = answer.to_vec();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 64 * 1024];
        let _ = stream.read(&mut request).await;
        let _ = stream.write_all(&answer).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let register = Message::Register(Box::new(registration(
        "agent-1",
        "fuzz",
        1,
        0,
        String::new(),
    )));
    exchange(address, &register).await
}
