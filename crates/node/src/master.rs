//! The master's shell: accepts agent connections and runs the registry core over them.
//!
//! One task per session reads frames and applies them to the shared registry; one task runs
//! the liveness sweeps. Actions for the session at hand are sent inline. Actions for another
//! session (closing a superseded one, or all of them when the master stops leading; a command
//! submitted from outside) go through that session's signal: a close flag and a small mailbox,
//! checked with two atomic loads, so the heartbeat path stays as cheap as a bare flag.

use crate::buggify::{self, Point};
use crate::clock::{now, sleep_until};
use crate::disk::{Disk, LEDGER};
use crate::report::{emit, emit_from};
use crate::sync::lock;
use crate::transport::{Acceptor, BoxChannel};
use fleet_core::cluster::Snapshot;
use fleet_core::master::{
    Leadership, MasterAction, MasterConfig, Registry, SessionId, SubmitError,
};
use fleet_core::timeline::ShellEvent;
use fleet_core::wire::ConfigId;
use fleet_core::wire::Message;
use futures::task::AtomicWaker;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::{watch, Notify};

/// Reaches one session task from outside it: close it, or hand it messages to send. Cheap to
/// poll on every frame: two atomic flags and a waker.
#[derive(Default)]
struct SessionSignal {
    closed: AtomicBool,
    has_mail: AtomicBool,
    mail: Mutex<Vec<Message>>,
    waker: AtomicWaker,
}

enum Wake {
    Closed,
    Mail,
}

impl SessionSignal {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn post(&self, message: Message) {
        lock(&self.mail).push(message);
        self.has_mail.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn take_mail(&self) -> Vec<Message> {
        self.has_mail.store(false, Ordering::Release);
        std::mem::take(&mut *lock(&self.mail))
    }

    /// Resolves once the session has mail or must close.
    async fn wake(&self) -> Wake {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            // Mail first: a goodbye posted just before the close goes out before it.
            if self.has_mail.load(Ordering::Acquire) {
                Poll::Ready(Wake::Mail)
            } else if self.closed.load(Ordering::Acquire) {
                Poll::Ready(Wake::Closed)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

struct Shared {
    registry: Registry,
    sessions: BTreeMap<SessionId, Arc<SessionSignal>>,
    /// Told when the registry has something to propose, so the cluster loop replicates it
    /// at once.
    changed: Arc<Notify>,
    /// A cluster loop drives this master (see [`MasterState::replicate`]).
    clustered: bool,
    /// Asked to shut down; the cluster loop hands over first.
    shutdown: bool,
    /// When this master's leadership lapses unless its cluster core renews it (see
    /// [`Membership::leading_until`](fleet_core::cluster::Membership::leading_until)).
    leading_until: Option<Instant>,
    /// Heartbeats received, for an operator's metrics.
    heartbeats: u64,
}

impl Shared {
    /// The time, after stepping down if this master's leadership lapsed: a master that wakes
    /// from a pause past its lease (or its quorum) learns so before it acts as leader, whichever
    /// of its tasks runs first.
    fn now_leading_checked(&mut self) -> Instant {
        let now = now();
        let lapsed = self.leading_until.filter(|&until| now >= until);
        if let (Some(until), Leadership::Leader) = (lapsed, self.registry.leadership()) {
            emit(ShellEvent::LeadershipLapsed {
                overdue_ms: now.duration_since(until).as_millis() as u64,
            });
            self.leading_until = None;
            let leaderless = Leadership::Follower { leader: None };
            self.registry.handle_leadership(now, leaderless);
            self.dispatch(None, &mut Vec::new());
        }
        now
    }

    /// Wakes the cluster loop when the commands or config changed.
    fn persist(&mut self) {
        if self.registry.proposal_waiting() {
            self.changed.notify_one();
        }
    }

    /// Routes every pending action; appends those addressed to `me` to `mine`, in order.
    fn dispatch(&mut self, me: Option<SessionId>, mine: &mut Vec<MasterAction>) {
        emit_from(|| self.registry.poll_event());
        self.persist();
        while let Some(action) = self.registry.poll_action() {
            let session = match &action {
                MasterAction::Send { session, .. } | MasterAction::Close { session, .. } => {
                    *session
                }
            };
            if Some(session) == me {
                mine.push(action);
            } else if let Some(signal) = self.sessions.get(&session) {
                // A session that already ended has nothing left to send or close.
                match action {
                    MasterAction::Send { message, .. } => signal.post(message),
                    MasterAction::Close { .. } => signal.close(),
                }
            }
        }
    }
}

/// A running master's registry, shared with whoever wants to look at it (tests, status).
#[derive(Clone)]
pub struct MasterState(Arc<Mutex<Shared>>);

impl MasterState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock already failed the run; the registry is still usable.
        lock(&self.0)
    }

    /// Tells the registry whether this master leads, and until when unless renewed (`None`:
    /// no bound); sessions it must close are closed.
    pub fn set_leadership(&self, leadership: Leadership, until: Option<Instant>) {
        let mut shared = self.lock();
        shared.leading_until = until;
        let now = shared.now_leading_checked();
        // A core that has not yet noticed its lease ran out does not lead again.
        let leadership = match until {
            Some(until) if now >= until => Leadership::Follower { leader: None },
            _ => leadership,
        };
        if *shared.registry.leadership() != leadership {
            shared.registry.handle_leadership(now, leadership);
            shared.dispatch(None, &mut Vec::new());
        }
    }

    /// Tells the registry the cluster's term (a raft term, a lease's fencing token): the
    /// configs it pushes carry it.
    pub fn observe_term(&self, term: u64) {
        self.lock().registry.observe_term(term);
    }

    /// Reads the registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.lock().registry)
    }

    /// Takes a command for `agent` (the leader only) and returns its request id; it is
    /// accepted, and sent, once the cluster commits it ([`is_accepted`](Self::is_accepted)).
    /// A `key` this master already holds returns that command's id instead of a new one.
    pub fn submit(
        &self,
        key: Option<&str>,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<String, SubmitError> {
        let mut shared = self.lock();
        shared.now_leading_checked();
        let request_id = (shared.registry).submit_once(key, agent, name, args, timeout)?;
        shared.dispatch(None, &mut Vec::new());
        Ok(request_id)
    }

    /// Whether this master leads and the cluster committed command `request_id`.
    pub fn is_accepted(&self, request_id: &str) -> bool {
        self.lock().registry.is_accepted(request_id)
    }

    /// Raises the config to a new version (the leader only), pushed once the cluster commits
    /// it ([`config_accepted`](Self::config_accepted)); returns its id.
    pub fn push_config(&self, values: BTreeMap<String, String>) -> Result<ConfigId, SubmitError> {
        let mut shared = self.lock();
        shared.now_leading_checked();
        let id = shared.registry.push_config(values)?;
        shared.dispatch(None, &mut Vec::new());
        Ok(id)
    }

    /// What became of config `id` this master pushed (see [`Registry::config_accepted`]).
    pub fn config_accepted(&self, id: ConfigId) -> Option<bool> {
        self.lock().registry.config_accepted(id)
    }

    /// How many heartbeats this master received since it started.
    pub fn heartbeats(&self) -> u64 {
        self.lock().heartbeats
    }

    /// Whether `other` is this same master process (not a later incarnation of it).
    pub fn is(&self, other: &MasterState) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Resolves after the commands or config changed (at once if they did since last asked).
    pub fn changed(&self) -> Arc<Notify> {
        self.lock().changed.clone()
    }

    /// From now on a cluster commits what this master changes (see [`Registry::replicate`]).
    pub fn replicate(&self) {
        let mut shared = self.lock();
        shared.registry.replicate();
        shared.clustered = true;
    }

    /// A graceful shutdown: goodbyes to every agent, and no one admitted from now on. In a
    /// cluster the cluster loop first hands leadership over, so the goodbyes can name the
    /// successor ([`say_goodbye`](Self::say_goodbye)).
    pub fn shutdown(&self) {
        let mut shared = self.lock();
        // A cluster loop that has not started yet finds it when it does, and leaves at once.
        shared.shutdown = true;
        shared.changed.notify_one();
        if !shared.clustered {
            shared.registry.shutdown(now(), None);
            shared.dispatch(None, &mut Vec::new());
        }
    }

    /// Whether a shutdown was asked for since the last call.
    pub fn take_shutdown(&self) -> bool {
        std::mem::take(&mut self.lock().shutdown)
    }

    /// Says goodbye to every agent, naming `successor`, and admits no one from now on.
    pub fn say_goodbye(&self, successor: Option<&str>) {
        let mut shared = self.lock();
        shared.registry.shutdown(now(), successor);
        shared.dispatch(None, &mut Vec::new());
    }

    /// The commands and config to propose, at the index it returns, if they changed.
    pub fn take_proposal(&self) -> Option<(u64, Vec<u8>)> {
        self.lock().registry.take_proposal()
    }

    /// Takes the state the leader replicated.
    pub fn install(&self, snapshot: &Snapshot) {
        let mut shared = self.lock();
        let index = snapshot.version.index;
        if let Err(error) = shared.registry.install(index, &snapshot.state) {
            emit(ShellEvent::BadRecord {
                record: LEDGER.to_string(),
                error,
            });
        }
    }

    /// The cluster committed through `committed`: what became accepted goes out.
    pub fn handle_commit(&self, committed: Option<u64>) {
        let mut shared = self.lock();
        shared.registry.handle_commit(committed);
        shared.dispatch(None, &mut Vec::new());
    }

    /// Changes the registry through `f` and sends what it produced (goodbyes, closes):
    /// credentials, admin operations, shutdown.
    /// Returns what `f` returned.
    pub fn operate<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut shared = self.lock();
        let answer = f(&mut shared.registry);
        shared.dispatch(None, &mut Vec::new());
        answer
    }
}

impl MasterState {
    /// A master that leads until told otherwise (see [`set_leadership`](Self::set_leadership)),
    /// and keeps nothing on disk.
    pub fn new(config: MasterConfig) -> MasterState {
        MasterState::open(config, None, None)
    }

    /// A master that takes back the commands and config an earlier incarnation left in the
    /// [`LEDGER`] record of `disk`. An unreadable record is left alone and the master starts
    /// empty. `boot` names this start (the simulator passes the incarnation; a deployment would
    /// pass a random id): a master that finds no record names its commands `{name}.{boot}-N`,
    /// so a master that lost its disk never reuses an id an agent still remembers. `None` (a
    /// first start) names them `{name}-N`.
    pub fn open(config: MasterConfig, disk: Option<Disk>, boot: Option<&str>) -> MasterState {
        let name = config.name.clone();
        let mut registry = Registry::new(config);
        let saved = disk.as_ref().and_then(|disk| disk.read(LEDGER));
        let restored = saved
            .and_then(|bytes| Snapshot::from_record(&bytes))
            .map(|snapshot| registry.install(snapshot.version.index, &snapshot.state));
        if !matches!(restored, Some(Ok(()))) {
            if let Some(boot) = boot {
                registry.name_commands(&format!("{name}.{boot}"));
            }
        }
        MasterState(Arc::new(Mutex::new(Shared {
            registry,
            sessions: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            clustered: false,
            shutdown: false,
            leading_until: None,
            heartbeats: 0,
        })))
    }
}

/// Serves the agents `acceptor` brings with `state` until this future is dropped (or the
/// simulated node ends): every task it started ends with it.
pub async fn run_master(mut acceptor: Acceptor, state: MasterState) -> io::Result<()> {
    let fallback_sweep = state.with_registry(|registry| registry.config().heartbeat_interval);
    let (_alive, master_alive) = watch::channel(());
    crate::task::spawn(until_closed(
        master_alive.clone(),
        sweep_liveness(state.clone(), fallback_sweep),
    ));
    let _sessions = CloseSessionsOnDrop(state.clone());
    let mut next_session: SessionId = 0;
    loop {
        let channel = acceptor.accept().await?;
        next_session += 1;
        let signal = Arc::new(SessionSignal::default());
        state.lock().sessions.insert(next_session, signal.clone());
        crate::task::spawn(serve_session(state.clone(), next_session, channel, signal));
    }
}

/// Closes every session when the master's future ends or is dropped.
struct CloseSessionsOnDrop(MasterState);

impl Drop for CloseSessionsOnDrop {
    fn drop(&mut self) {
        for signal in self.0.lock().sessions.values() {
            signal.close();
        }
    }
}

/// Runs `task` until it ends or the master's `alive` channel closes.
async fn until_closed(mut alive: watch::Receiver<()>, task: impl std::future::Future<Output = ()>) {
    crate::select_in_order! {
        _ = task => {}
        _ = alive.changed() => {}
    }
}

async fn sweep_liveness(state: MasterState, fallback: std::time::Duration) {
    loop {
        // With nothing to watch, look again after one interval: a registration in between
        // sets a deadline at least that far away.
        let deadline = state
            .lock()
            .registry
            .poll_timeout()
            .unwrap_or_else(|| now() + fallback);
        sleep_until(Some(deadline)).await;
        let mut shared = state.lock();
        let now = shared.now_leading_checked();
        shared.registry.handle_timeout(now);
        shared.dispatch(None, &mut Vec::new());
    }
}

async fn serve_session(
    state: MasterState,
    session: SessionId,
    mut channel: BoxChannel,
    signal: Arc<SessionSignal>,
) {
    // Reused for every frame: a heartbeat's reply costs no allocation.
    let mut actions = Vec::new();
    // The last frame sent was one the agent must read before the connection goes (a refusal,
    // a redirect, a goodbye): closing at once could reach it first.
    let mut final_words = false;
    'session: loop {
        crate::select_in_order! {
            frame = channel.next() => match frame {
                Some(Ok(message)) => {
                    let mut shared = state.lock();
                    let now = shared.now_leading_checked();
                    match message {
                        Message::Register(info) if buggify::fires(Point::SpuriousBusy).is_some() => {
                            shared.registry.refuse_busy(now, session, &info);
                        }
                        message => {
                            shared.heartbeats += u64::from(matches!(message, Message::Heartbeat(_)));
                            shared.registry.handle_message(now, session, message)
                        }
                    }
                    shared.dispatch(Some(session), &mut actions);
                }
                Some(Err(error)) => {
                    emit(ShellEvent::BadFrame {
                        session,
                        error: error.to_string(),
                    });
                    break 'session;
                }
                None => break 'session,
            },
            wake = signal.wake() => match wake {
                Wake::Closed => break 'session,
                Wake::Mail => actions.extend(signal.take_mail().into_iter().map(|message| {
                    MasterAction::Send { session, message }
                })),
            },
        }
        for action in actions.drain(..) {
            match action {
                MasterAction::Send { message, .. } => {
                    final_words = matches!(&message, Message::Goodbye(_) | Message::Redirect(_))
                        || matches!(&message, Message::RegisterAck(ack) if !ack.accepted());
                    if send(&mut channel, message).await.is_err() {
                        break 'session;
                    }
                }
                MasterAction::Close { .. } => break 'session,
            }
        }
    }
    if final_words {
        linger(&mut channel).await;
    }
    let mut shared = state.lock();
    shared.sessions.remove(&session);
    match channel.lost() {
        true => shared.registry.handle_agent_lost(now(), session),
        false => shared.registry.handle_session_closed(now(), session),
    }
    emit_from(|| shared.registry.poll_event());
}

/// How long a master keeps a connection open after its final words, for the agent to read
/// them and hang up.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits for the agent to close the connection (whatever else it sends is not read), or
/// [`LINGER`]: a close sent at once can overtake the frame before it (as a simulated network's
/// independent delays allow), and the agent would see a reset instead of the reason.
async fn linger(channel: &mut BoxChannel) {
    let drain = async { while let Some(Ok(_)) = channel.next().await {} };
    let _ = crate::clock::timeout(LINGER, drain).await;
}

async fn send(channel: &mut BoxChannel, message: Message) -> io::Result<()> {
    channel.send(message).await.map_err(|error| match error {
        crate::codec::CodecError::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    })
}
