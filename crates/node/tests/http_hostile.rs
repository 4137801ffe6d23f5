//! Hostile input on the HTTP transport, both ways, over real sockets on loopback.
//!
//! - A master gets 100,000 requests mangled from the agents' own (cut, flipped bytes, wrong
//!   methods, paths, headers, lengths and bodies, messages of the wrong kind): each answers
//!   below 500 or closes its own connection, nothing panics, and an agent registered before
//!   keeps its one session, online, all along.
//! - An agent gets 100,000 mangled answers to its registration: each ends only that channel,
//!   with an error the agent classifies, or yields messages; nothing panics.
//!
//! Native build only (`cargo native test -p fleet-node`). Seeded: the same inputs every run.
#![cfg(not(madsim))]

use fleet_core::transport::{HttpTransport, Transport};
use fleet_core::wire::{ConfigId, HeartbeatAck, Message, Redirect, Refusal, RegisterAck};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream as RawStream;

mod hostile;
use hostile::{
    agent_messages, count_panics, drain, flood, hostile, hostile_master, master_with_an_agent,
    session_of_agent, AgentMessages,
};

fn http() -> Transport {
    Transport::Http(HttpTransport {
        poll: Duration::from_millis(300),
    })
}

fn message_json(message: &Message) -> Vec<u8> {
    serde_json::to_vec(message).unwrap()
}

/// The agents' own requests, well formed: what the mangling starts from.
fn requests() -> Vec<Vec<u8>> {
    let AgentMessages {
        register,
        heartbeat,
        result,
        pull: config,
        ack,
        unregister,
    } = agent_messages();
    let post = |path: &str, message: &Message, session: &str| {
        let body = message_json(message);
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: m\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !session.is_empty() {
            head.push_str(&format!("fleet-session: {session}\r\n"));
        }
        head.push_str("\r\n");
        [head.into_bytes(), body].concat()
    };
    vec![
        post("/api/master/nodes/register", &register, ""),
        post("/api/master/heartbeat", &heartbeat, "1-1"),
        post("/api/master/command/result", &result, "x"),
        post("/api/master/nodes/intruder/config", &config, "1-2"),
        post("/api/master/nodes/intruder/config", &ack, ""),
        post("/api/master/nodes/intruder/unregister", &unregister, "9"),
        // A message of the wrong kind for its path.
        post("/api/master/heartbeat", &register, ""),
        b"GET /api/master/nodes/intruder/commands?wait=50 HTTP/1.1\r\nhost: m\r\nfleet-session: 1-1\r\n\r\n"
            .to_vec(),
        b"GET /api/master/nodes/intruder/commands?wait=abc HTTP/1.1\r\nhost: m\r\n\r\n".to_vec(),
    ]
}

const JUNK: &[&[u8]] = &[
    b"\r\n",
    b"\0",
    b"{",
    b"}}}}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"null",
    b"\"Register\"",
    b"{\"Register\":{}}",
    b"{\"Heartbeat\":{\"seq\":-1}}",
    b"transfer-encoding: chunked\r\n",
    b"content-length: 99999999999\r\n",
    b"content-length: -1\r\n",
    b"fleet-session: \xff\xfe\r\n",
    b"DELETE",
    b"/../../etc/passwd",
    b"%00%2F",
    b"HTTP/2.0",
    b"\xf0\x28\x8c\x28",
];

/// Sends `input` on a connection of its own and reads what comes back until the master closes
/// it: the status, or `None` if it closed without answering.
async fn send_raw(address: SocketAddr, input: &[u8]) -> Option<u16> {
    let mut stream = RawStream::connect(address).await.unwrap();
    let _ = stream.write_all(input).await;
    // Half-closed: the master reads to the end, answers, and closes.
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a hostile request held its connection open");
    let status = answer.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    std::str::from_utf8(status).ok()?.parse().ok()
}

#[tokio::test]
async fn hostile_requests_end_only_their_own_connection() {
    let panics = count_panics();
    let (state, address, session) = master_with_an_agent(&http()).await;
    let beats_before = state.heartbeats();

    let bases = requests();
    let send = move |input: Vec<u8>| async move { send_raw(address, &input).await };
    let statuses = flood(bases, JUNK, 24, send).await;
    eprintln!("answers by status (None: closed without one): {statuses:?}");
    let server_errors: usize = (statuses.iter())
        .filter(|(status, _)| status.is_some_and(|status| status >= 500 && status != 503))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(server_errors, 0, "no hostile request makes the master fail");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
    assert_eq!(
        session_of_agent(&state),
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
    let bodies = [
        vec![ack(Refusal::None)],
        vec![ack(Refusal::Busy)],
        vec![Message::Redirect(Redirect {
            leader: "master-2".into(),
        })],
        vec![Message::HeartbeatAck(HeartbeatAck {
            seq: 1,
            config: ConfigId::default(),
        })],
    ];
    bodies
        .iter()
        .map(|messages| {
            let body = serde_json::to_vec(messages).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nfleet-session: 1-1\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            [head.into_bytes(), body].concat()
        })
        .collect()
}

#[tokio::test]
async fn hostile_answers_end_only_their_own_channel() {
    let panics = count_panics();
    let bases = answers();
    let next = AtomicUsize::new(0);
    let answers: VecDeque<Vec<u8>> =
        std::iter::from_fn(|| hostile(&bases, JUNK, 25, &next)).collect();
    let answers = Arc::new(Mutex::new(answers));
    let address = hostile_master(answers.clone(), Duration::ZERO).await;
    let outcomes = drain(answers.clone(), &http(), address).await;
    eprintln!("the agent's channel after each answer: {outcomes:?}");
    // A channel that took a well-formed session reads its long poll's answer too: every
    // answer was read, by fewer channels.
    assert!(answers.lock().unwrap().is_empty(), "every answer was read");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
}
