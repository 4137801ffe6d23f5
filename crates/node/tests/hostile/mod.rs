//! What the hostile-input tests share: seeded mangling of well-formed inputs, a panic counter,
//! and an agent's defaults.
#![allow(dead_code)]

use fleet_core::agent::AgentConfig;
use fleet_node::registration;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const INPUTS: usize = 100_000;
/// Connections under way at once.
pub const WORKERS: usize = 32;

/// Counts panics on any thread: a panic in a connection's task would end only that task, and
/// no test would see it.
pub fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    panics
}

/// The next of the [`INPUTS`] inputs made from `bases` (with `junk` spliced in here and
/// there), each from its own seeded generator, so the inputs are the same whichever worker
/// makes them (and none is made before it is sent: making them all first would stall the
/// runtime the agent beats on).
pub fn hostile(
    bases: &[Vec<u8>],
    junk: &[&[u8]],
    seed: u64,
    next: &AtomicUsize,
) -> Option<Vec<u8>> {
    let index = next.fetch_add(1, Ordering::Relaxed);
    if index >= INPUTS {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed << 32 | index as u64);
    Some(mangle(
        &bases[rng.gen_range(0..bases.len())],
        junk,
        &mut rng,
    ))
}

/// One hostile input made from `base`: a few of the manglings, stacked.
pub fn mangle(base: &[u8], junk: &[&[u8]], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut input = base.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        let at = rng.gen_range(0..=input.len());
        match rng.gen_range(0..8) {
            0 => input.truncate(at),
            1 if !input.is_empty() => {
                let i = rng.gen_range(0..input.len());
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            2 => {
                let junk = junk[rng.gen_range(0..junk.len())];
                input.splice(at..at, junk.iter().copied());
            }
            3 => {
                let end = rng.gen_range(at..=input.len());
                input.drain(at..end);
            }
            4 => {
                let mut noise = vec![0u8; rng.gen_range(1..64)];
                rng.fill_bytes(&mut noise);
                input.splice(at..at, noise);
            }
            // Oversized, past any limit.
            5 if rng.gen_ratio(1, 64) => input.extend(std::iter::repeat_n(b'a', 300 * 1024)),
            6 => {
                let copy = input[at..].to_vec();
                input.extend(copy);
            }
            _ => {
                let method: &[u8] =
                    [&b"PUT"[..], b"PATCH", b"OPTIONS", b"GET", b"BREW"][rng.gen_range(0..5)];
                if let Some(space) = input.iter().position(|&b| b == b' ') {
                    input.splice(..space, method.iter().copied());
                }
            }
        }
    }
    input
}

/// Everything but the names and timings: defaults.
pub fn agent_config() -> AgentConfig {
    AgentConfig {
        masters: Vec::new(),
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(3),
        backoff: Default::default(),
        register: registration("", "", 0, 0, String::new()),
        commands: Default::default(),
        reauth_delay: Duration::from_secs(1),
        bugs: Default::default(),
    }
}

pub fn io_error(error: fleet_node::codec::CodecError) -> std::io::Error {
    match error {
        fleet_node::codec::CodecError::Io(error) => error,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    }
}

/// A master serving `transport` on loopback, with agent-1 registered and beating on it
/// (every 100ms): its state, its address, and agent-1's session.
pub async fn master_with_an_agent(
    transport: &fleet_core::transport::Transport,
) -> (fleet_node::MasterState, std::net::SocketAddr, u64) {
    use fleet_core::agent::Connector;
    use fleet_core::master::MasterConfig;
    use fleet_node::transport::{Acceptor, Serve};
    use fleet_node::{run_agent, run_master, MasterState, Masters};
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
        Acceptor::new(transport, Serve::Listen { listener, seed: 1 }),
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
        transport: transport.clone(),
    };
    tokio::spawn(async move {
        run_agent(connector, masters, &Default::default(), &Default::default()).await
    });
    for _ in 0..300 {
        if session_of_agent(&state).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let session = session_of_agent(&state).expect("agent-1 registered");
    (state, address, session)
}

/// agent-1's session at the master, if it has one.
pub fn session_of_agent(state: &fleet_node::MasterState) -> Option<u64> {
    state.with_registry(|registry| {
        (registry.nodes())
            .find(|(_, node)| node.info.node_name == "agent-1")
            .and_then(|(_, node)| node.session)
    })
}

/// A master that answers each connection, once it has read what the agent sent first, with the
/// next of `answers`, and closes it `linger` later: its address.
pub async fn hostile_master(
    answers: Arc<std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>>,
    linger: Duration,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let answer = answers.lock().unwrap().pop_front().unwrap_or_default();
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(&answer).await;
                tokio::time::sleep(linger).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

/// What came of an agent's channel to `address` (over `transport`) after it sent `register`:
/// the first message's kind, the error as the agent classifies it, or its silence.
pub async fn exchange(
    transport: &fleet_core::transport::Transport,
    address: std::net::SocketAddr,
    register: &fleet_core::wire::Message,
) -> String {
    use futures::{SinkExt, StreamExt};
    let ends = fleet_node::transport::Ends {
        agent: "agent-1",
        master: "master-1",
        session: "1",
    };
    let connect = fleet_node::transport::connect(transport, address, &ends);
    let mut channel = match tokio::time::timeout(Duration::from_secs(2), connect).await {
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

/// An intruding agent's own messages, well formed: what the manglings start from.
pub struct AgentMessages {
    pub register: fleet_core::wire::Message,
    pub heartbeat: fleet_core::wire::Message,
    pub result: fleet_core::wire::Message,
    pub pull: fleet_core::wire::Message,
    pub ack: fleet_core::wire::Message,
    pub unregister: fleet_core::wire::Message,
}

pub fn agent_messages() -> AgentMessages {
    use fleet_core::command::{CommandResult, NodeStatus, Outcome};
    use fleet_core::wire::{ConfigAck, ConfigId, ConfigPull, Heartbeat, Message, Unregister};
    AgentMessages {
        register: Message::Register(Box::new(registration(
            "intruder",
            "fuzz",
            1,
            0,
            String::new(),
        ))),
        heartbeat: Message::Heartbeat(Heartbeat {
            seq: 7,
            status: NodeStatus::Online,
            uptime_ms: 1,
            metrics: Default::default(),
        }),
        result: Message::CommandResult(CommandResult {
            request_id: "r-1".into(),
            outcome: Outcome::UnknownCommand,
            output: String::new(),
            duration_ms: 1,
        }),
        pull: Message::ConfigPull(ConfigPull {
            have: ConfigId::default(),
        }),
        ack: Message::ConfigAck(ConfigAck {
            id: ConfigId::default(),
        }),
        unregister: Message::Unregister(Unregister {
            reason: "fuzz".into(),
        }),
    }
}

/// Sends each of the [`INPUTS`] inputs made from `bases` with `send`, [`WORKERS`] at a time,
/// and counts what each came to.
pub async fn flood<F, Fut, K>(
    bases: Vec<Vec<u8>>,
    junk: &'static [&'static [u8]],
    seed: u64,
    send: F,
) -> std::collections::BTreeMap<K, usize>
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = K> + Send,
    K: Ord + Send + 'static,
{
    let bases = Arc::new(bases);
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (bases, next, outcomes) = (bases.clone(), next.clone(), outcomes.clone());
            let send = send.clone();
            tokio::spawn(async move {
                while let Some(input) = hostile(&bases, junk, seed, &next) {
                    let outcome = send(input).await;
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert_eq!(outcomes.values().sum::<usize>(), INPUTS);
    outcomes
}

/// Sends `input` on a connection of its own, half-closes it, and reads until the master ends
/// it: whether the master wrote anything back.
pub async fn hang_up(address: std::net::SocketAddr, input: &[u8]) -> &'static str {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
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

/// Opens agent channels over `transport` to a master at `address` that answers each with the
/// next of `answers`, until none is left, and counts what came of each
/// (see [`exchange`]).
pub async fn drain(
    answers: Arc<std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>>,
    transport: &fleet_core::transport::Transport,
    address: std::net::SocketAddr,
) -> std::collections::BTreeMap<String, usize> {
    let register = fleet_core::wire::Message::Register(Box::new(registration(
        "agent-1",
        "fuzz",
        1,
        0,
        String::new(),
    )));
    let outcomes = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (answers, outcomes) = (answers.clone(), outcomes.clone());
            let (transport, register) = (transport.clone(), register.clone());
            tokio::spawn(async move {
                while !answers.lock().unwrap().is_empty() {
                    let outcome = exchange(&transport, address, &register).await;
                    *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(answers.lock().unwrap().is_empty(), "every answer was read");
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes
}
