//! The agent's connector: connect, register, heartbeat, and reconnect on the backoff schedule.
//!
//! Sans-IO. The shell reports what happened to the connection (`handle_*`), pulls what to do
//! ([`poll_action`](Connector::poll_action)) and sleeps until
//! [`poll_timeout`](Connector::poll_timeout). Randomness comes from the RNG it was built with.
//!
//! Attempts are counted per cycle. A cycle starts at boot, after a registered session is lost,
//! and after a long wait; its first attempt goes out at once. Every failed attempt draws the
//! next delay from the backoff (retry 0, 1, 2, ...). A redirect from a master that does not lead
//! is followed at once and is no failure; more redirects in a row than there are masters count
//! as one. A successful registration ends the cycle.
//!
//! Why a connection ended decides how the agent comes back ([`strategy`], the reconnection
//! design's table): not at all after a normal close, at once to the next master when one goes
//! away, after a fixed delay when its credentials were refused, after the master's
//! `retry_after` (or twice the backoff's delay) when the master is busy, after the master's
//! `retry_after` with the backoff left alone when it knows no leader yet (the service is
//! recovering: the network is fine), and on the backoff schedule after anything the network
//! did.

use crate::backoff::{Backoff, BackoffPolicy, Next};
use crate::bugs::{Bug, Bugs};
use crate::command::{Command, Executor, ExecutorConfig, Outcome, Step};
pub use crate::timeline::DisconnectReason;
use crate::timeline::{AgentEvent, CommandEvent, Event, Events};
use crate::wire::{
    CloseCode, ConfigAck, ConfigId, ConfigPull, ConfigPush, Goodbye, Heartbeat, Message,
    NodeStatus, Refusal, Register, RegisterAck, Unregister,
};
use rand::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Names of the masters, in the order they are tried; the shell maps an index to an address.
    pub masters: Vec<String>,
    /// Used until a master says otherwise: each registration's ack carries the interval that
    /// master judges liveness by, and the agent beats at that one.
    pub heartbeat_interval: Duration,
    /// No HeartbeatAck (or RegisterAck) for this long means the connection is lost; also the
    /// limit on establishing a connection.
    pub heartbeat_timeout: Duration,
    pub backoff: BackoffPolicy,
    /// Sent on every registration.
    pub register: Register,
    /// How commands run: concurrency, queue, how many results are kept for duplicates.
    pub commands: ExecutorConfig,
    /// After the master refused its credentials, the agent tries again after this long: a
    /// fixed delay, never the exponential schedule.
    pub reauth_delay: Duration,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    pub bugs: Bugs,
}

/// How an agent comes back after a connection ended; [`strategy`] picks one by the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconnect {
    /// Not at all: the agent stops.
    Never,
    /// At once, to the next master, as the first attempt of a new cycle.
    NextMasterNow,
    /// To the same master after [`AgentConfig::reauth_delay`]; uses no retry.
    Reauthenticate,
    /// To the same master after its `retry_after`, or twice the backoff's next delay when it
    /// names none; uses a retry.
    ServerDelay,
    /// To the next master after the master's `retry_after` (the backoff's base delay if it
    /// names none); uses no retry and leaves the backoff where it was: a cluster electing a
    /// leader is recovering, not failing.
    AwaitLeader,
    /// The backoff policy: the next master after the next delay (after a lost session, a new
    /// cycle, whose first attempt waits `first_delay` if the policy has one).
    Backoff,
}

/// The reconnection design's table: why a connection ended → how to come back.
pub fn strategy(reason: DisconnectReason) -> Reconnect {
    use DisconnectReason as R;
    match reason {
        R::Local | R::NormalClose => Reconnect::Never,
        R::GoingAway => Reconnect::NextMasterNow,
        R::AuthFailed => Reconnect::Reauthenticate,
        R::Busy => Reconnect::ServerDelay,
        R::NoLeader => Reconnect::AwaitLeader,
        R::Refused
        | R::ConnectTimeout
        | R::Closed
        | R::Reset
        | R::HeartbeatTimeout
        | R::RegisterTimeout
        | R::Rejected
        | R::ProtocolError => Reconnect::Backoff,
    }
}

/// Why a refused registration ended the attempt, and when the master said to come back.
fn refused(ack: &RegisterAck) -> (DisconnectReason, Option<Duration>) {
    let reason = match ack.refusal {
        Refusal::Unauthorized => DisconnectReason::AuthFailed,
        Refusal::Busy | Refusal::RetryLimit => DisconnectReason::Busy,
        Refusal::NoLeader => DisconnectReason::NoLeader,
        Refusal::None | Refusal::ShuttingDown => DisconnectReason::Rejected,
    };
    let retry_after = (ack.retry_after_ms > 0).then(|| Duration::from_millis(ack.retry_after_ms));
    (reason, retry_after)
}

#[derive(Clone, Debug, PartialEq)]
pub enum AgentAction {
    /// Open a connection to `masters[target]`, dropping any current one.
    Connect {
        target: usize,
    },
    Send(Message),
    /// Drop the current connection.
    Close,
    /// The master refused this agent's token: fetch a new one, if there is a source of them,
    /// and hand it to [`Connector::set_token`] before the agent registers again.
    RefreshToken,
    /// Run this command with the deployment's handler for its name (see
    /// [`ExecutorConfig::external`](crate::command::ExecutorConfig::external)), and hand its
    /// outcome to [`Connector::handle_external_result`].
    RunExternal(Command),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    Waiting,
    Connecting,
    Registering,
    Online,
    GaveUp,
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Attempt `attempt` goes out at `until`, after waiting `delay`.
    Waiting {
        until: Instant,
        delay: Duration,
    },
    Connecting {
        deadline: Instant,
    },
    Registering {
        deadline: Instant,
    },
    Online {
        next_heartbeat: Instant,
    },
    GaveUp,
    Stopped,
}

/// What a status endpoint shows of an agent's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorStatus {
    pub state: StateKind,
    /// Attempt number within the current cycle (0 while online).
    pub attempt: u32,
    /// While waiting: the delay being waited before the next attempt.
    pub next_delay: Option<Duration>,
    pub target: String,
}

pub struct Connector<R> {
    config: AgentConfig,
    rng: R,
    state: State,
    backoff: Backoff,
    attempt: u32,
    target: usize,
    started_at: Instant,
    heartbeat_seq: u64,
    /// The interval of the current session: the master's, once its ack names one.
    heartbeat_interval: Duration,
    /// Redirects followed since the last registration or failure.
    redirects_in_a_row: usize,
    /// Heartbeats sent and not yet acknowledged, oldest first.
    unacked: VecDeque<(u64, Instant)>,
    actions: VecDeque<AgentAction>,
    /// Runs the master's commands; outlives connections, so a copy sent again after a
    /// reconnect is answered from memory.
    executor: Executor,
    /// The config the agent runs with; version 0 until a master pushes one.
    fleet_config: ConfigPush,
    /// A pull is out on this session and not yet answered.
    pulling: bool,
    /// What it last reported itself as.
    status: NodeStatus,
    /// What it reports, until the shell takes it.
    events: Events,
}

impl<R: RngCore> Connector<R> {
    /// A connector whose first attempt goes out at `now`.
    pub fn new(config: AgentConfig, rng: R, now: Instant) -> Self {
        debug_assert!(!config.masters.is_empty(), "an agent needs a master");
        let backoff = Backoff::new(config.backoff.clone()).with_bugs(config.bugs);
        let heartbeat_interval = config.heartbeat_interval;
        let executor = Executor::new(ExecutorConfig {
            bugs: config.bugs,
            ..config.commands.clone()
        });
        Connector {
            config,
            rng,
            state: State::Waiting {
                until: now,
                delay: Duration::ZERO,
            },
            backoff,
            attempt: 1,
            target: 0,
            started_at: now,
            heartbeat_seq: 0,
            heartbeat_interval,
            redirects_in_a_row: 0,
            unacked: VecDeque::new(),
            actions: VecDeque::new(),
            executor,
            fleet_config: ConfigPush::default(),
            pulling: false,
            status: NodeStatus::Online,
            events: Events::default(),
        }
    }

    /// Its own settings: its name, its masters'.
    pub fn agent_config(&self) -> &AgentConfig {
        &self.config
    }

    /// The config it runs with.
    pub fn fleet_config(&self) -> &ConfigPush {
        &self.fleet_config
    }

    /// What a heartbeat reports besides the status: the executor's load while it has any
    /// (an idle agent sends an empty map, which costs nothing to build).
    fn metrics(&self) -> BTreeMap<String, f64> {
        if self.executor.is_idle() {
            return BTreeMap::new();
        }
        let (running, queued) = self.executor.load();
        BTreeMap::from([
            ("commands_queued".to_string(), queued as f64),
            ("commands_running".to_string(), running as f64),
        ])
    }

    /// Reports the executor's status ([`Executor::status`]); a change is on the timeline.
    fn update_status(&mut self) {
        let status = self.executor.status();
        if status != self.status {
            self.status = status;
            self.events.push(CommandEvent::StatusChanged {
                status: status.as_str().to_string(),
            });
        }
    }

    /// Reports what the executor did, and sends its results while a session is up. A result
    /// produced while offline is not lost: the master sends the command again on the next
    /// registration, and the executor answers the copy from memory.
    fn apply(&mut self, steps: Vec<Step>) {
        let online = matches!(self.state, State::Online { .. });
        for step in steps {
            let send = match step {
                Step::Started { request_id, name } => {
                    self.events
                        .push(CommandEvent::CommandStarted { request_id, name });
                    None
                }
                Step::Reply(result) => {
                    self.events.push(CommandEvent::CommandFinished {
                        request_id: result.request_id.clone(),
                        outcome: result.outcome.name().to_string(),
                    });
                    Some(result)
                }
                Step::Duplicate { request_id, stored } => {
                    self.events
                        .push(CommandEvent::CommandDuplicate { request_id });
                    stored
                }
                Step::RunExternal(command) => {
                    self.actions.push_back(AgentAction::RunExternal(command));
                    None
                }
            };
            if let Some(result) = send.filter(|_| online) {
                let message = Message::CommandResult(result);
                self.actions.push_back(AgentAction::Send(message));
            }
        }
        self.update_status();
    }

    /// The token the next registrations carry.
    pub fn set_token(&mut self, token: String) {
        self.config.register.token = token;
    }

    /// An external command ([`AgentAction::RunExternal`]) ended.
    pub fn handle_external_result(
        &mut self,
        now: Instant,
        request_id: &str,
        outcome: Outcome,
        output: String,
    ) {
        let steps = self.executor.complete(now, request_id, outcome, output);
        self.apply(steps);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.executor.is_idle() {
            let steps = self.executor.poll(now);
            self.apply(steps);
        }
        match self.state {
            State::Waiting { until, delay } if now >= until => {
                self.events.push(AgentEvent::ConnectAttempt {
                    attempt: self.attempt,
                    delay_ms: delay.as_millis() as u64,
                    target: self.config.masters[self.target].clone(),
                });
                self.state = State::Connecting {
                    deadline: now + self.config.heartbeat_timeout,
                };
                self.actions.push_back(AgentAction::Connect {
                    target: self.target,
                });
            }
            State::Connecting { deadline } if now >= deadline => {
                self.actions.push_back(AgentAction::Close);
                self.connect_failed(now, DisconnectReason::ConnectTimeout);
            }
            State::Registering { deadline } if now >= deadline => {
                self.lose_connection(now, DisconnectReason::RegisterTimeout, None);
            }
            State::Online { next_heartbeat } => {
                if self.oldest_unacked_deadline().is_some_and(|at| now >= at) {
                    return self.lose_connection(now, DisconnectReason::HeartbeatTimeout, None);
                }
                if now >= next_heartbeat {
                    self.heartbeat_seq += 1;
                    self.unacked.push_back((self.heartbeat_seq, now));
                    debug_assert!(
                        self.unacked.len() as u128
                            <= self.config.heartbeat_timeout.as_nanos()
                                / self.heartbeat_interval.as_nanos().max(1)
                                + 2,
                        "unacked heartbeats are bounded by the timeout"
                    );
                    let uptime_ms = now.duration_since(self.started_at).as_millis() as u64;
                    self.actions
                        .push_back(AgentAction::Send(Message::Heartbeat(Heartbeat {
                            seq: self.heartbeat_seq,
                            status: self.status,
                            uptime_ms,
                            metrics: self.metrics(),
                        })));
                    self.state = State::Online {
                        next_heartbeat: now + self.heartbeat_interval,
                    };
                }
            }
            _ => {}
        }
    }

    /// The connection asked for by the last `Connect` is up.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        self.events.push(AgentEvent::Connected {
            target: self.config.masters[self.target].clone(),
        });
        self.actions
            .push_back(AgentAction::Send(Message::Register(Box::new(
                self.config.register.clone(),
            ))));
        self.state = State::Registering {
            deadline: now + self.config.heartbeat_timeout,
        };
    }

    /// The connection asked for by the last `Connect` could not be made.
    pub fn handle_connect_failed(&mut self, now: Instant, reason: DisconnectReason) {
        if matches!(self.state, State::Connecting { .. }) {
            self.connect_failed(now, reason);
        }
    }

    pub fn handle_message(&mut self, now: Instant, message: Message) {
        match (&self.state, message) {
            (State::Registering { .. }, Message::RegisterAck(ack)) if ack.accepted() => {
                self.events.push(AgentEvent::Registered {
                    instance_id: ack.instance_id,
                });
                self.heartbeat_interval = match ack.heartbeat_interval_ms {
                    0 => self.config.heartbeat_interval,
                    ms => Duration::from_millis(ms),
                };
                self.backoff.reset();
                self.attempt = 0;
                self.redirects_in_a_row = 0;
                self.unacked.clear();
                self.pulling = false;
                self.state = State::Online {
                    next_heartbeat: now + self.heartbeat_interval,
                };
            }
            (State::Registering { .. }, Message::RegisterAck(ack)) => {
                let (reason, retry_after) = refused(&ack);
                self.lose_connection(now, reason, retry_after);
            }
            (State::Registering { .. } | State::Online { .. }, Message::Goodbye(goodbye)) => {
                self.handle_goodbye(now, goodbye);
            }
            (State::Registering { .. }, Message::Redirect(redirect)) => {
                self.follow_redirect(now, &redirect.leader);
            }
            (State::Online { .. }, Message::Command(command)) => {
                let steps = self.executor.receive(now, *command);
                self.apply(steps);
            }
            (State::Online { .. }, Message::HeartbeatAck(ack)) => {
                while self.unacked.front().is_some_and(|&(seq, _)| seq <= ack.seq) {
                    self.unacked.pop_front();
                }
                if ack.config > self.fleet_config.id && !self.pulling {
                    self.pulling = true;
                    let have = self.fleet_config.id;
                    let pull = Message::ConfigPull(ConfigPull { have });
                    self.actions.push_back(AgentAction::Send(pull));
                }
            }
            (State::Online { .. }, Message::ConfigPush(push)) => {
                self.pulling = false;
                if push.id > self.fleet_config.id {
                    self.fleet_config = *push;
                    let ConfigId { version, term } = self.fleet_config.id;
                    self.events
                        .push(CommandEvent::ConfigApplied { version, term });
                }
                let id = self.fleet_config.id;
                let ack = Message::ConfigAck(ConfigAck { id });
                self.actions.push_back(AgentAction::Send(ack));
            }
            (State::Registering { .. } | State::Online { .. }, _) => {
                self.lose_connection(now, DisconnectReason::ProtocolError, None);
            }
            // A frame that was in flight when we gave the connection up.
            _ => {}
        }
    }

    /// The open connection broke (EOF, I/O error, bad frame).
    pub fn handle_disconnected(&mut self, now: Instant, reason: DisconnectReason) {
        if matches!(self.state, State::Registering { .. } | State::Online { .. }) {
            self.lose_connection(now, reason, None);
        }
    }

    /// Graceful shutdown: unregister if online, close, and never reconnect.
    pub fn disconnect(&mut self) {
        if matches!(self.state, State::Online { .. }) {
            self.actions
                .push_back(AgentAction::Send(Message::Unregister(Unregister {
                    reason: "shutdown".into(),
                })));
        }
        if matches!(
            self.state,
            State::Connecting { .. } | State::Registering { .. } | State::Online { .. }
        ) {
            self.events.push(AgentEvent::Disconnected {
                reason: DisconnectReason::Local,
                retry_after_ms: None,
            });
        }
        self.actions.push_back(AgentAction::Close);
        self.state = State::Stopped;
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<AgentAction> {
        self.actions.pop_front()
    }

    /// The next event for the timeline, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    #[must_use]
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = match self.state {
            State::Waiting { until, .. } => Some(until),
            State::Connecting { deadline } | State::Registering { deadline } => Some(deadline),
            State::Online { next_heartbeat } => Some(
                self.oldest_unacked_deadline()
                    .map_or(next_heartbeat, |at| at.min(next_heartbeat)),
            ),
            State::GaveUp | State::Stopped => return None,
        };
        // Asked on every turn of every agent; commands are rare.
        if self.executor.is_idle() {
            return own;
        }
        self.with_commands(own)
    }

    #[cold]
    fn with_commands(&self, own: Option<Instant>) -> Option<Instant> {
        own.into_iter().chain(self.executor.next_deadline()).min()
    }

    /// True once the connector will never act again.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::GaveUp | State::Stopped)
    }

    pub fn status(&self) -> ConnectorStatus {
        let (state, next_delay) = match self.state {
            State::Waiting { delay, .. } => (StateKind::Waiting, Some(delay)),
            State::Connecting { .. } => (StateKind::Connecting, None),
            State::Registering { .. } => (StateKind::Registering, None),
            State::Online { .. } => (StateKind::Online, None),
            State::GaveUp => (StateKind::GaveUp, None),
            State::Stopped => (StateKind::Stopped, None),
        };
        ConnectorStatus {
            state,
            attempt: self.attempt,
            next_delay,
            target: self.config.masters[self.target].clone(),
        }
    }

    fn oldest_unacked_deadline(&self) -> Option<Instant> {
        self.unacked
            .front()
            .map(|&(_, sent)| sent + self.config.heartbeat_timeout)
    }

    /// An open connection is lost: close it, then either start a new cycle (the session had
    /// registered) or count a failed attempt (it had not).
    fn lose_connection(
        &mut self,
        now: Instant,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        self.events.push(AgentEvent::Disconnected {
            reason,
            retry_after_ms: retry_after.map(|after| after.as_millis() as u64),
        });
        self.actions.push_back(AgentAction::Close);
        self.unacked.clear();
        let was_online = matches!(self.state, State::Online { .. });
        match self.strategy(reason) {
            Reconnect::Never => self.state = State::Stopped,
            Reconnect::NextMasterNow => {
                self.target = (self.target + 1) % self.config.masters.len();
                self.redirects_in_a_row = 0;
                self.start_cycle(now, Duration::ZERO);
            }
            Reconnect::Reauthenticate => {
                let delay = self.config.reauth_delay;
                // The reconnection design's "fetch a new token" before trying again.
                self.actions.push_back(AgentAction::RefreshToken);
                self.redirects_in_a_row = 0;
                self.attempt += 1;
                self.state = State::Waiting {
                    until: now + delay,
                    delay,
                };
            }
            Reconnect::ServerDelay => {
                let retry_after =
                    retry_after.filter(|_| !self.config.bugs.has(Bug::ReconnectIgnoreRetryAfter));
                self.retry(now, |delay| retry_after.unwrap_or(delay * 2));
            }
            Reconnect::AwaitLeader => {
                let delay = retry_after.unwrap_or(self.config.backoff.base);
                self.target = (self.target + 1) % self.config.masters.len();
                self.redirects_in_a_row = 0;
                self.attempt += 1;
                self.state = State::Waiting {
                    until: now + delay,
                    delay,
                };
            }
            Reconnect::Backoff if was_online => {
                let delay = self.backoff.first_delay(&mut self.rng);
                self.start_cycle(now, delay);
            }
            Reconnect::Backoff => self.schedule_retry(now),
        }
    }

    /// How to come back after `reason`: the reason table, unless a bug is planted in it.
    fn strategy(&self, reason: DisconnectReason) -> Reconnect {
        let bugs = self.config.bugs;
        match strategy(reason) {
            Reconnect::Reauthenticate if bugs.has(Bug::ReconnectAuthBackoff) => Reconnect::Backoff,
            Reconnect::NextMasterNow if bugs.has(Bug::ReconnectGoingAwayWaits) => {
                Reconnect::Backoff
            }
            how => how,
        }
    }

    /// The master ended the session on purpose, saying why, and maybe where to go instead.
    fn handle_goodbye(&mut self, now: Instant, goodbye: Goodbye) {
        let reason = match goodbye.code {
            CloseCode::Normal => DisconnectReason::NormalClose,
            CloseCode::GoingAway => DisconnectReason::GoingAway,
            CloseCode::Unauthorized => DisconnectReason::AuthFailed,
        };
        self.lose_connection(now, reason, None);
        // Going away to a master it named: that one, rather than the next in line.
        let named = (goodbye.leader)
            .and_then(|leader| self.config.masters.iter().position(|m| *m == leader));
        if let (Some(index), DisconnectReason::GoingAway) = (named, reason) {
            self.target = index;
        }
    }

    fn follow_redirect(&mut self, now: Instant, leader: &str) {
        let Some(index) = self.config.masters.iter().position(|m| m == leader) else {
            return self.lose_connection(now, DisconnectReason::ProtocolError, None);
        };
        self.events.push(AgentEvent::Redirected {
            to: leader.to_string(),
        });
        self.actions.push_back(AgentAction::Close);
        self.redirects_in_a_row += 1;
        if self.redirects_in_a_row > self.config.masters.len() {
            self.redirects_in_a_row = 0;
            return self.schedule_retry(now);
        }
        self.target = index;
        self.attempt += 1;
        self.state = State::Waiting {
            until: now,
            delay: Duration::ZERO,
        };
    }

    fn connect_failed(&mut self, now: Instant, reason: DisconnectReason) {
        self.events.push(AgentEvent::ConnectFailed { reason });
        self.schedule_retry(now);
    }

    /// The backoff's next delay, at the next master.
    fn schedule_retry(&mut self, now: Instant) {
        self.target = (self.target + 1) % self.config.masters.len();
        self.retry(now, |delay| delay);
    }

    /// Counts a failed attempt against the backoff and waits `wait(delay)` for the delay it
    /// draws; when retries run out, a long wait or giving up.
    fn retry(&mut self, now: Instant, wait: impl FnOnce(Duration) -> Duration) {
        self.redirects_in_a_row = 0;
        match self.backoff.handle_failure(&mut self.rng) {
            Next::Retry(delay) => {
                let delay = wait(delay);
                self.attempt += 1;
                self.state = State::Waiting {
                    until: now + delay,
                    delay,
                };
            }
            Next::LongWait(wait) => {
                self.events.push(AgentEvent::LongWait {
                    ms: wait.as_millis() as u64,
                });
                self.target = 0;
                self.start_cycle(now, wait);
            }
            Next::GiveUp => {
                self.events.push(AgentEvent::GaveUp {
                    attempts: self.attempt,
                });
                self.state = State::GaveUp;
            }
        }
    }

    fn start_cycle(&mut self, now: Instant, delay: Duration) {
        self.backoff.reset();
        self.attempt = 1;
        self.state = State::Waiting {
            until: now + delay,
            delay,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{Strategy, WhenExhausted};
    use crate::command::{Command, Outcome};
    use crate::timeline::Event;
    use crate::wire::RegisterAck;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn config(backoff: BackoffPolicy) -> AgentConfig {
        crate::tests::pair::agent_config_with(backoff)
    }

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::default()
        }
    }

    fn connector(backoff: BackoffPolicy, t0: Instant) -> Connector<ChaCha8Rng> {
        Connector::new(config(backoff), ChaCha8Rng::seed_from_u64(1), t0)
    }

    fn drain(connector: &mut Connector<ChaCha8Rng>) -> Vec<AgentAction> {
        std::iter::from_fn(|| connector.poll_action()).collect()
    }

    fn ack() -> Message {
        Message::RegisterAck(Box::new(RegisterAck {
            instance_id: "agent-1-host-1".into(),
            reason: String::new(),
            heartbeat_interval_ms: 1000,
            refusal: Refusal::None,
            retry_after_ms: 0,
        }))
    }

    /// A connector that has just registered, and the moment it did.
    fn online() -> (Instant, Connector<ChaCha8Rng>) {
        let t0 = Instant::now();
        let mut connector = connector(no_jitter(), t0);
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        connector.handle_message(t0, ack());
        drain(&mut connector);
        (t0, connector)
    }

    fn results(actions: Vec<AgentAction>) -> Vec<(String, Outcome)> {
        (actions.into_iter())
            .filter_map(|action| match action {
                AgentAction::Send(Message::CommandResult(result)) => {
                    Some((result.request_id, result.outcome))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_online_agent_runs_a_command_once_and_answers_every_copy() {
        let (t0, mut connector) = online();
        let command = |id: &str, name: &str, args: &[(&str, &str)]| {
            let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            Message::Command(Box::new(Command {
                request_id: id.into(),
                name: name.into(),
                args: args.collect(),
                timeout_ms: 5000,
            }))
        };
        connector.handle_message(t0, command("master-1-1", "echo", &[("x", "1")]));
        let ok = || ("master-1-1".to_string(), Outcome::Ok);
        assert_eq!(results(drain(&mut connector)), [ok()]);
        connector.handle_message(t0, command("master-1-1", "echo", &[("x", "1")]));
        assert_eq!(
            results(drain(&mut connector)),
            [ok()],
            "the copy gets the stored result"
        );

        // A sleep finishes on the connector's own clock: it asks to be woken then.
        connector.handle_message(t0, command("master-1-2", "sleep", &[("ms", "200")]));
        assert!(results(drain(&mut connector)).is_empty());
        let wake = t0 + Duration::from_millis(200);
        assert_eq!(connector.poll_timeout(), Some(wake));
        connector.handle_timeout(wake);
        let slept = ("master-1-2".to_string(), Outcome::Ok);
        assert_eq!(results(drain(&mut connector)), [slept]);
    }

    /// Runs the connector's own timeouts, refusing every connection, and returns when each
    /// attempt went out.
    fn attempts_while_refused(connector: &mut Connector<ChaCha8Rng>, count: usize) -> Vec<Instant> {
        let mut times = vec![];
        while times.len() < count {
            let now = connector.poll_timeout().expect("keeps retrying");
            connector.handle_timeout(now);
            for action in drain(connector) {
                if let AgentAction::Connect { .. } = action {
                    times.push(now);
                    connector.handle_connect_failed(now, DisconnectReason::Refused);
                }
            }
        }
        times
    }

    fn reported(connector: &mut Connector<ChaCha8Rng>) -> Vec<Event> {
        std::iter::from_fn(|| connector.poll_event()).collect()
    }

    /// After each input, exactly the events a user reads on the timeline.
    #[test]
    fn events_report_each_attempt_registration_and_loss() {
        let t0 = Instant::now();
        let mut connector = connector(no_jitter(), t0);
        assert_eq!(reported(&mut connector), []);
        let attempt = |attempt, delay_ms| AgentEvent::ConnectAttempt {
            attempt,
            delay_ms,
            target: "master-1".into(),
        };
        connector.handle_timeout(t0);
        assert_eq!(reported(&mut connector), [attempt(1, 0).into()]);
        connector.handle_connect_failed(t0, DisconnectReason::Refused);
        assert_eq!(
            reported(&mut connector),
            [AgentEvent::ConnectFailed {
                reason: DisconnectReason::Refused
            }
            .into()]
        );
        let retry = t0 + Duration::from_secs(1);
        connector.handle_timeout(retry);
        connector.handle_connected(retry);
        connector.handle_message(retry, ack());
        assert_eq!(
            reported(&mut connector),
            [
                attempt(2, 1000).into(),
                AgentEvent::Connected {
                    target: "master-1".into()
                }
                .into(),
                AgentEvent::Registered {
                    instance_id: "agent-1-host-1".into()
                }
                .into(),
            ]
        );
        // A busy master names when to come back; the event carries it.
        connector.handle_disconnected(retry, DisconnectReason::Closed);
        connector.handle_timeout(retry);
        connector.handle_connected(retry);
        connector.handle_message(retry, refusal(Refusal::Busy, 2500));
        assert_eq!(
            reported(&mut connector),
            [
                AgentEvent::Disconnected {
                    reason: DisconnectReason::Closed,
                    retry_after_ms: None
                }
                .into(),
                attempt(1, 0).into(),
                AgentEvent::Connected {
                    target: "master-1".into()
                }
                .into(),
                AgentEvent::Disconnected {
                    reason: DisconnectReason::Busy,
                    retry_after_ms: Some(2500)
                }
                .into(),
            ]
        );
        connector.disconnect();
        assert_eq!(
            reported(&mut connector),
            [],
            "not connected: nothing to say"
        );
    }

    #[test]
    fn the_first_attempt_is_immediate_then_the_schedule_doubles() {
        let t0 = Instant::now();
        let mut connector = connector(no_jitter(), t0);
        let gaps: Vec<u64> = attempts_while_refused(&mut connector, 7)
            .windows(2)
            .map(|pair| pair[1].duration_since(pair[0]).as_secs())
            .collect();
        assert_eq!(gaps, vec![1, 2, 4, 8, 16, 30]);
        assert_eq!(connector.status().attempt, 8);
        assert_eq!(connector.status().next_delay, Some(Duration::from_secs(30)));
    }

    /// A connector registered at `t0` by a master whose ack names `heartbeat_interval_ms`.
    fn acked_with(heartbeat_interval_ms: u64) -> (Instant, Connector<ChaCha8Rng>) {
        let t0 = Instant::now();
        let mut connector = connector(no_jitter(), t0);
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        let Message::RegisterAck(ack) = ack() else {
            unreachable!("ack() is a RegisterAck")
        };
        let ack = RegisterAck {
            heartbeat_interval_ms,
            ..*ack
        };
        connector.handle_message(t0, Message::RegisterAck(Box::new(ack)));
        (t0, connector)
    }

    #[test]
    fn the_agent_beats_at_the_interval_its_master_asks_for() {
        let (t0, mut connector) = acked_with(250);
        assert_eq!(
            connector.poll_timeout(),
            Some(t0 + Duration::from_millis(250))
        );
        connector.handle_timeout(t0 + Duration::from_millis(250));
        drain(&mut connector);
        assert_eq!(
            connector.poll_timeout(),
            Some(t0 + Duration::from_millis(500))
        );
    }

    #[test]
    fn an_ack_without_an_interval_keeps_the_agents_own() {
        let (t0, connector) = acked_with(0);
        assert_eq!(connector.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn registration_resets_the_attempt_count_and_heartbeats_follow() {
        let t0 = Instant::now();
        let mut connector = connector(no_jitter(), t0);
        let times = attempts_while_refused(&mut connector, 3);
        let now = *times.last().unwrap() + Duration::from_secs(4);
        connector.handle_timeout(now);
        assert_eq!(
            drain(&mut connector),
            vec![AgentAction::Connect { target: 0 }]
        );
        connector.handle_connected(now);
        assert!(matches!(
            drain(&mut connector)[..],
            [AgentAction::Send(Message::Register(_))]
        ));
        connector.handle_message(now, ack());
        assert_eq!(connector.status().state, StateKind::Online);
        assert_eq!(connector.status().attempt, 0);
        assert_eq!(connector.poll_timeout(), Some(now + Duration::from_secs(1)));
        connector.handle_timeout(now + Duration::from_secs(1));
        assert!(matches!(
            drain(&mut connector)[..],
            [AgentAction::Send(Message::Heartbeat(Heartbeat {
                seq: 1,
                ..
            }))]
        ));
    }

    #[test]
    fn a_missing_heartbeat_ack_loses_the_connection_and_reconnects_at_once() {
        let (t0, mut connector) = online();
        // Heartbeats at 1s, 2s, 3s go unanswered; the one sent at 1s expires at 4s.
        let mut now = t0;
        while connector.status().state == StateKind::Online {
            now = connector.poll_timeout().unwrap();
            connector.handle_timeout(now);
        }
        assert_eq!(now, t0 + Duration::from_secs(4));
        assert!(drain(&mut connector).contains(&AgentAction::Close));
        assert_eq!(connector.status().attempt, 1);
        assert_eq!(connector.poll_timeout(), Some(now));
    }

    #[test]
    fn acks_clear_outstanding_heartbeats() {
        let (t0, mut connector) = online();
        for second in 1..=20 {
            let now = t0 + Duration::from_secs(second);
            connector.handle_timeout(now);
            connector.handle_message(
                now,
                Message::HeartbeatAck(crate::wire::HeartbeatAck {
                    seq: second,
                    config: ConfigId::default(),
                }),
            );
        }
        assert_eq!(connector.status().state, StateKind::Online);
    }

    #[test]
    fn max_retries_then_give_up() {
        let t0 = Instant::now();
        let mut connector = connector(
            BackoffPolicy {
                max_retries: 3,
                ..no_jitter()
            },
            t0,
        );
        // The first attempt and 3 retries.
        attempts_while_refused(&mut connector, 4);
        assert!(connector.is_finished());
        assert_eq!(connector.status().state, StateKind::GaveUp);
        assert_eq!(connector.poll_timeout(), None);
    }

    #[test]
    fn max_retries_then_long_wait_then_a_new_cycle() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(900);
        let mut connector = connector(
            BackoffPolicy {
                max_retries: 2,
                when_exhausted: WhenExhausted::LongWait(wait),
                ..no_jitter()
            },
            t0,
        );
        // Attempts 1..3 (the first and 2 retries), the long wait, then a new cycle.
        let times = attempts_while_refused(&mut connector, 5);
        assert_eq!(times[3].duration_since(times[2]), wait);
        assert_eq!(times[4].duration_since(times[3]), Duration::from_secs(1));
    }

    #[test]
    fn the_first_attempt_after_a_lost_session_waits_a_delay_from_first_delay() {
        let range = (Duration::from_millis(200), Duration::from_millis(900));
        let mut delays = Vec::new();
        for seed in 0..20 {
            let t0 = Instant::now();
            let policy = BackoffPolicy {
                first_delay: Some(range),
                ..BackoffPolicy::default()
            };
            let rng = ChaCha8Rng::seed_from_u64(seed);
            let mut connector = Connector::new(config(policy), rng, t0);
            connector.handle_timeout(t0);
            connector.handle_connected(t0);
            connector.handle_message(t0, ack());
            connector.handle_disconnected(t0, DisconnectReason::Closed);
            let next = connector.poll_timeout().unwrap();
            delays.push(next.duration_since(t0));
        }
        assert!(
            delays.iter().all(|d| (range.0..=range.1).contains(d)),
            "{delays:?}"
        );
        delays.dedup();
        assert!(delays.len() > 10, "drawn, not fixed: {delays:?}");
    }

    #[test]
    fn graceful_disconnect_unregisters_and_stops() {
        let (_, mut connector) = online();
        connector.disconnect();
        assert!(matches!(
            drain(&mut connector)[..],
            [
                AgentAction::Send(Message::Unregister(_)),
                AgentAction::Close
            ]
        ));
        assert!(connector.is_finished());
    }

    #[test]
    fn a_registration_refused_counts_as_a_failed_attempt() {
        let t0 = Instant::now();
        let mut connector = connector(
            BackoffPolicy {
                strategy: Strategy::Constant,
                ..no_jitter()
            },
            t0,
        );
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        connector.handle_message(
            t0,
            Message::RegisterAck(Box::new(RegisterAck {
                instance_id: String::new(),
                reason: "no leader elected".into(),
                heartbeat_interval_ms: 0,
                refusal: Refusal::NoLeader,
                retry_after_ms: 0,
            })),
        );
        assert_eq!(connector.status().attempt, 2);
        assert_eq!(connector.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }

    fn refusal(refusal: Refusal, retry_after_ms: u64) -> Message {
        Message::RegisterAck(Box::new(RegisterAck {
            instance_id: String::new(),
            reason: String::new(),
            heartbeat_interval_ms: 0,
            refusal,
            retry_after_ms,
        }))
    }

    fn goodbye(code: CloseCode) -> Message {
        Message::Goodbye(crate::wire::Goodbye {
            code,
            reason: String::new(),
            leader: None,
        })
    }

    /// A master going away that names where to go: there, at once.
    #[test]
    fn a_goodbye_naming_a_master_sends_the_agent_there() {
        let t0 = Instant::now();
        let mut config = config(no_jitter());
        config.masters = ["master-1", "master-2", "master-3"]
            .map(String::from)
            .to_vec();
        let mut connector = Connector::new(config, ChaCha8Rng::seed_from_u64(1), t0);
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        let ack = RegisterAck {
            instance_id: "agent-1-host-1".into(),
            reason: String::new(),
            heartbeat_interval_ms: 1000,
            refusal: Refusal::None,
            retry_after_ms: 0,
        };
        connector.handle_message(t0, Message::RegisterAck(Box::new(ack)));
        drain(&mut connector);
        let goodbye = crate::wire::Goodbye {
            code: CloseCode::GoingAway,
            reason: "master shutting down".into(),
            leader: Some("master-3".into()),
        };
        connector.handle_message(t0, Message::Goodbye(goodbye));
        assert_eq!(connector.poll_timeout(), Some(t0));
        connector.handle_timeout(t0);
        assert!(drain(&mut connector).contains(&AgentAction::Connect { target: 2 }));
    }

    /// Each row of the reason table, as the agent's next wait.
    #[test]
    fn the_reason_decides_how_the_agent_comes_back() {
        // Normal close: no reconnect, ever.
        let (t0, mut connector) = online();
        connector.handle_message(t0, goodbye(CloseCode::Normal));
        assert!(connector.is_finished());
        assert_eq!(connector.status().state, StateKind::Stopped);
        assert_eq!(connector.poll_timeout(), None);

        // Going away: at once, to the next master, as a new cycle.
        let t0 = Instant::now();
        let mut two = config(no_jitter());
        two.masters = vec!["master-1".into(), "master-2".into()];
        let mut connector = Connector::new(two, ChaCha8Rng::seed_from_u64(1), t0);
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        connector.handle_message(t0, ack());
        drain(&mut connector);
        connector.handle_message(t0, goodbye(CloseCode::GoingAway));
        assert_eq!(connector.poll_timeout(), Some(t0));
        connector.handle_timeout(t0);
        assert!(drain(&mut connector).contains(&AgentAction::Connect { target: 1 }));
        assert_eq!(connector.status().attempt, 1);

        // Auth failure: the fixed re-auth delay, however often it happens.
        let t0 = Instant::now();
        let mut connector = connector_with(no_jitter(), t0);
        let mut now = t0;
        for _ in 0..6 {
            connector.handle_timeout(now);
            connector.handle_connected(now);
            connector.handle_message(now, refusal(Refusal::Unauthorized, 0));
            let next = connector.poll_timeout().unwrap();
            assert_eq!(next - now, Duration::from_secs(5));
            now = next;
        }
        assert!(
            !connector.is_finished(),
            "re-authenticating uses no retries"
        );

        // Busy with retry_after: exactly that; busy without: twice the backoff's delay.
        let t0 = Instant::now();
        let mut connector = connector_with(no_jitter(), t0);
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        connector.handle_message(t0, refusal(Refusal::Busy, 2500));
        assert_eq!(
            connector.poll_timeout(),
            Some(t0 + Duration::from_millis(2500))
        );
        let now = t0 + Duration::from_millis(2500);
        connector.handle_timeout(now);
        assert_eq!(
            drain(&mut connector).last(),
            Some(&AgentAction::Connect { target: 0 }),
            "the same master"
        );
        connector.handle_connected(now);
        connector.handle_message(now, refusal(Refusal::Busy, 0));
        // Retry 1 of the backoff is 2s; a busy master doubles it.
        assert_eq!(connector.poll_timeout(), Some(now + Duration::from_secs(4)));
    }

    /// A master that knows no leader: its `retry_after`, at the next master, however often,
    /// with no retry used and the backoff where it was.
    #[test]
    fn no_leader_waits_the_masters_word_and_leaves_the_backoff_alone() {
        let t0 = Instant::now();
        let policy = BackoffPolicy {
            max_retries: 2,
            ..no_jitter()
        };
        let mut config = config(policy);
        config.masters = ["master-1", "master-2", "master-3"]
            .map(String::from)
            .to_vec();
        let mut connector = Connector::new(config, ChaCha8Rng::seed_from_u64(1), t0);
        let mut now = t0;
        for round in 0..6 {
            connector.handle_timeout(now);
            let target = round % 3;
            assert!(drain(&mut connector).contains(&AgentAction::Connect { target }));
            connector.handle_connected(now);
            connector.handle_message(now, refusal(Refusal::NoLeader, 1500));
            let next = connector.poll_timeout().unwrap();
            assert_eq!(next - now, Duration::from_millis(1500));
            now = next;
        }
        assert!(!connector.is_finished(), "no retry used");
        // The network failing next starts the schedule from its first delay.
        connector.handle_timeout(now);
        connector.handle_connect_failed(now, DisconnectReason::Refused);
        assert_eq!(connector.poll_timeout(), Some(now + Duration::from_secs(1)));
    }

    fn connector_with(backoff: BackoffPolicy, t0: Instant) -> Connector<ChaCha8Rng> {
        Connector::new(config(backoff), ChaCha8Rng::seed_from_u64(1), t0)
    }

    #[test]
    fn busy_refusals_use_up_retries_and_auth_failures_do_not() {
        let t0 = Instant::now();
        let policy = BackoffPolicy {
            max_retries: 2,
            ..no_jitter()
        };
        let mut connector = connector_with(policy, t0);
        let mut now = t0;
        for _ in 0..3 {
            connector.handle_timeout(now);
            connector.handle_connected(now);
            connector.handle_message(now, refusal(Refusal::Busy, 100));
            match connector.poll_timeout() {
                Some(next) => now = next,
                None => break,
            }
        }
        assert_eq!(connector.status().state, StateKind::GaveUp);
    }

    #[test]
    fn a_redirect_is_followed_at_once_and_a_redirect_loop_backs_off() {
        let t0 = Instant::now();
        let mut config = config(no_jitter());
        config.masters = vec!["master-1".into(), "master-2".into()];
        let mut connector = Connector::new(config, ChaCha8Rng::seed_from_u64(1), t0);
        let redirect = |to: &str| {
            Message::Redirect(crate::wire::Redirect {
                leader: to.to_string(),
            })
        };
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        drain(&mut connector);
        connector.handle_message(t0, redirect("master-2"));
        assert_eq!(drain(&mut connector), vec![AgentAction::Close]);
        assert_eq!(connector.poll_timeout(), Some(t0), "followed at once");
        connector.handle_timeout(t0);
        assert_eq!(
            drain(&mut connector),
            vec![AgentAction::Connect { target: 1 }]
        );
        connector.handle_connected(t0);
        connector.handle_message(t0, redirect("master-1"));
        connector.handle_timeout(t0);
        connector.handle_connected(t0);
        connector.handle_message(t0, redirect("master-2"));
        // Three redirects in a row with two masters: that is a loop, so back off.
        assert_eq!(connector.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    }
}
