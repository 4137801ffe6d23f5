//! The cluster's shell: one loop per master that runs the membership core (single, raft or
//! lease), moves its messages between masters and to the lease store, feeds the leadership it
//! decides to the master's registry, and serves a [`ClusterHandle`]: status queries, job
//! trackers, periodic tasks and remote calls.
//!
//! Messages between masters are best effort. Each master dials a peer when it has something to
//! send; a message that cannot be delivered is dropped (Raft tolerates that) or, for a remote
//! call, reported back as unreachable. A connection to a peer that has been silent for longer
//! than a stall bound is dropped and dialed afresh before the next send: a cut link holds data
//! and retransmits it with doubling backoff, so without a redial a healed partition would stay
//! invisible for seconds.

mod event_loop;
mod handle;
mod peers;
mod store;

pub use handle::ClusterHandle;
pub use peers::{PeerFrame, PeerMessage};

use crate::clock::{now, Timer};
use crate::disk::{Disk, LEDGER};
use crate::master::MasterState;
use crate::net::TcpListener;
use event_loop::ClusterLoop;
use fleet_core::cluster::lease::{LeaseConfig, LeaseNode};
use fleet_core::cluster::raft::{HardState, RaftConfig, RaftNode};
use fleet_core::cluster::single::SingleNode;
use fleet_core::cluster::{Membership, Snapshot};
use peers::{accept_peers, connect_peers, PeerHealth, PEER_CONNECT_TIMEOUT};
use rand::RngCore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use store::StoreLink;
use tokio::sync::mpsc;

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
    /// Stable storage that outlives this node's crashes: the replicated commands and config,
    /// and raft's term and vote. `None` keeps nothing.
    pub disk: Option<Disk>,
    /// Raft keeps its term and vote on `disk`. `false` forgets them on every restart, which is
    /// unsafe and exists to show why.
    pub save_votes: bool,
    /// Every record written is synced before the node answers, so it survives a power failure.
    /// `false` leaves them in the page cache, which is unsafe and exists to show why.
    pub fsync: bool,
    /// This node's first start: an empty disk is a new member's. On any later start an empty
    /// disk is a lost one, and raft rejoins carefully (see `fleet_core::cluster::raft`).
    pub first_start: bool,
}

/// The disk record raft's term and vote live in.
const HARD_STATE: &str = "raft/hard_state";

/// A first start's records, where there are none yet: no term, no vote, an empty ledger.
/// Synced whatever `fsync` says, as an installer would.
fn write_initial_records(disk: &Disk) {
    if disk.read(HARD_STATE).is_none() {
        let empty = serde_json::to_vec(&HardState::default()).expect("a hard state serializes");
        disk.write(HARD_STATE, empty);
    }
    if disk.read(LEDGER).is_none() {
        disk.write(LEDGER, Snapshot::default().to_record());
    }
    disk.sync();
}

/// Runs this master's membership until the node ends, keeping `master`'s leadership and
/// `handle` current.
pub async fn run_cluster<R: RngCore + Send + 'static>(
    config: ClusterConfig,
    listener: TcpListener,
    rng: R,
    master: MasterState,
    handle: ClusterHandle,
) {
    let members: Vec<String> = config.members.keys().cloned().collect();
    let (membership, store) = start_membership(&config, &members, rng);
    master.replicate();
    let (inbound_tx, inbound) = mpsc::unbounded_channel::<PeerFrame>();
    let health = PeerHealth::default();
    crate::task::spawn(accept_peers(listener, inbound_tx, health.clone()));
    let (outbound, undelivered) = connect_peers(&config, &health);
    let cluster = ClusterLoop {
        disk: config.disk,
        save_votes: config.save_votes,
        fsync: config.fsync,
        members,
        membership,
        store,
        outbound,
        inbound,
        undelivered,
        master_changed: master.changed(),
        master,
        handle,
        closed: false,
        timer: Timer::default(),
    };
    cluster.run().await;
}

/// The membership core of this master's mode, and the store link lease mode needs. The one
/// place that knows the modes apart: everything after it goes through [`Membership`].
fn start_membership<R: RngCore + Send + 'static>(
    config: &ClusterConfig,
    members: &[String],
    mut rng: R,
) -> (Box<dyn Membership>, Option<StoreLink>) {
    let read = |record: &str| config.disk.as_ref().and_then(|disk| disk.read(record));
    let ledger = read(LEDGER).and_then(|bytes| Snapshot::from_record(&bytes));
    match config.mode.clone() {
        ClusterMode::Single => {
            let mut node = SingleNode::new(&config.me);
            node.restore_state(ledger.unwrap_or_default());
            (Box::new(node), None)
        }
        ClusterMode::Raft(raft) => {
            let mut node = RaftNode::new(&config.me, members, raft, rng, now());
            let saved = read(HARD_STATE).filter(|_| config.save_votes);
            let saved = saved.and_then(|bytes| serde_json::from_slice::<HardState>(&bytes).ok());
            let whole = saved.is_some() && ledger.is_some();
            if let Some(state) = saved {
                node.restore(state);
            }
            if let Some(disk) = config.disk.as_ref().filter(|_| config.save_votes) {
                if config.first_start {
                    // Both records from the first start on, so that a later start that finds
                    // either missing knows its disk was lost (wiped while it ran, or since).
                    write_initial_records(disk);
                } else if !whole {
                    node.recover();
                }
            }
            node.restore_state(ledger.unwrap_or_default());
            (Box::new(node), None)
        }
        ClusterMode::Lease {
            config: lease,
            store: address,
        } => {
            // Dialing must not hold up the lease's own deadlines for long.
            let connect_timeout = (lease.renew_interval / 2).min(PEER_CONNECT_TIMEOUT);
            // Each process holds a lease under its own value (see `ACQUIRE_SCRIPT`).
            let node = LeaseNode::new(&config.me, lease, now()).with_process(rng.next_u64());
            (
                Box::new(node),
                Some(StoreLink::new(address, connect_timeout)),
            )
        }
    }
}
