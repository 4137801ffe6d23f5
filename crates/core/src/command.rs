//! Commands: what a master asks an agent to do, and the two halves that give at-least-once
//! delivery an exactly-once effect.
//!
//! - [`Outbox`] (master): keeps every accepted command until its result arrives, hands the
//!   pending ones out again whenever the agent (re)registers, and takes each result once. The
//!   masters replicate it (see `master::ledger`), so a new leader takes over what the old one
//!   had not finished.
//! - [`Executor`] (agent): runs commands through its handlers, at most `max_concurrent` at
//!   once with the rest queued, times them out, and remembers the results of the last
//!   `remember` commands: a duplicate gets the stored result (or nothing, while the first copy
//!   still runs) and never runs twice.
//!
//! Sans-IO, like every core: both take `now` and inputs and return what to do. A handler that
//! takes time (`sleep`) is [`Work::Wait`]: the executor finishes it when [`Executor::poll`]
//! comes at or after its end, so the shell only has to wake it at [`Executor::next_deadline`].

use crate::bugs::{Bug, Bugs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// One command, as the master sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// `{master}-{n}`: unique across masters, so a new leader's ids never meet an old one's.
    pub request_id: String,
    pub name: String,
    pub args: BTreeMap<String, String>,
    pub timeout_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
    UnknownCommand,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::UnknownCommand => "unknown_command",
        }
    }
}

/// What an agent sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub request_id: String,
    pub outcome: Outcome,
    pub output: String,
    pub duration_ms: u64,
}

/// An agent's status, as its heartbeats report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    Online,
    /// A command timed out, and none has finished `ok` since.
    Degraded,
    /// Its command queue is full: a command now would be refused.
    Busy,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "online",
            NodeStatus::Degraded => "degraded",
            NodeStatus::Busy => "busy",
        }
    }
}

/// What a handler does with a command: answer at once, take time and then answer, or leave it
/// to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    Done(Outcome, String),
    /// Take this long, then finish `ok` with this output.
    Wait(Duration, String),
    /// The shell does it (see [`ExecutorConfig::external`]).
    External,
}

/// The built-in handlers, by command name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Answers `ok` with its arguments, `key=value` joined by spaces.
    Echo,
    /// Waits `ms` (simulated time in the harness), then answers `ok`.
    Sleep,
    /// Answers `error` with its `message` argument.
    Fail,
    /// Answers `ok` with the agent's status and load: `status=online running=N queued=M`.
    Status,
}

impl Handler {
    pub const NAMES: [(&'static str, Handler); 4] = [
        ("echo", Handler::Echo),
        ("sleep", Handler::Sleep),
        ("fail", Handler::Fail),
        ("status", Handler::Status),
    ];

    pub fn named(name: &str) -> Option<Handler> {
        Handler::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, handler)| *handler)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecutorConfig {
    pub max_concurrent: usize,
    /// Commands waiting for a free slot; one more is refused `error` and the agent is `busy`.
    pub queue_limit: usize,
    /// How many finished commands' results are kept to answer duplicates.
    pub remember: usize,
    /// Commands the shell runs (a deployment's own handlers: a program, a library's code)
    /// rather than a built-in: the executor says when to start one ([`Step::RunExternal`]) and
    /// takes its result back ([`Executor::complete`]), under the same slots, queue, timeout and
    /// duplicate suppression.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub external: BTreeSet<String>,
    /// Bugs planted for the harness to find (none outside a `bugs` build).
    #[serde(skip)]
    pub bugs: Bugs,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            max_concurrent: 4,
            queue_limit: 64,
            remember: 1024,
            external: BTreeSet::new(),
            bugs: Bugs::NONE,
        }
    }
}

/// What the agent's shell does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A command starts (its result follows, at once or from a later [`Executor::poll`]).
    Started { request_id: String, name: String },
    /// Send this result to the master.
    Reply(CommandResult),
    /// A copy of a command already seen: `stored` is its result to send again, or `None`
    /// while the first copy still runs (its result will follow).
    Duplicate {
        request_id: String,
        stored: Option<CommandResult>,
    },
    /// Start this external command (see [`ExecutorConfig::external`]); hand its outcome to
    /// [`Executor::complete`]. Past its timeout the executor answers `timeout` itself, and
    /// what comes later is ignored: stop the work then.
    RunExternal(Command),
}

struct Running {
    started: Instant,
    /// When its work is done; `None` for external work, done when the shell says.
    done_at: Option<Instant>,
    /// When it times out, if its work is not done by then.
    deadline: Instant,
    output: String,
}

impl Running {
    /// When it ends: its work done, or its timeout.
    fn due(&self) -> Instant {
        self.done_at
            .map_or(self.deadline, |done| done.min(self.deadline))
    }
}

/// The agent's side: handlers, a concurrency limit, a queue, timeouts and duplicate
/// suppression.
pub struct Executor {
    config: ExecutorConfig,
    running: BTreeMap<String, Running>,
    queued: VecDeque<(Command, Instant)>,
    /// The last `remember` results, oldest first, and the same by id.
    finished: VecDeque<String>,
    results: BTreeMap<String, CommandResult>,
    /// The last command to end timed out (and none has finished `ok` since).
    timed_out: bool,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Executor {
        Executor {
            config,
            running: BTreeMap::new(),
            queued: VecDeque::new(),
            finished: VecDeque::new(),
            results: BTreeMap::new(),
            timed_out: false,
        }
    }

    /// Busy while the queue is full; degraded after a command timed out, until one finishes
    /// `ok`; online otherwise. The agent reports it in its heartbeats.
    pub fn status(&self) -> NodeStatus {
        if self.is_busy() {
            NodeStatus::Busy
        } else if self.timed_out {
            NodeStatus::Degraded
        } else {
            NodeStatus::Online
        }
    }

    /// Nothing runs, so [`Executor::poll`] has nothing to do and there is no deadline: the
    /// check an agent makes on every turn, so it costs one comparison.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    /// Full: a command now would be refused. The agent reports `busy`.
    pub fn is_busy(&self) -> bool {
        self.queued.len() >= self.config.queue_limit
    }

    pub fn load(&self) -> (usize, usize) {
        (self.running.len(), self.queued.len())
    }

    fn seen(&self, request_id: &str) -> bool {
        self.running.contains_key(request_id)
            || self
                .queued
                .iter()
                .any(|(queued, _)| queued.request_id == request_id)
    }

    /// A command arrives (first copy or not).
    pub fn receive(&mut self, now: Instant, command: Command) -> Vec<Step> {
        if let Some(stored) = self.results.get(&command.request_id) {
            let request_id = command.request_id;
            let stored = Some(stored.clone());
            return vec![Step::Duplicate { request_id, stored }];
        }
        let once = !self.config.bugs.has(Bug::CommandsRunDuplicate);
        if self.seen(&command.request_id) && once {
            let request_id = command.request_id;
            return vec![Step::Duplicate {
                request_id,
                stored: None,
            }];
        }
        if self.is_busy() {
            let (running, queued) = self.load();
            let output = format!("busy: {running} running, {queued} queued");
            return vec![self.finish(&command.request_id, now, now, Outcome::Error, output)];
        }
        self.queued.push_back((command, now));
        self.start_ready(now)
    }

    /// Starts queued commands while a slot is free.
    fn start_ready(&mut self, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        while self.running.len() < self.config.max_concurrent {
            let Some((command, _)) = self.queued.pop_front() else {
                break;
            };
            let external = self.config.external.contains(&command.name);
            let work = match Handler::named(&command.name) {
                _ if external => Work::External,
                None => Work::Done(
                    Outcome::UnknownCommand,
                    format!("no handler {:?}", command.name),
                ),
                Some(handler) => self.work(handler, &command),
            };
            let deadline = now + Duration::from_millis(command.timeout_ms);
            let id = command.request_id.clone();
            steps.push(Step::Started {
                request_id: id.clone(),
                name: command.name.clone(),
            });
            let (done_at, output) = match work {
                Work::Done(outcome, output) => {
                    steps.push(self.finish(&id, now, now, outcome, output));
                    continue;
                }
                Work::Wait(wait, output) => (Some(now + wait), output),
                Work::External => {
                    steps.push(Step::RunExternal(command));
                    (None, String::new())
                }
            };
            let running = Running {
                started: now,
                done_at,
                deadline,
                output,
            };
            self.running.insert(id, running);
        }
        steps
    }

    /// The shell's external command `request_id` ended with `outcome` and `output`; nothing if
    /// it had already timed out (or is no external command running).
    pub fn complete(
        &mut self,
        now: Instant,
        request_id: &str,
        outcome: Outcome,
        output: String,
    ) -> Vec<Step> {
        let external = (self.running.get(request_id)).is_some_and(|r| r.done_at.is_none());
        if !external {
            return Vec::new();
        }
        let running = self.running.remove(request_id).expect("checked above");
        let mut steps = vec![self.finish(request_id, running.started, now, outcome, output)];
        steps.extend(self.start_ready(now));
        steps
    }

    fn work(&self, handler: Handler, command: &Command) -> Work {
        let args = &command.args;
        match handler {
            Handler::Echo => {
                let words: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Work::Done(Outcome::Ok, words.join(" "))
            }
            Handler::Fail => {
                let message = args
                    .get("message")
                    .cloned()
                    .unwrap_or_else(|| "failed".into());
                Work::Done(Outcome::Error, message)
            }
            Handler::Status => {
                let (running, queued) = self.load();
                let status = self.status().as_str();
                let output = format!("status={status} running={running} queued={queued}");
                Work::Done(Outcome::Ok, output)
            }
            Handler::Sleep => match args.get("ms").map(|ms| ms.parse::<u64>()) {
                Some(Ok(ms)) => Work::Wait(Duration::from_millis(ms), format!("slept {ms}ms")),
                _ => Work::Done(Outcome::Error, "sleep takes ms, a whole number".into()),
            },
        }
    }

    /// Records a result, keeps it for duplicates, and returns the reply.
    fn finish(
        &mut self,
        request_id: &str,
        started: Instant,
        now: Instant,
        outcome: Outcome,
        output: String,
    ) -> Step {
        match outcome {
            Outcome::Timeout => self.timed_out = true,
            Outcome::Ok => self.timed_out = false,
            Outcome::Error | Outcome::UnknownCommand => {}
        }
        let result = CommandResult {
            request_id: request_id.to_string(),
            outcome,
            output,
            duration_ms: now.duration_since(started).as_millis() as u64,
        };
        self.finished.push_back(request_id.to_string());
        self.results.insert(request_id.to_string(), result.clone());
        while self.finished.len() > self.config.remember {
            if let Some(oldest) = self.finished.pop_front() {
                self.results.remove(&oldest);
            }
        }
        Step::Reply(result)
    }

    /// Finishes what is due: work done by now finishes `ok`, work still going past its
    /// timeout finishes `timeout`; freed slots start queued commands.
    pub fn poll(&mut self, now: Instant) -> Vec<Step> {
        let due: Vec<String> = (self.running.iter())
            .filter(|(_, running)| running.due() <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut steps = Vec::new();
        for id in due {
            let running = self.running.remove(&id).expect("listed above");
            let end = running.due();
            let (outcome, output) = if running.done_at.is_some_and(|done| done <= running.deadline)
            {
                (Outcome::Ok, running.output)
            } else {
                let limit = (running.deadline - running.started).as_millis();
                (Outcome::Timeout, format!("no result within {limit}ms"))
            };
            steps.push(self.finish(&id, running.started, end, outcome, output));
        }
        if !steps.is_empty() {
            steps.extend(self.start_ready(now));
        }
        steps
    }

    /// When [`Executor::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.values().map(Running::due).min()
    }
}

/// A command the master accepted and has no result for yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub agent: String,
    pub command: Command,
    /// Its place in the order commands were accepted, across the masters that held it: a
    /// successor keeps its predecessor's order.
    pub order: u64,
    /// The index of the replicated state it first appeared in: it counts as accepted once
    /// that index is committed.
    #[serde(default)]
    pub index: u64,
    /// The client's name for this submission: the same key submitted again (a client that
    /// did not hear whether a leader accepted it) finds this command instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What a result meant to the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// The first result for a pending command, from `agent`.
    First { agent: String },
    /// A result the master already had (a duplicate reply).
    Again,
    /// A result for no command this master accepted.
    Unknown,
}

/// The master's side: pending commands by id, handed out again on every registration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outbox {
    /// The prefix of the ids this master gives: its own, never replicated.
    #[serde(skip)]
    master: String,
    /// The number in the next request id, counted across the masters that held the outbox.
    next: u64,
    /// The next command's place in the order of acceptance.
    next_order: u64,
    pending: BTreeMap<String, Pending>,
    /// Ids whose result arrived, oldest first, bounded like the agent's memory.
    done: VecDeque<String>,
    /// The keys of the commands in `done` that had one, by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    done_keys: BTreeMap<String, String>,
    /// About how many bytes the pending commands take ([`Pending::size`]), kept under
    /// [`OUTBOX_BUDGET`] so a handover always fits a frame between masters.
    #[serde(skip)]
    pending_bytes: usize,
}

/// Equal when they hold the same: the prefix is each master's own, and the byte count is
/// derived from what they hold.
impl PartialEq for Outbox {
    fn eq(&self, other: &Outbox) -> bool {
        (self.next, self.next_order) == (other.next, other.next_order)
            && (self.pending == other.pending && self.done == other.done)
            && self.done_keys == other.done_keys
    }
}

impl Eq for Outbox {}

/// How many bytes of pending commands a master holds at most; past it, it refuses new ones.
/// A handover (every pending command) must fit a 4 MiB frame between masters.
pub const OUTBOX_BUDGET: usize = 2 << 20;

impl Pending {
    /// About how many bytes it takes on the wire: its strings plus a fixed allowance.
    pub fn size(&self) -> usize {
        let command = &self.command;
        let args: usize = (command.args.iter())
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum();
        self.agent.len() + command.request_id.len() + command.name.len() + args + 64
    }
}

/// How many completed ids the master keeps to recognise duplicate results.
const DONE_KEPT: usize = 4096;

impl Outbox {
    pub fn new(master: &str) -> Outbox {
        Outbox {
            master: master.to_string(),
            ..Outbox::default()
        }
    }

    /// Accepts a command for `agent` and returns it with its id; the caller keeps the outbox
    /// on disk before it sends the command.
    pub fn accept(
        &mut self,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Command {
        self.accept_at(agent, name, args, timeout, 0, None)
    }

    /// [`accept`](Self::accept), first held in the replicated state at `index`, under the
    /// client's `key` if it gave one.
    pub fn accept_at(
        &mut self,
        agent: &str,
        name: &str,
        args: BTreeMap<String, String>,
        timeout: Duration,
        index: u64,
        key: Option<String>,
    ) -> Command {
        self.next += 1;
        let command = Command {
            request_id: format!("{}-{}", self.master, self.next),
            name: name.to_string(),
            args,
            timeout_ms: timeout.as_millis() as u64,
        };
        let pending = Pending {
            agent: agent.to_string(),
            command: command.clone(),
            order: self.next_order,
            index,
            key,
        };
        self.next_order += 1;
        self.pending_bytes += pending.size();
        self.pending.insert(command.request_id.clone(), pending);
        command
    }

    /// Every pending command for `agent`, oldest first: sent again each time it registers.
    pub fn for_agent(&self, agent: &str) -> Vec<&Pending> {
        let mut commands: Vec<&Pending> = (self.pending.values())
            .filter(|pending| pending.agent == agent)
            .collect();
        commands.sort_by_key(|pending| pending.order);
        commands
    }

    /// A result arrives.
    pub fn receive(&mut self, result: &CommandResult) -> Received {
        if let Some(pending) = self.pending.remove(&result.request_id) {
            self.pending_bytes -= pending.size();
            self.remember_done(&result.request_id, pending.key);
            return Received::First {
                agent: pending.agent,
            };
        }
        if self.done.contains(&result.request_id) {
            Received::Again
        } else {
            Received::Unknown
        }
    }

    /// Withdraws a command just accepted (one that could never be sent).
    pub fn withdraw(&mut self, request_id: &str) {
        if let Some(pending) = self.pending.remove(request_id) {
            self.pending_bytes -= pending.size();
        }
    }

    /// About how many bytes the pending commands take.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Counts [`pending_bytes`](Self::pending_bytes) afresh (after reading an outbox back).
    pub fn recount(&mut self) {
        self.pending_bytes = self.pending.values().map(Pending::size).sum();
    }

    /// Every pending command, by request id.
    pub fn pending_commands(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether this outbox holds `request_id`, pending or answered.
    pub fn knows(&self, request_id: &str) -> bool {
        self.pending.contains_key(request_id) || self.done.iter().any(|id| id == request_id)
    }

    fn remember_done(&mut self, request_id: &str, key: Option<String>) {
        self.done.push_back(request_id.to_string());
        if let Some(key) = key {
            self.done_keys.insert(key, request_id.to_string());
        }
        if self.done.len() > DONE_KEPT {
            if let Some(oldest) = self.done.pop_front() {
                self.done_keys.retain(|_, id| *id != oldest);
            }
        }
    }

    /// The id of the command submitted under `key`, pending or answered, if this outbox
    /// holds one.
    pub fn find_key(&self, key: &str) -> Option<&str> {
        let pending = (self.pending.values())
            .find(|pending| pending.key.as_deref() == Some(key))
            .map(|pending| pending.command.request_id.as_str());
        pending.or_else(|| self.done_keys.get(key).map(String::as_str))
    }

    /// The pending command `request_id`, if it is one.
    pub fn get(&self, request_id: &str) -> Option<&Pending> {
        self.pending.get(request_id)
    }

    /// Becomes a copy of `other`, keeping this one's prefix for the ids it gives.
    pub fn replace_with(&mut self, other: Outbox) {
        let master = std::mem::take(&mut self.master);
        *self = other;
        self.master = master;
        self.recount();
    }
}

#[cfg(test)]
mod tests;
