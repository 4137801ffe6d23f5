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

use crate::clock::{now, Timer};
use crate::codec::{FrameCodec, RespCodec};
use crate::disk::Disk;
use crate::master::MasterState;
use crate::net::{TcpListener, TcpStream};
use fleet_core::cluster::calls::{CallMessage, CallResult, Calls, Function};
use fleet_core::cluster::lease::{LeaseAction, LeaseConfig, LeaseNode};
use fleet_core::cluster::raft::{RaftConfig, RaftMessage, RaftNode};
use fleet_core::cluster::single::SingleNode;
use fleet_core::cluster::{
    dispatch, ClusterEvent, JobTracker, PeriodicTask, PeriodicTracker, Role, Status,
};
use fleet_core::command::Pending;
use fleet_core::master::{Handover, Leadership};
use fleet_core::resp::Value;
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
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
    /// Stable storage that outlives this node's crashes: raft keeps its term and vote there.
    /// `None` forgets them on every restart, which is unsafe and exists to show why.
    pub disk: Option<Disk>,
}

/// The disk record raft's term and vote live in.
const HARD_STATE: &str = "raft/hard_state";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    Raft(RaftMessage),
    Call(CallMessage),
    /// The leader's commands and config, for whichever master leads next.
    Handover(Box<Handover>),
    /// Commands a master gave up leading with that the leader's handover lacks.
    HandBack(Vec<Pending>),
}

/// A handover carries every pending command: peers take larger frames than agents.
const PEER_MAX_FRAME: usize = 4 << 20;

/// A leader hands over at least this often, so a follower that missed one (it did not yet
/// know the leader, or the link was down) catches up.
const HANDOVER_REFRESH: Duration = Duration::from_secs(1);

/// One frame between masters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerFrame {
    pub from: String,
    pub message: PeerMessage,
}

/// How long a master waits for a connection to a peer before giving up on that message.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn leadership(role: Role, leader: Option<&str>) -> Leadership {
    match role {
        Role::Leader => Leadership::Leader,
        _ => Leadership::Follower {
            leader: leader.map(str::to_string),
        },
    }
}

struct Periodic {
    tracker: PeriodicTracker,
    leader_task: Box<dyn FnMut() + Send>,
    follower_task: Box<dyn FnMut(&str) + Send>,
}

/// What a handle asks of the cluster loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Release,
    Close,
}

struct HandleState {
    requests: Vec<Request>,
    status: Option<Status>,
    trackers: Vec<Box<dyn JobTracker + Send>>,
    periodic: Vec<Periodic>,
    calls: Calls,
    next_trace: u64,
}

/// A master's view of, and hooks into, its cluster. Cheap to clone; every clone is the same.
#[derive(Clone)]
pub struct ClusterHandle {
    me: String,
    state: Arc<Mutex<HandleState>>,
    /// Wakes the cluster loop: a call was queued, or a periodic task was added.
    wake: Arc<Notify>,
    /// Wakes callers: a call finished.
    finished: Arc<Notify>,
}

impl ClusterHandle {
    pub fn new(me: &str) -> ClusterHandle {
        ClusterHandle {
            me: me.to_string(),
            state: Arc::new(Mutex::new(HandleState {
                requests: Vec::new(),
                status: None,
                trackers: Vec::new(),
                periodic: Vec::new(),
                calls: Calls::new(me),
                next_trace: 0,
            })),
            wake: Arc::new(Notify::new()),
            finished: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HandleState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What this node knows of the cluster now; `None` until the cluster loop has started.
    pub fn status(&self) -> Option<Status> {
        self.lock().status.clone()
    }

    /// Gives up leadership on purpose, if this node leads, so another can take over.
    pub fn release(&self) {
        self.lock().requests.push(Request::Release);
        self.wake.notify_one();
    }

    /// Leaves the cluster: no more elections or lease requests; the cluster loop ends.
    pub fn close(&self) {
        self.lock().requests.push(Request::Close);
        self.wake.notify_one();
    }

    /// Calls `tracker` back on every leadership change from now on.
    pub fn add_job_tracker(&self, tracker: Box<dyn JobTracker + Send>) {
        self.lock().trackers.push(tracker);
    }

    /// Removes the trackers named `name`; returns how many.
    pub fn remove_job_tracker(&self, name: &str) -> usize {
        let mut state = self.lock();
        let before = state.trackers.len();
        state.trackers.retain(|tracker| tracker.name() != name);
        before - state.trackers.len()
    }

    /// Every `interval`, runs `leader_task` while this node leads, or `follower_task` with the
    /// leader's name while it follows one (MasterCall / SlaverCall).
    pub fn add_periodic(
        &self,
        interval: Duration,
        leader_task: Box<dyn FnMut() + Send>,
        follower_task: Box<dyn FnMut(&str) + Send>,
    ) {
        self.lock().periodic.push(Periodic {
            tracker: PeriodicTracker::new(interval, now()),
            leader_task,
            follower_task,
        });
        self.wake.notify_one();
    }

    /// Makes `function` callable by other masters under `name`.
    pub fn register_function(&self, name: &str, function: Function) {
        self.lock().calls.register(name, function);
    }

    /// Starts a call and returns its id; [`fetch`](Self::fetch) its result later.
    pub fn call_async(&self, to: &str, function: &str, args: Vec<u8>, timeout: Duration) -> u64 {
        let id = {
            let mut state = self.lock();
            state.next_trace += 1;
            let trace_id = format!("{}#{}", self.me, state.next_trace);
            state
                .calls
                .call(now(), to, function, args, timeout, &trace_id)
        };
        self.wake.notify_one();
        id
    }

    /// The result of call `id`, once it has one (handed out once).
    pub fn fetch(&self, id: u64) -> Option<CallResult> {
        self.lock().calls.take_result(id)
    }

    /// Calls `function` on `to` and waits for its result, at most `timeout`.
    pub async fn call(
        &self,
        to: &str,
        function: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> CallResult {
        let id = self.call_async(to, function, args, timeout);
        loop {
            let finished = self.finished.notified();
            if let Some(result) = self.fetch(id) {
                return result;
            }
            finished.await;
        }
    }
}

/// The membership core of each mode, behind one face.
enum Membership<R> {
    Single(SingleNode),
    Raft(RaftNode<R>),
    Lease(LeaseNode),
}

impl<R: RngCore> Membership<R> {
    fn release(&mut self, now: Instant) {
        match self {
            // A single node has nobody to hand over to.
            Membership::Single(_) => {}
            Membership::Raft(node) => node.release(now),
            Membership::Lease(node) => node.release(now),
        }
    }

    fn close(&mut self) {
        match self {
            Membership::Single(node) => node.close(),
            Membership::Raft(node) => node.close(),
            Membership::Lease(node) => node.close(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Membership::Single(_) => {}
            Membership::Raft(node) => node.handle_timeout(now),
            Membership::Lease(node) => node.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Membership::Single(_) => None,
            Membership::Raft(node) => node.poll_timeout(),
            Membership::Lease(node) => node.poll_timeout(),
        }
    }

    fn poll_event(&mut self) -> Option<ClusterEvent> {
        match self {
            Membership::Single(node) => node.poll_event(),
            Membership::Raft(node) => node.poll_event(),
            Membership::Lease(node) => node.poll_event(),
        }
    }

    fn role(&self) -> Role {
        match self {
            Membership::Single(node) => node.role(),
            Membership::Raft(node) => node.role(),
            Membership::Lease(node) => node.role(),
        }
    }

    fn leader(&self) -> Option<&str> {
        match self {
            Membership::Single(node) => node.leader(),
            Membership::Raft(node) => node.leader(),
            Membership::Lease(node) => node.leader(),
        }
    }

    fn term(&self) -> u64 {
        match self {
            Membership::Single(node) => node.term(),
            Membership::Raft(node) => node.term(),
            Membership::Lease(node) => node.term(),
        }
    }

    fn status(&self, me: &str, members: Vec<String>, now: Instant) -> Status {
        // Raft hears from its peers; the other modes only know themselves and the leader.
        let alive = match self {
            Membership::Raft(node) => node.alive(now),
            _ => {
                let mut alive = vec![me.to_string()];
                alive.extend(self.leader().map(str::to_string));
                alive.sort();
                alive.dedup();
                alive
            }
        };
        Status {
            me: me.to_string(),
            role: self.role(),
            term: self.term(),
            leader: self.leader().map(str::to_string),
            members,
            alive,
            closed: false,
        }
    }
}

type StoreConnection = Framed<TcpStream, RespCodec>;

/// The lease store connection and the requests waiting on it.
struct StoreLink {
    address: SocketAddr,
    connect_timeout: Duration,
    connection: Option<StoreConnection>,
    /// Ids of the requests sent on `connection`, oldest first: replies come back in order.
    in_flight: VecDeque<u64>,
}

impl StoreLink {
    fn fail_all(&mut self, node: &mut LeaseNode, why: &str) {
        self.connection = None;
        for id in self.in_flight.drain(..) {
            node.handle_reply(id, Err(why.to_string()));
        }
    }

    async fn apply(&mut self, node: &mut LeaseNode, action: LeaseAction) {
        match action {
            LeaseAction::Reconnect => self.fail_all(node, "store timed out"),
            LeaseAction::Send(request) => {
                if self.connection.is_none() {
                    let connect = TcpStream::connect(self.address);
                    self.connection = tokio::time::timeout(self.connect_timeout, connect)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|stream| Framed::new(stream, RespCodec));
                }
                let sent = match &mut self.connection {
                    Some(framed) => framed.send(request.command).await.is_ok(),
                    None => false,
                };
                if sent {
                    self.in_flight.push_back(request.id);
                } else {
                    self.fail_all(node, "store unreachable");
                    node.handle_reply(request.id, Err("store unreachable".into()));
                }
            }
        }
    }

    /// The next reply; never resolves without a connection.
    async fn next_reply(&mut self) -> Option<io::Result<Value>> {
        match &mut self.connection {
            Some(framed) => framed.next().await,
            None => std::future::pending().await,
        }
    }
}

/// Runs this master's membership until the node ends, keeping `master`'s leadership and
/// `handle` current.
pub async fn run_cluster<R: RngCore>(
    config: ClusterConfig,
    listener: TcpListener,
    rng: R,
    master: MasterState,
    handle: ClusterHandle,
) {
    let members: Vec<String> = config.members.keys().cloned().collect();
    let (membership, store) = start_membership(&config, &members, rng);
    let (inbound_tx, inbound) = mpsc::unbounded_channel::<PeerFrame>();
    let health = PeerHealth::default();
    crate::task::spawn(accept_peers(listener, inbound_tx, health.clone()));
    let (outbound, undelivered) = connect_peers(&config, &health);
    let mut cluster = ClusterLoop {
        disk: config.disk,
        me: config.me,
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
        handed_over: None,
    };
    loop {
        cluster.take_requests();
        let next_periodic = cluster.publish().await;
        if cluster.closed {
            return;
        }
        if !cluster.wait_for_input(next_periodic).await {
            return;
        }
    }
}

/// The membership core of this master's mode, and the store link lease mode needs.
fn start_membership<R: RngCore>(
    config: &ClusterConfig,
    members: &[String],
    rng: R,
) -> (Membership<R>, Option<StoreLink>) {
    match config.mode.clone() {
        ClusterMode::Single => (Membership::Single(SingleNode::new(&config.me)), None),
        ClusterMode::Raft(raft) => {
            let mut node = RaftNode::new(&config.me, members, raft, rng, now());
            let saved = config.disk.as_ref().and_then(|disk| disk.read(HARD_STATE));
            if let Some(state) = saved.and_then(|bytes| serde_json::from_slice(&bytes).ok()) {
                node.restore(state);
            }
            (Membership::Raft(node), None)
        }
        ClusterMode::Lease {
            config: lease,
            store: address,
        } => {
            let store = StoreLink {
                address,
                // Dialing must not hold up the lease's own deadlines for long.
                connect_timeout: (lease.renew_interval / 2).min(PEER_CONNECT_TIMEOUT),
                connection: None,
                in_flight: VecDeque::new(),
            };
            let node = LeaseNode::new(&config.me, lease, now());
            (Membership::Lease(node), Some(store))
        }
    }
}

type Undelivered = mpsc::UnboundedReceiver<(String, PeerFrame)>;

/// One sending task per peer; frames it could not deliver come back on `Undelivered`.
fn connect_peers(
    config: &ClusterConfig,
    health: &PeerHealth,
) -> (
    BTreeMap<String, mpsc::UnboundedSender<PeerFrame>>,
    Undelivered,
) {
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

/// One master's cluster loop: its membership core, its links, and what it tells the master and
/// the handle.
struct ClusterLoop<R> {
    disk: Option<Disk>,
    me: String,
    members: Vec<String>,
    membership: Membership<R>,
    store: Option<StoreLink>,
    outbound: BTreeMap<String, mpsc::UnboundedSender<PeerFrame>>,
    inbound: mpsc::UnboundedReceiver<PeerFrame>,
    undelivered: Undelivered,
    master: MasterState,
    handle: ClusterHandle,
    closed: bool,
    timer: Timer,
    /// The master's handover count and the time of the last handover sent.
    handed_over: Option<(u64, Instant)>,
    /// Wakes the loop when the master's commands or config change, to hand them over.
    master_changed: Arc<Notify>,
}

impl<R: RngCore> ClusterLoop<R> {
    /// Queues `message` for peer `to`; false if there is no such peer.
    fn send(&self, to: &str, message: PeerMessage) -> bool {
        let Some(peer) = self.outbound.get(to) else {
            return false;
        };
        let from = self.me.clone();
        peer.send(PeerFrame { from, message }).is_ok()
    }

    /// Release and close, as the handle asked.
    fn take_requests(&mut self) {
        let requests = std::mem::take(&mut self.handle.lock().requests);
        for request in requests {
            match request {
                Request::Release => self.membership.release(now()),
                Request::Close => {
                    self.membership.close();
                    self.closed = true;
                }
            }
        }
    }

    /// Moves every output on: membership messages and store requests, then calls, events,
    /// status and leadership. Returns when the next periodic task or call is due.
    async fn publish(&mut self) -> Option<Instant> {
        if let Membership::Raft(node) = &mut self.membership {
            // Durable before any vote or candidacy leaves.
            if let (Some(state), Some(disk)) = (node.poll_hard_state(), &self.disk) {
                let bytes = serde_json::to_vec(&state).expect("a hard state serializes");
                disk.write(HARD_STATE, bytes);
            }
            let messages: Vec<_> = std::iter::from_fn(|| node.poll_message()).collect();
            for (to, message) in messages {
                self.send(&to, PeerMessage::Raft(message));
            }
        }
        if let (Membership::Lease(node), Some(link)) = (&mut self.membership, &mut self.store) {
            while let Some(action) = node.poll_action() {
                link.apply(node, action).await;
            }
        }
        let events: Vec<ClusterEvent> =
            std::iter::from_fn(|| self.membership.poll_event()).collect();
        let mut status = self
            .membership
            .status(&self.me, self.members.clone(), now());
        status.closed = self.closed;
        let next_periodic = self.update_handle(events, &status);
        let leadership = leadership(status.role, status.leader.as_deref());
        self.master.observe_term(status.term);
        self.master.set_leadership(leadership);
        self.hand_over();
        next_periodic
    }

    /// A leader sends its commands and config to every peer when it accepted something new,
    /// and at least every [`HANDOVER_REFRESH`].
    fn hand_over(&mut self) {
        let at = now();
        let Some(seq) = self.master.handover_seq() else {
            self.handed_over = None;
            return;
        };
        let due = self
            .handed_over
            .is_none_or(|(sent, when)| sent != seq || at.duration_since(when) >= HANDOVER_REFRESH);
        let Some(handover) = due.then(|| self.master.handover()).flatten() else {
            return;
        };
        self.handed_over = Some((seq, at));
        let message = PeerMessage::Handover(Box::new(handover));
        for peer in self.outbound.keys() {
            self.send(peer, message.clone());
        }
    }

    /// Sends queued calls, tells the trackers what happened, runs due periodic tasks and
    /// publishes `status`. Returns when the handle next needs the loop.
    fn update_handle(&self, events: Vec<ClusterEvent>, status: &Status) -> Option<Instant> {
        let mut state = self.handle.lock();
        let mut finished_calls = false;
        while let Some((to, message)) = state.calls.poll_message() {
            if !self.send(&to, PeerMessage::Call(message.clone())) {
                state.calls.handle_undeliverable(&to, &message);
                finished_calls = true;
            }
        }
        if finished_calls {
            self.handle.finished.notify_waiters();
        }
        let leader = status.leader.as_deref();
        for event in events {
            for tracker in &mut state.trackers {
                dispatch(tracker.as_mut(), event, leader);
            }
        }
        let at = now();
        for job in &mut state.periodic {
            match job.tracker.poll_due(at, status.role, leader) {
                Some(PeriodicTask::Leader) => (job.leader_task)(),
                Some(PeriodicTask::Follower { leader }) => (job.follower_task)(&leader),
                None => {}
            }
        }
        state.status = Some(status.clone());
        let periodic = state.periodic.iter().map(|job| job.tracker.poll_timeout());
        periodic.chain(state.calls.poll_timeout()).min()
    }

    /// Waits for the next input and applies it; false once the inbound channel closed.
    async fn wait_for_input(&mut self, next_periodic: Option<Instant>) -> bool {
        let deadline = [self.membership.poll_timeout(), next_periodic]
            .into_iter()
            .flatten()
            .min();
        self.timer.set(deadline);
        let master_changed = self.master_changed.clone();
        let store = &mut self.store;
        let store_reply = async {
            match store {
                Some(link) => link.next_reply().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Fixed branch order: an unbiased select! draws from an OS-seeded RNG.
            biased;
            frame = self.inbound.recv() => match frame {
                Some(frame) => self.handle_frame(frame),
                None => return false,
            },
            Some((to, frame)) = self.undelivered.recv() => {
                if let PeerMessage::Call(message) = frame.message {
                    self.handle.lock().calls.handle_undeliverable(&to, &message);
                    self.handle.finished.notify_waiters();
                }
            },
            reply = store_reply => self.handle_store_reply(reply),
            _ = self.handle.wake.notified() => {},
            _ = master_changed.notified() => {},
            _ = self.timer.expired() => {
                let at = now();
                self.membership.handle_timeout(at);
                self.handle.lock().calls.handle_timeout(at);
                self.handle.finished.notify_waiters();
            },
        }
        true
    }

    fn handle_frame(&mut self, PeerFrame { from, message }: PeerFrame) {
        match message {
            PeerMessage::Raft(message) => {
                if let Membership::Raft(node) = &mut self.membership {
                    node.handle_message(now(), &from, message);
                }
            }
            PeerMessage::Handover(handover) => {
                let returned = self.master.take_handover(&from, *handover);
                if !returned.is_empty() {
                    self.send(&from, PeerMessage::HandBack(returned));
                }
            }
            PeerMessage::HandBack(returned) => self.master.take_hand_back(&from, returned),
            PeerMessage::Call(message) => {
                self.handle.lock().calls.handle_message(&from, message);
                self.handle.finished.notify_waiters();
            }
        }
    }

    fn handle_store_reply(&mut self, reply: Option<io::Result<Value>>) {
        let (Membership::Lease(node), Some(link)) = (&mut self.membership, &mut self.store) else {
            return;
        };
        match reply {
            Some(Ok(value)) => {
                if let Some(id) = link.in_flight.pop_front() {
                    node.handle_reply(id, Ok(value));
                }
            }
            Some(Err(_)) | None => link.fail_all(node, "store connection lost"),
        }
    }
}

/// When each peer was last heard from: the receiving side records it, the sending side reads it
/// to tell a stalled connection from a live one.
#[derive(Clone, Default)]
struct PeerHealth(Arc<Mutex<BTreeMap<String, Instant>>>);

impl PeerHealth {
    fn heard(&self, peer: &str, at: Instant) {
        let mut heard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        heard.insert(peer.to_string(), at);
    }

    fn last_heard(&self, peer: &str) -> Option<Instant> {
        let heard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        heard.get(peer).copied()
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

async fn accept_peers(
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
            connection = tokio::time::timeout(PEER_CONNECT_TIMEOUT, dial)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|stream| Framed::new(stream, FrameCodec::with_max(PEER_MAX_FRAME)));
            dialed_at = Some(at);
        }
        let delivered = match &mut connection {
            Some(framed) => framed.send(frame.clone()).await.is_ok(),
            None => false,
        };
        if !delivered {
            connection = None;
            let _ = undelivered.send((link.peer.clone(), frame));
        }
    }
}
