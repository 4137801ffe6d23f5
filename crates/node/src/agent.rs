//! The agent's shell: runs the connector core over one TCP connection at a time.

use crate::clock::{now, Timer};
use crate::codec::CodecError;
use crate::report::emit_from;
use crate::transport::{self, BoxChannel};
use fleet_core::agent::{AgentAction, AgentConfig, Connector, DisconnectReason};
use fleet_core::command::{Command, Outcome};
use fleet_core::transport::Transport;
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
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;

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

type Connecting = Pin<Box<dyn Future<Output = io::Result<BoxChannel>> + Send>>;

enum Link {
    Idle,
    Connecting(Connecting),
    Open(BoxChannel),
}

enum LinkEvent {
    Connected(BoxChannel),
    ConnectFailed(DisconnectReason),
    Frame(Message),
    Broken(DisconnectReason),
}

impl Link {
    /// The next thing that happens on the link; never resolves while idle. Cancel-safe: the
    /// pending connect lives in `self`, and a channel's `next` keeps partial messages.
    async fn next_event(&mut self) -> LinkEvent {
        match self {
            Link::Idle => std::future::pending().await,
            Link::Connecting(connecting) => match connecting.as_mut().await {
                Ok(channel) => LinkEvent::Connected(channel),
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

/// A deployment's own command: what an agent runs for the commands named in its config's
/// [`external`](fleet_core::command::ExecutorConfig::external) set. The agent gives it the
/// command (name, args, timeout) and sends back what it answers; past the command's timeout it
/// drops the future (stop the work then: a child process killed on drop, say) and answers
/// `timeout` itself.
pub trait Handler: Send + Sync {
    fn run(&self, command: Command) -> Pin<Box<dyn Future<Output = (Outcome, String)> + Send>>;
}

/// The handlers, by command name.
pub type Handlers = BTreeMap<String, Arc<dyn Handler>>;

/// What a deployment plugs into its agent; the default, nothing.
#[derive(Clone, Default)]
pub struct AgentHooks {
    /// Run the commands its config calls external, by name.
    pub handlers: Handlers,
    /// A fresh token, asked for each time a master refuses the one it has (`None`: keep it).
    #[allow(clippy::type_complexity)]
    pub token: Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>,
}

/// Runs `command` with its handler (one missing answers `unknown_command`), under its timeout,
/// and sends its id and outcome to `done`.
fn spawn_external(handlers: &Handlers, command: Command, done: &ExternalResults) {
    let done = done.clone();
    let id = command.request_id.clone();
    let timeout = Duration::from_millis(command.timeout_ms);
    let work = match handlers.get(&command.name) {
        Some(handler) => handler.run(command),
        None => {
            let answer = (
                Outcome::UnknownCommand,
                format!("no handler {:?}", command.name),
            );
            Box::pin(std::future::ready(answer))
        }
    };
    crate::task::spawn(async move {
        // The core answers `timeout` at the deadline; this only stops the work.
        if let Ok((outcome, output)) = crate::clock::timeout(timeout, work).await {
            let _ = done.send((id, outcome, output));
        }
    });
}

type ExternalResults = mpsc::UnboundedSender<(String, Outcome, String)>;

/// Sends `message` on the open link, if there is one; a send that fails breaks the connection.
async fn send<R: RngCore>(link: &mut Link, connector: &mut Connector<R>, message: Message) {
    let Link::Open(framed) = link else { return };
    if let Err(error) = framed.send(message).await {
        let reason = match error {
            CodecError::Io(error) => classify(&error),
            CodecError::Wire(_) => DisconnectReason::ProtocolError,
        };
        connector.handle_disconnected(now(), reason);
        emit_from(|| connector.poll_event());
    }
}

/// Names each session the agent opens, for a transport through a broker: this process's
/// start, and a count.
struct Sessions {
    process: u64,
    opened: u64,
}

/// Starts connecting to master `target`.
fn dial(masters: &Masters, config: &AgentConfig, target: usize, sessions: &mut Sessions) -> Link {
    let (transport, address) = (masters.transport.clone(), masters.addresses[target]);
    let agent = config.register.node_name.clone();
    let master = config.masters[target].clone();
    sessions.opened += 1;
    let session = format!("{}.{}", sessions.process, sessions.opened);
    let connect = async move {
        let ends = transport::Ends {
            agent: &agent,
            master: &master,
            session: &session,
        };
        transport::connect(&transport, address, &ends).await
    };
    Link::Connecting(Box::pin(connect))
}

/// Where an agent's masters are, and how it talks to them.
#[derive(Clone, Debug)]
pub struct Masters {
    /// Indexed like its config's master names.
    pub addresses: Vec<SocketAddr>,
    pub transport: Transport,
}

/// Drives `connector` against `masters` until it gives up, a master closes it for good, or
/// `control` stops it, with what `hooks` plug in.
pub async fn run_agent<R: RngCore>(
    mut connector: Connector<R>,
    masters: Masters,
    control: &AgentControl,
    hooks: &AgentHooks,
) {
    let mut link = Link::Idle;
    let mut timer = Timer::default();
    let mut sessions = Sessions {
        process: crate::clock::unix_ms(),
        opened: 0,
    };
    let stopped = control.stopped();
    tokio::pin!(stopped);
    let (external_done, mut external_results) = mpsc::unbounded_channel();
    loop {
        emit_from(|| connector.poll_event());
        while let Some(action) = connector.poll_action() {
            match action {
                AgentAction::Connect { target } => {
                    link = dial(&masters, connector.agent_config(), target, &mut sessions);
                }
                AgentAction::Send(message) => send(&mut link, &mut connector, message).await,
                AgentAction::Close => {
                    if let Link::Open(channel) = &mut link {
                        channel.finish().await;
                    }
                    link = Link::Idle;
                }
                AgentAction::RunExternal(command) => {
                    spawn_external(&hooks.handlers, command, &external_done)
                }
                AgentAction::RefreshToken => {
                    if let Some(token) = hooks.token.as_ref().and_then(|fetch| fetch()) {
                        connector.set_token(token);
                    }
                }
            }
        }
        if connector.is_finished() {
            return;
        }
        timer.set(connector.poll_timeout());
        crate::select_in_order! {
            event = link.next_event() => match event {
                LinkEvent::Connected(channel) => {
                    link = Link::Open(channel);
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
            // The sender lives as long as this loop: `None` never comes.
            Some((id, outcome, output)) = external_results.recv() => {
                connector.handle_external_result(now(), &id, outcome, output);
            }
            // A stopped connector is finished: the loop returns before polling this again.
            _ = &mut stopped => connector.disconnect(),
        }
    }
}
