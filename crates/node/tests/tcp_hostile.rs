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
#![cfg(not(madsim))]

use bytes::BytesMut;
use fleet_core::transport::Transport;
use fleet_core::wire::{ConfigId, HeartbeatAck, Message, Redirect, Refusal, RegisterAck};
use fleet_node::codec::FrameCodec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::codec::Encoder;

mod hostile;
use hostile::{
    agent_messages, count_panics, drain, flood, hang_up, hostile, hostile_master,
    master_with_an_agent, session_of_agent, AgentMessages,
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
    let AgentMessages {
        register,
        heartbeat,
        result,
        pull,
        unregister,
        ..
    } = agent_messages();
    vec![
        frames(&[register.clone(), heartbeat.clone(), result]),
        frames(&[register.clone(), pull, unregister]),
        frames(&[heartbeat]),
        frames(&[register]),
    ]
}

#[tokio::test]
async fn hostile_frames_end_only_their_own_connection() {
    let panics = count_panics();
    let (state, address, session) = master_with_an_agent(&Transport::Tcp).await;
    let beats_before = state.heartbeats();

    let bases = requests();
    let send = move |input: Vec<u8>| async move { hang_up(address, &input).await };
    let outcomes = flood(bases, JUNK, 28, send).await;
    eprintln!("hostile connections: {outcomes:?}");
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
    let address = hostile_master(answers.clone(), Duration::ZERO).await;
    let outcomes = drain(answers, &Transport::Tcp, address).await;
    eprintln!("the agent's channel after each answer: {outcomes:?}");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "nothing panicked");
}
