//! The HTTP transport's sessions, against a real master on loopback: who gets a session token,
//! what it opens, and how a session ends.
//!
//! Native build only (`cargo native test -p fleet-node`).
#![cfg(not(madsim))]

use fleet_core::master::{Leadership, MasterConfig};
use fleet_core::transport::{HttpTransport, Transport};
use fleet_core::wire::Message;
use fleet_node::net::TcpListener;
use fleet_node::transport::{self, Acceptor, Ends, Serve};

const ENDS: Ends<'static> = Ends {
    agent: "agent-1",
    master: "master-1",
    session: "1",
};
use fleet_node::{registration, run_master, MasterState};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn http() -> Transport {
    Transport::Http(HttpTransport {
        poll: Duration::from_millis(300),
    })
}

async fn master(leadership: Option<Leadership>) -> (MasterState, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let state = MasterState::new(MasterConfig {
        name: "master-1".into(),
        ..MasterConfig::default()
    });
    if let Some(leadership) = leadership {
        state.set_leadership(leadership, None);
    }
    tokio::spawn(run_master(
        Acceptor::new(&http(), Serve::Listen { listener, seed: 7 }),
        state.clone(),
    ));
    (state, address)
}

/// One raw request, on a connection of its own (its head ends in `connection: close`): the
/// status and the `fleet-session` header. It does not half-close: a master takes that for an
/// agent hanging up.
async fn raw(address: SocketAddr, request: String) -> (u16, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = request.replacen("\r\n", "\r\nconnection: close\r\n", 1);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let session = (answer.lines())
        .find_map(|line| line.strip_prefix("fleet-session: "))
        .map(str::to_string);
    (status, session)
}

async fn register(address: SocketAddr, agent: &str) -> (u16, Option<String>) {
    let message = Message::Register(Box::new(registration(agent, "t", 1, 0, String::new())));
    let body = serde_json::to_string(&message).unwrap();
    let request = format!(
        "POST /api/master/nodes/register HTTP/1.1\r\nhost: m\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(address, request).await
}

#[tokio::test]
async fn only_a_kept_registration_names_a_session_and_no_token_tells_another() {
    let (_, leader) = master(None).await;
    let (status, a) = register(leader, "agent-a").await;
    assert_eq!(status, 200);
    let (_, b) = register(leader, "agent-b").await;
    let (a, b) = (a.expect("agent-a's session"), b.expect("agent-b's session"));
    assert_eq!(a.len(), 32, "128 random bits: {a}");
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b);
    // agent-a's token does not open agent-b's mail.
    let poll = |agent: &str, token: &str| {
        format!(
            "GET /api/master/nodes/{agent}/commands?wait=0 HTTP/1.1\r\nhost: m\r\n\
             fleet-session: {token}\r\n\r\n"
        )
    };
    assert_eq!(raw(leader, poll("agent-b", &a)).await.0, 410);
    assert_eq!(raw(leader, poll("agent-a", &a)).await.0, 200);

    // A follower redirects: the agent has no session there to poll.
    let follower = Leadership::Follower {
        leader: Some("master-2".into()),
    };
    let (_, follower) = master(Some(follower)).await;
    let (status, session) = register(follower, "agent-a").await;
    assert_eq!((status, session), (200, None));
}

#[tokio::test]
async fn an_agent_that_hangs_up_ends_its_session_at_once() {
    let (state, address) = master(None).await;
    let mut channel = transport::connect(&http(), address, &ENDS).await.unwrap();
    let register = registration("agent-1", "t", 1, 0, String::new());
    channel
        .send(Message::Register(Box::new(register)))
        .await
        .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), channel.next()).await;
    assert!(
        matches!(ack, Ok(Some(Ok(Message::RegisterAck(_))))),
        "{ack:?}"
    );
    let session = || {
        state.with_registry(|registry| {
            (registry.nodes())
                .find(|(_, node)| node.info.node_name == "agent-1")
                .and_then(|(_, node)| node.session)
        })
    };
    assert!(session().is_some());
    // Let its long poll reach the master, then hang up, as an agent that closes its link.
    let _ = tokio::time::timeout(Duration::from_millis(100), channel.next()).await;
    drop(channel);
    for _ in 0..100 {
        if session().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the master still holds agent-1's session a second after it hung up");
}
