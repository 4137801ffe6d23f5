//! The links between masters. Messages are best effort: each master dials a peer when it has
//! something to send, and a message that cannot be delivered is dropped (raft tolerates that)
//! or, for a remote call, reported back as unreachable. A connection to a peer that has been
//! silent for longer than a stall bound is dropped and dialed afresh before the next send: a
//! cut link holds data and retransmits it with doubling backoff, so without a redial a healed
//! partition would stay invisible for seconds.

use super::{ClusterConfig, ClusterMode};
use crate::clock::now;
use crate::codec::FrameCodec;
use crate::net::{TcpListener, TcpStream};
use crate::sync::lock;
use fleet_core::cluster::calls::CallMessage;
use fleet_core::cluster::raft::RaftMessage;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    Raft(RaftMessage),
    Call(CallMessage),
}

/// A heartbeat may carry the replicated state, every pending command in it: peers take
/// larger frames than agents.
const PEER_MAX_FRAME: usize = 4 << 20;

/// One frame between masters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerFrame {
    pub from: String,
    pub message: PeerMessage,
}

/// How long a master waits for a connection to a peer before giving up on that message.
pub(super) const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Frames a peer link could not deliver, with the peer they were for.
pub(super) type Undelivered = mpsc::UnboundedReceiver<(String, PeerFrame)>;

/// Each peer's sending queue.
pub(super) type Outbound = BTreeMap<String, mpsc::UnboundedSender<PeerFrame>>;

/// One sending task per peer; frames it could not deliver come back on `Undelivered`.
pub(super) fn connect_peers(
    config: &ClusterConfig,
    health: &PeerHealth,
) -> (Outbound, Undelivered) {
    let (undelivered_tx, undelivered) = mpsc::unbounded_channel::<(String, PeerFrame)>();
    let mut outbound = BTreeMap::new();
    for (peer, &address) in &config.members {
        if *peer != config.me {
            let (tx, rx) = mpsc::unbounded_channel();
            let undelivered = undelivered_tx.clone();
            let link = PeerLink {
                peer: peer.clone(),
                address,
                health: health.clone(),
                stall_after: stall_after(&config.mode),
            };
            crate::task::spawn(send_to_peer(link, rx, undelivered));
            outbound.insert(peer.clone(), tx);
        }
    }
    (outbound, undelivered)
}

/// When each peer was last heard from: the receiving side records it, the sending side reads it
/// to tell a stalled connection from a live one.
#[derive(Clone, Default)]
pub(super) struct PeerHealth(Arc<Mutex<BTreeMap<String, Instant>>>);

impl PeerHealth {
    fn heard(&self, peer: &str, at: Instant) {
        lock(&self.0).insert(peer.to_string(), at);
    }

    fn last_heard(&self, peer: &str) -> Option<Instant> {
        lock(&self.0).get(peer).copied()
    }
}

/// How long a peer may stay silent before its connection counts as stalled: two raft
/// heartbeats, or the dial timeout in modes whose peers only exchange calls.
fn stall_after(mode: &ClusterMode) -> Duration {
    match mode {
        ClusterMode::Raft(config) => config.heartbeat_interval * 2,
        ClusterMode::Single | ClusterMode::Lease { .. } => PEER_CONNECT_TIMEOUT,
    }
}

pub(super) async fn accept_peers(
    listener: TcpListener,
    inbound: mpsc::UnboundedSender<PeerFrame>,
    health: PeerHealth,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (inbound, health) = (inbound.clone(), health.clone());
        crate::task::spawn(async move {
            let mut framed = Framed::new(stream, FrameCodec::<PeerFrame>::with_max(PEER_MAX_FRAME));
            // A bad frame ends only this connection; the peer redials.
            while let Some(Ok(frame)) = framed.next().await {
                health.heard(&frame.from, now());
                if inbound.send(frame).is_err() {
                    return;
                }
            }
        });
    }
}

/// One peer's outgoing link.
struct PeerLink {
    peer: String,
    address: SocketAddr,
    health: PeerHealth,
    stall_after: Duration,
}

async fn send_to_peer(
    link: PeerLink,
    mut outbox: mpsc::UnboundedReceiver<PeerFrame>,
    undelivered: mpsc::UnboundedSender<(String, PeerFrame)>,
) {
    let mut connection: Option<Framed<TcpStream, FrameCodec<PeerFrame>>> = None;
    let mut dialed_at: Option<Instant> = None;
    while let Some(frame) = outbox.recv().await {
        let at = now();
        if let Some(dialed) = dialed_at.filter(|_| connection.is_some()) {
            // Silent since we last heard the peer, or since we dialed, whichever is later.
            let silent_since = link
                .health
                .last_heard(&link.peer)
                .map_or(dialed, |heard| heard.max(dialed));
            if at.duration_since(silent_since) > link.stall_after {
                connection = None;
            }
        }
        if connection.is_none() {
            let dial = TcpStream::connect(link.address);
            connection = crate::clock::timeout(PEER_CONNECT_TIMEOUT, dial)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|stream| Framed::new(stream, FrameCodec::with_max(PEER_MAX_FRAME)));
            dialed_at = Some(at);
        }
        // A peer that stops reading (its process hangs with the socket open) fills the buffers
        // and the send would wait forever: past the stall bound the connection is given up.
        let delivered = match &mut connection {
            Some(framed) => {
                let send = framed.send(frame.clone());
                matches!(
                    crate::clock::timeout(link.stall_after, send).await,
                    Ok(Ok(()))
                )
            }
            None => false,
        };
        if !delivered {
            connection = None;
            let _ = undelivered.send((link.peer.clone(), frame));
        }
    }
}
