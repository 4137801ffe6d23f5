//! The agent's shell: runs the connector core over one TCP connection at a time.

use crate::clock::{now, Timer};
use crate::codec::{CodecError, FrameCodec};
use crate::net::TcpStream;
use crate::report::emit_from;
use fleet_core::agent::{AgentAction, Connector, DisconnectReason};
use fleet_core::wire::{BuildInfo, Message, Register};
use futures::task::AtomicWaker;
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use tokio_util::codec::Framed;

/// The registration an agent of this build sends.
/// `token` proves who it is ([`fleet_core::auth::token`]); empty when the cluster does not
/// authenticate.
pub fn registration(
    node_name: &str,
    hostname: &str,
    pid: u32,
    start_time_ms: u64,
    token: String,
) -> Register {
    Register {
        node_name: node_name.to_string(),
        instance_id: fleet_core::wire::instance_id(node_name, hostname, pid),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid,
        start_time_ms,
        capabilities: vec!["heartbeat".to_string()],
        metadata: BTreeMap::new(),
        build: BuildInfo {
            git_sha: option_env!("FLEET_GIT_SHA")
                .unwrap_or("unknown")
                .to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            target: std::env::consts::ARCH.to_string(),
        },
        token,
    }
}

/// Reaches a running agent from outside (an operator, the simulator): asks it to stop
/// gracefully. One atomic flag and a waker, so the agent's loop pays nothing while it is unset.
#[derive(Default)]
pub struct AgentControl {
    stop: AtomicBool,
    waker: AtomicWaker,
}

impl AgentControl {
    /// The agent unregisters, closes its connection and never reconnects.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once [`stop`](Self::stop) was called. Keep one and poll it on every turn: it
    /// registers its task's waker only when that changes, so a turn costs one atomic load.
    async fn stopped(&self) {
        let mut registered: Option<std::task::Waker> = None;
        std::future::poll_fn(move |cx| {
            if !registered
                .as_ref()
                .is_some_and(|known| known.will_wake(cx.waker()))
            {
                self.waker.register(cx.waker());
                registered = Some(cx.waker().clone());
            }
            if self.stop.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum Link {
    Idle,
    Connecting(Connecting),
    Open(Box<Framed<TcpStream, FrameCodec>>),
}

enum LinkEvent {
    Connected(TcpStream),
    ConnectFailed(DisconnectReason),
    Frame(Message),
    Broken(DisconnectReason),
}

impl Link {
    /// The next thing that happens on the link; never resolves while idle. Cancel-safe: the
    /// pending connect lives in `self`, and `Framed::next` keeps partial frames.
    async fn next_event(&mut self) -> LinkEvent {
        match self {
            Link::Idle => std::future::pending().await,
            Link::Connecting(connecting) => match connecting.as_mut().await {
                Ok(stream) => LinkEvent::Connected(stream),
                Err(error) => LinkEvent::ConnectFailed(classify(&error)),
            },
            Link::Open(framed) => match framed.next().await {
                Some(Ok(message)) => LinkEvent::Frame(message),
                Some(Err(CodecError::Wire(_))) => {
                    LinkEvent::Broken(DisconnectReason::ProtocolError)
                }
                Some(Err(CodecError::Io(error))) => LinkEvent::Broken(classify(&error)),
                None => LinkEvent::Broken(DisconnectReason::Closed),
            },
        }
    }
}

/// Why an I/O error broke (or prevented) a connection.
pub fn classify(error: &io::Error) -> DisconnectReason {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => DisconnectReason::Refused,
        io::ErrorKind::TimedOut => DisconnectReason::ConnectTimeout,
        io::ErrorKind::UnexpectedEof => DisconnectReason::Closed,
        io::ErrorKind::InvalidData => DisconnectReason::ProtocolError,
        _ => DisconnectReason::Reset,
    }
}

/// Drives `connector` against `masters` (indexed like its config's master names) until it
/// gives up, a master closes it for good, or `control` stops it.
pub async fn run_agent<R: RngCore>(
    mut connector: Connector<R>,
    masters: Vec<SocketAddr>,
    control: &AgentControl,
) {
    let mut link = Link::Idle;
    let mut timer = Timer::default();
    let stopped = control.stopped();
    tokio::pin!(stopped);
    loop {
        emit_from(|| connector.poll_event());
        while let Some(action) = connector.poll_action() {
            match action {
                AgentAction::Connect { target } => {
                    link = Link::Connecting(Box::pin(TcpStream::connect(masters[target])));
                }
                AgentAction::Send(message) => {
                    if let Link::Open(framed) = &mut link {
                        if let Err(error) = framed.send(message).await {
                            let reason = match error {
                                CodecError::Io(error) => classify(&error),
                                CodecError::Wire(_) => DisconnectReason::ProtocolError,
                            };
                            connector.handle_disconnected(now(), reason);
                            emit_from(|| connector.poll_event());
                        }
                    }
                }
                AgentAction::Close => link = Link::Idle,
            }
        }
        if connector.is_finished() {
            return;
        }
        timer.set(connector.poll_timeout());
        crate::select_in_order! {
            event = link.next_event() => match event {
                LinkEvent::Connected(stream) => {
                    let _ = stream.set_nodelay(true);
                    link = Link::Open(Box::new(Framed::new(stream, FrameCodec::default())));
                    connector.handle_connected(now());
                }
                LinkEvent::ConnectFailed(reason) => {
                    link = Link::Idle;
                    connector.handle_connect_failed(now(), reason);
                }
                LinkEvent::Frame(message) => connector.handle_message(now(), message),
                LinkEvent::Broken(reason) => {
                    link = Link::Idle;
                    connector.handle_disconnected(now(), reason);
                }
            },
            _ = timer.expired() => connector.handle_timeout(now()),
            // A stopped connector is finished: the loop returns before polling this again.
            _ = &mut stopped => connector.disconnect(),
        }
    }
}
