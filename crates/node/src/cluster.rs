//! The cluster's shell: raft messages between masters over their own TCP connections, and the
//! leadership that results fed to the master's registry.
//!
//! Messages between masters are best effort. Each master dials each peer when it has something
//! to send and drops the message if the peer cannot be reached; Raft tolerates loss.

use crate::clock::{now, sleep_until};
use crate::codec::{FrameCodec, RespCodec};
use crate::master::MasterState;
use fleet_core::cluster::lease::{LeaseAction, LeaseConfig, LeaseNode};
use fleet_core::cluster::raft::{RaftConfig, RaftMessage, RaftNode};
use fleet_core::cluster::single::SingleNode;
use fleet_core::cluster::Role;
use fleet_core::master::Leadership;
use fleet_core::resp::Value;
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

#[derive(Clone, Debug)]
pub enum ClusterMode {
    Single,
    Raft(RaftConfig),
    /// The holder of a lease in the store at `store` leads.
    Lease {
        config: LeaseConfig,
        store: SocketAddr,
    },
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub me: String,
    /// Every member's cluster address, this node's included.
    pub members: BTreeMap<String, SocketAddr>,
    pub mode: ClusterMode,
}

/// One frame between masters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerFrame {
    pub from: String,
    pub message: RaftMessage,
}

/// How long a master waits for a connection to a peer before dropping that message.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn leadership(role: Role, leader: Option<&str>) -> Leadership {
    match role {
        Role::Leader => Leadership::Leader,
        _ => Leadership::Follower {
            leader: leader.map(str::to_string),
        },
    }
}

/// Runs this master's membership until the node ends, keeping `master`'s leadership current.
pub async fn run_cluster<R: RngCore>(
    config: ClusterConfig,
    listener: TcpListener,
    rng: R,
    master: MasterState,
) {
    match config.mode.clone() {
        ClusterMode::Single => {
            let node = SingleNode::new(&config.me);
            master.set_leadership(leadership(node.role(), node.leader()));
            std::future::pending::<()>().await;
        }
        ClusterMode::Raft(raft) => run_raft(config, raft, listener, rng, master).await,
        ClusterMode::Lease {
            config: lease,
            store,
        } => run_lease(&config.me, lease, store, master).await,
    }
}

type StoreConnection = Framed<TcpStream, RespCodec>;

/// The next reply on the store connection; never resolves without one.
async fn next_reply(connection: &mut Option<StoreConnection>) -> Option<io::Result<Value>> {
    match connection {
        Some(framed) => framed.next().await,
        None => std::future::pending().await,
    }
}

async fn run_lease(me: &str, lease: LeaseConfig, store: SocketAddr, master: MasterState) {
    // Dialing must not hold up the lease's own deadlines for long.
    let connect_timeout = (lease.renew_interval / 2).min(PEER_CONNECT_TIMEOUT);
    let mut node = LeaseNode::new(me, lease, now());
    let mut connection: Option<StoreConnection> = None;
    // Ids of the requests sent on `connection`, oldest first: replies come back in order.
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let fail_all = |node: &mut LeaseNode, in_flight: &mut VecDeque<u64>, why: &str| {
        for id in in_flight.drain(..) {
            node.handle_reply(id, Err(why.to_string()));
        }
    };
    loop {
        while let Some(action) = node.poll_action() {
            match action {
                LeaseAction::Reconnect => {
                    connection = None;
                    fail_all(&mut node, &mut in_flight, "store timed out");
                }
                LeaseAction::Send(request) => {
                    if connection.is_none() {
                        connection =
                            tokio::time::timeout(connect_timeout, TcpStream::connect(store))
                                .await
                                .ok()
                                .and_then(Result::ok)
                                .map(|stream| Framed::new(stream, RespCodec));
                    }
                    let sent = match &mut connection {
                        Some(framed) => framed.send(request.command).await.is_ok(),
                        None => false,
                    };
                    if sent {
                        in_flight.push_back(request.id);
                    } else {
                        connection = None;
                        fail_all(&mut node, &mut in_flight, "store unreachable");
                        node.handle_reply(request.id, Err("store unreachable".into()));
                    }
                }
            }
        }
        while node.poll_event().is_some() {}
        master.set_leadership(leadership(node.role(), node.leader()));
        tokio::select! {
            reply = next_reply(&mut connection) => match reply {
                Some(Ok(value)) => {
                    if let Some(id) = in_flight.pop_front() {
                        node.handle_reply(id, Ok(value));
                    }
                }
                Some(Err(_)) | None => {
                    connection = None;
                    fail_all(&mut node, &mut in_flight, "store connection lost");
                }
            },
            _ = sleep_until(node.poll_timeout()) => node.handle_timeout(now()),
        }
    }
}

async fn run_raft<R: RngCore>(
    config: ClusterConfig,
    raft: RaftConfig,
    listener: TcpListener,
    rng: R,
    master: MasterState,
) {
    let members: Vec<String> = config.members.keys().cloned().collect();
    let mut node = RaftNode::new(&config.me, &members, raft, rng, now());
    master.set_leadership(leadership(node.role(), node.leader()));

    let (inbound_tx, mut inbound) = mpsc::unbounded_channel::<PeerFrame>();
    tokio::spawn(accept_peers(listener, inbound_tx));
    let mut outbound: BTreeMap<String, mpsc::UnboundedSender<PeerFrame>> = BTreeMap::new();
    for (peer, &address) in &config.members {
        if *peer != config.me {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_to_peer(address, rx));
            outbound.insert(peer.clone(), tx);
        }
    }

    loop {
        while let Some((to, message)) = node.poll_message() {
            if let Some(peer) = outbound.get(&to) {
                let _ = peer.send(PeerFrame {
                    from: config.me.clone(),
                    message,
                });
            }
        }
        while node.poll_event().is_some() {}
        master.set_leadership(leadership(node.role(), node.leader()));
        tokio::select! {
            frame = inbound.recv() => match frame {
                Some(frame) => node.handle_message(now(), &frame.from, frame.message),
                None => return,
            },
            _ = sleep_until(node.poll_timeout()) => node.handle_timeout(now()),
        }
    }
}

async fn accept_peers(listener: TcpListener, inbound: mpsc::UnboundedSender<PeerFrame>) {
    while let Ok((stream, _)) = listener.accept().await {
        let inbound = inbound.clone();
        tokio::spawn(async move {
            let mut framed = Framed::new(stream, FrameCodec::<PeerFrame>::default());
            // A bad frame ends only this connection; the peer redials.
            while let Some(Ok(frame)) = framed.next().await {
                if inbound.send(frame).is_err() {
                    return;
                }
            }
        });
    }
}

async fn send_to_peer(address: SocketAddr, mut outbox: mpsc::UnboundedReceiver<PeerFrame>) {
    let mut connection: Option<Framed<TcpStream, FrameCodec<PeerFrame>>> = None;
    while let Some(frame) = outbox.recv().await {
        if connection.is_none() {
            connection = tokio::time::timeout(PEER_CONNECT_TIMEOUT, TcpStream::connect(address))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|stream| Framed::new(stream, FrameCodec::default()));
        }
        if let Some(framed) = &mut connection {
            if framed.send(frame).await.is_err() {
                connection = None;
            }
        }
    }
}
