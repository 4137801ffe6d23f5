//! The master's shell: accepts agent connections and runs the registry core over them.
//!
//! One task per session reads frames and applies them to the shared registry; one task runs
//! the liveness sweeps. Actions for the session at hand are sent inline; actions for another
//! session (closing a superseded one) go through that session's inbox.

use crate::clock::{now, sleep_until};
use crate::codec::FrameCodec;
use fleet_core::master::{Leadership, MasterAction, MasterConfig, Registry, SessionId};
use fleet_core::timeline::{emit, ShellEvent};
use fleet_core::wire::Message;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

struct Shared {
    registry: Registry,
    inboxes: BTreeMap<SessionId, mpsc::UnboundedSender<MasterAction>>,
}

impl Shared {
    /// Routes every pending action; returns those addressed to `me`, in order.
    fn dispatch(&mut self, me: Option<SessionId>) -> Vec<MasterAction> {
        let mut mine = Vec::new();
        while let Some(action) = self.registry.poll_action() {
            let session = match &action {
                MasterAction::Send { session, .. } | MasterAction::Close { session, .. } => {
                    *session
                }
            };
            if Some(session) == me {
                mine.push(action);
            } else if let Some(inbox) = self.inboxes.get(&session) {
                // A session that already ended has nothing left to close.
                let _ = inbox.send(action);
            }
        }
        mine
    }
}

/// A running master's registry, shared with whoever wants to look at it (tests, status).
#[derive(Clone)]
pub struct MasterState(Arc<Mutex<Shared>>);

impl MasterState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock already failed the run; the registry is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the registry whether this master leads; sessions it must close are closed.
    pub fn set_leadership(&self, leadership: Leadership) {
        let mut shared = self.lock();
        if *shared.registry.leadership() != leadership {
            shared.registry.handle_leadership(leadership);
            shared.dispatch(None);
        }
    }

    /// Reads the registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.lock().registry)
    }
}

impl MasterState {
    /// A master that leads until told otherwise (see [`set_leadership`](Self::set_leadership)).
    pub fn new(config: MasterConfig) -> MasterState {
        MasterState(Arc::new(Mutex::new(Shared {
            registry: Registry::new(config),
            inboxes: BTreeMap::new(),
        })))
    }
}

/// Serves agents on `listener` with `state` until this future is dropped (or the simulated node
/// ends): every task it started ends with it.
pub async fn run_master(listener: TcpListener, state: MasterState) -> io::Result<()> {
    let fallback_sweep = state.with_registry(|registry| registry.config().heartbeat_interval);
    let (_alive, master_alive) = watch::channel(());
    tokio::spawn(until_closed(
        master_alive.clone(),
        sweep_liveness(state.clone(), fallback_sweep),
    ));
    let mut next_session: SessionId = 0;
    loop {
        let (stream, _) = listener.accept().await?;
        next_session += 1;
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        state.lock().inboxes.insert(next_session, inbox_tx);
        tokio::spawn(until_closed(
            master_alive.clone(),
            serve_session(state.clone(), next_session, stream, inbox_rx),
        ));
    }
}

/// Runs `task` until it ends or the master's `alive` channel closes.
async fn until_closed(mut alive: watch::Receiver<()>, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        // Fixed branch order: an unbiased select! draws from an OS-seeded RNG.
        biased;
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
        shared.registry.handle_timeout(now());
        shared.dispatch(None);
    }
}

async fn serve_session(
    state: MasterState,
    session: SessionId,
    stream: TcpStream,
    mut inbox: mpsc::UnboundedReceiver<MasterAction>,
) {
    let mut framed = Framed::new(stream, FrameCodec::default());
    'session: loop {
        let actions = tokio::select! {
            // Fixed branch order: an unbiased select! draws from an OS-seeded RNG.
            biased;
            frame = framed.next() => match frame {
                Some(Ok(message)) => {
                    let mut shared = state.lock();
                    shared.registry.handle_message(now(), session, message);
                    shared.dispatch(Some(session))
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
            Some(action) = inbox.recv() => vec![action],
        };
        for action in actions {
            match action {
                MasterAction::Send { message, .. } => {
                    if send(&mut framed, message).await.is_err() {
                        break 'session;
                    }
                }
                MasterAction::Close { .. } => break 'session,
            }
        }
    }
    let mut shared = state.lock();
    shared.inboxes.remove(&session);
    shared.registry.handle_session_closed(session);
}

async fn send(framed: &mut Framed<TcpStream, FrameCodec>, message: Message) -> io::Result<()> {
    framed.send(message).await.map_err(|error| match error {
        crate::codec::CodecError::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    })
}
