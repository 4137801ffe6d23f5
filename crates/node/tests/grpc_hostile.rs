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
#![cfg(not(madsim))]

use fleet_core::transport::{GrpcTransport, Transport};
use fleet_core::wire::Message;
use fleet_node::registration;
use fleet_node::transport::{self, Ends};
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener as RawListener, TcpStream as RawStream};

mod hostile;
use hostile::{
    agent_messages, count_panics, drain, exchange, flood, hang_up, hostile, hostile_master,
    master_with_an_agent, session_of_agent, AgentMessages,
};

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
    let AgentMessages {
        register,
        heartbeat,
        result,
        ..
    } = agent_messages();
    let mut bases = Vec::new();
    for message in [register, heartbeat, result] {
        bases.push(agent_bytes(&message).await);
    }
    bases
}

#[tokio::test]
async fn hostile_connections_end_only_themselves() {
    let panics = count_panics();
    let bases = requests().await;
    let (state, address, session) = master_with_an_agent(&grpc()).await;
    let beats_before = state.heartbeats();

    let send = move |input: Vec<u8>| async move { hang_up(address, &input).await };
    let outcomes = flood(bases, JUNK, 26, send).await;
    eprintln!("hostile connections: {outcomes:?}");
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
    let (_state, address, _) = master_with_an_agent(&grpc()).await;
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
    // Closed a moment after the answer: at once, the close would overtake its messages.
    let address = hostile_master(answers.clone(), Duration::from_millis(20)).await;
    let outcomes = drain(answers, &grpc(), address).await;
    eprintln!("the agent's channel after each answer: {outcomes:?}");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
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
    exchange(&grpc(), address, &register).await
}
