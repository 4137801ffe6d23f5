//! The machine a node's process runs on, as its software sees it: a clock that may be off
//! (jumped, or running fast or slow) and a processor that may stop (a stop-the-world pause, a
//! SIGSTOP) and carry on. Neither simulator has either, so the shell builds them at its seams.
//!
//! A node's tasks run inside [`Machine::run`]: while one of its tasks is polled, the machine is
//! the thread's *current* one, so [`crate::clock::now`] reads that machine's clock and
//! [`crate::task::spawn`] runs the new task on the same machine. This is a scope, as tokio's
//! runtime context is, not shared state: it is set for one poll and put back after it. Outside
//! any machine (a real deployment, a test) the clock is the true one and nothing pauses.
//!
//! Its links have gates ([`Machine::gate`]): a link held or stalled at a gate delivers nothing
//! to this machine's sockets until it opens, and a connect over a held link waits
//! ([`crate::net`]).
//!
//! The clock maps true time to the node's: `local = at + (true - since) × rate`, re-anchored at
//! every change so a jump moves it once and a rate applies from then on. Timers are aimed in the
//! node's time ([`crate::clock::Timer`]) and re-aimed when its clock changes.

use crate::buggify::Buggify;
use crate::sync::lock;
use futures::task::AtomicWaker;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// The machine whose task this thread is polling, if any.
    static CURRENT: RefCell<Option<Machine>> = const { RefCell::new(None) };
}

/// A node's clock relative to true time, from `since` (true) on.
#[derive(Clone, Copy, Debug)]
struct Skew {
    since: Instant,
    /// The node's reading at `since`.
    at: Instant,
    rate: f64,
}

impl Skew {
    fn local(&self, now: Instant) -> Instant {
        let elapsed = now.saturating_duration_since(self.since);
        self.at + elapsed.mul_f64(self.rate)
    }
}

#[derive(Default)]
struct Inner {
    /// Set once the clock is anything but true time: until then reading it costs one load.
    skewed: AtomicBool,
    skew: Mutex<Option<Skew>>,
    /// Counts the clock's changes: a timer aimed under an older count aims again.
    clock_changes: AtomicU64,
    /// The timers to wake when the clock changes.
    timers: Mutex<Vec<Weak<AtomicWaker>>>,
    paused: AtomicBool,
    /// How many times its tasks were polled, and how often they may be (see [`PollBudget`]).
    polls: AtomicU64,
    poll_budget: Mutex<Option<PollBudget>>,
    /// Went over its poll budget: its tasks are never polled again.
    frozen: AtomicBool,
    overrun: Mutex<Option<Overrun>>,
    /// The tasks that were woken while paused, to wake again on resume.
    parked: Mutex<Vec<Waker>>,
    /// Set while any gate is closed: until then a read costs one load.
    gated: AtomicBool,
    gates: Mutex<BTreeMap<IpAddr, Gate>>,
    /// The sockets waiting at a gate, to wake when one opens.
    at_gates: Mutex<Vec<Waker>>,
    /// What this machine sent to each peer (writes and connects), for the harness to tell what
    /// a fault on a link stood in the way of.
    sent: Mutex<BTreeMap<IpAddr, Arc<AtomicU64>>>,
    /// The bytes its sockets wrote, to anyone: what a transport costs on the wire.
    bytes: Arc<AtomicU64>,
    /// Set once its fault points are on: until then a point costs one load.
    buggified: AtomicBool,
    buggify: Mutex<Option<Buggify>>,
}

/// How often a machine's tasks may be polled: `base` times, and `per_second` more for each
/// second of true time since they were first polled. A node that spins (a loop that wakes
/// itself at once, forever) goes over it and is frozen, so a livelock cannot take the process
/// running the simulation down with it; the harness reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollBudget {
    pub base: u64,
    pub per_second: u64,
    /// When its tasks were first polled.
    since: Option<Instant>,
}

impl PollBudget {
    pub fn new(base: u64, per_second: u64) -> PollBudget {
        PollBudget {
            base,
            per_second,
            since: None,
        }
    }
}

/// A machine frozen for going over its [`PollBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overrun {
    pub polls: u64,
    pub limit: u64,
    /// The true time of the freeze.
    pub at: Instant,
}

/// The budget is checked once every this many polls, so it costs next to nothing.
const POLLS_CHECKED_EVERY: u64 = 1024;

/// Why a link delivers nothing to this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Held: what the peer sends waits, and so does a connect to it, until released.
    Held,
    /// Stalled: connections open, but what the peer sends is never read until healed.
    Stalled,
}

/// Cheap to clone; every clone is the same machine.
#[derive(Clone, Default)]
pub struct Machine(Arc<Inner>);

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("skew", &*lock(&self.0.skew))
            .field("paused", &self.is_paused())
            .finish()
    }
}

impl Machine {
    /// The machine whose task is running on this thread, if any.
    pub fn current() -> Option<Machine> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Runs `future` as a task of this machine: it sees this machine's clock, spawns onto it,
    /// and is not polled while the machine is paused.
    pub fn run<F: Future>(&self, future: F) -> Running<F> {
        Running {
            machine: self.clone(),
            future,
        }
    }

    /// `f` of the machine whose task is running on this thread, if any, without cloning it.
    pub(crate) fn with_current<T>(f: impl FnOnce(&Machine) -> T) -> Option<T> {
        CURRENT.with(|current| current.borrow().as_ref().map(f))
    }

    /// Turns this machine's fault points on, drawn from `seed` (see [`crate::buggify`]).
    pub fn buggify(&self, seed: u64) {
        *lock(&self.0.buggify) = Some(Buggify::new(seed));
        self.0.buggified.store(true, Ordering::Release);
    }

    /// Turns its fault points off for good.
    pub fn unbuggify(&self) {
        self.0.buggified.store(false, Ordering::Release);
    }

    /// `f` of its fault points, when they are on.
    pub(crate) fn with_buggify<T>(&self, f: impl FnOnce(&mut Buggify) -> T) -> Option<T> {
        if !self.0.buggified.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.0.buggify).as_mut().map(f)
    }

    /// Runs `f` as this machine (its clock, its spawns), now.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _scope = Scope::enter(self.clone());
        f()
    }

    /// The node's reading of its clock when true time is `now`.
    pub fn local(&self, now: Instant) -> Instant {
        if !self.0.skewed.load(Ordering::Acquire) {
            return now;
        }
        match *lock(&self.0.skew) {
            Some(skew) => skew.local(now),
            None => now,
        }
    }

    /// The true moment (at or after `now`) at which the node's clock reads `deadline`.
    pub fn true_deadline(&self, now: Instant, deadline: Instant) -> Instant {
        if !self.0.skewed.load(Ordering::Acquire) {
            return deadline;
        }
        let Some(skew) = *lock(&self.0.skew) else {
            return deadline;
        };
        let left = deadline.saturating_duration_since(skew.local(now));
        // Rounded up a microsecond, so the node's clock has reached `deadline` by then.
        now + left.div_f64(skew.rate) + Duration::from_micros(1)
    }

    /// How far the node's clock is ahead of true time at `now`, in milliseconds (negative:
    /// behind).
    pub fn offset_ms(&self, now: Instant) -> i64 {
        let local = self.local(now);
        match local.checked_duration_since(now) {
            Some(ahead) => ahead.as_millis() as i64,
            None => -(now.duration_since(local).as_millis() as i64),
        }
    }

    /// The clock jumps by `jump_ms` (negative: back) at true time `now`, and runs at `rate`
    /// of true time from then on (`None`: as fast as before).
    pub fn adjust_clock(&self, now: Instant, jump_ms: i64, rate: Option<f64>) {
        debug_assert!(rate.is_none_or(|rate| rate > 0.0), "a clock runs forwards");
        let mut skew = lock(&self.0.skew);
        let before = skew.unwrap_or(Skew {
            since: now,
            at: now,
            rate: 1.0,
        });
        let local = before.local(now);
        let jump = Duration::from_millis(jump_ms.unsigned_abs());
        let at = if jump_ms >= 0 {
            local + jump
        } else {
            local.checked_sub(jump).unwrap_or(local)
        };
        *skew = Some(Skew {
            since: now,
            at,
            rate: rate.unwrap_or(before.rate),
        });
        drop(skew);
        self.0.skewed.store(true, Ordering::Release);
        self.0.clock_changes.fetch_add(1, Ordering::AcqRel);
        let mut timers = lock(&self.0.timers);
        timers.retain(|timer| match timer.upgrade() {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        });
    }

    /// How many times its tasks were polled so far.
    pub fn polls(&self) -> u64 {
        self.0.polls.load(Ordering::Relaxed)
    }

    /// Limits how often its tasks are polled from now on.
    pub fn limit_polls(&self, budget: PollBudget) {
        *lock(&self.0.poll_budget) = Some(budget);
    }

    /// Whether it went over its poll budget, and when.
    pub fn overrun(&self) -> Option<Overrun> {
        *lock(&self.0.overrun)
    }

    /// Counts a poll; false once the machine is over its budget, and from then on.
    fn count_poll(&self) -> bool {
        if self.0.frozen.load(Ordering::Relaxed) {
            return false;
        }
        let polls = self.0.polls.fetch_add(1, Ordering::Relaxed) + 1;
        if polls % POLLS_CHECKED_EVERY != 1 {
            return true;
        }
        let mut budget = lock(&self.0.poll_budget);
        let Some(budget) = budget.as_mut() else {
            return true;
        };
        let now = crate::clock::true_now();
        let since = *budget.since.get_or_insert(now);
        let seconds = now.saturating_duration_since(since).as_secs();
        let limit = budget.base + budget.per_second * seconds;
        if polls <= limit {
            return true;
        }
        self.0.frozen.store(true, Ordering::Relaxed);
        *lock(&self.0.overrun) = Some(Overrun {
            polls,
            limit,
            at: now,
        });
        false
    }

    /// The rate the clock runs at, of true time.
    pub fn rate(&self) -> f64 {
        lock(&self.0.skew).map_or(1.0, |skew| skew.rate)
    }

    /// How many times the clock changed: a timer aimed before the last change aims again.
    pub(crate) fn clock_changes(&self) -> u64 {
        self.0.clock_changes.load(Ordering::Acquire)
    }

    /// Wakes `timer` whenever the clock changes, for as long as it lives.
    pub(crate) fn watch_clock(&self, timer: &Arc<AtomicWaker>) {
        lock(&self.0.timers).push(Arc::downgrade(timer));
    }

    /// Stops every task of this machine until [`resume`](Self::resume). Returns false if it was
    /// paused already.
    pub fn pause(&self) -> bool {
        !self.0.paused.swap(true, Ordering::AcqRel)
    }

    /// Lets the machine's tasks run again, each woken to see what happened meanwhile. Returns
    /// false if it was not paused.
    pub fn resume(&self) -> bool {
        let was = self.0.paused.swap(false, Ordering::AcqRel);
        for waker in std::mem::take(&mut *lock(&self.0.parked)) {
            waker.wake();
        }
        was
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::Acquire)
    }

    /// Closes the link from `peer` with `gate`, or opens it (`None`). Returns whether that
    /// changed anything.
    pub fn gate(&self, peer: IpAddr, gate: Option<Gate>) -> bool {
        let mut gates = lock(&self.0.gates);
        let changed = match gate {
            Some(gate) => gates.insert(peer, gate) != Some(gate),
            None => gates.remove(&peer).is_some(),
        };
        self.0.gated.store(!gates.is_empty(), Ordering::Release);
        drop(gates);
        if changed {
            for waker in std::mem::take(&mut *lock(&self.0.at_gates)) {
                waker.wake();
            }
        }
        changed
    }

    /// Ready once what `peer` sends may be read.
    pub(crate) fn poll_read_open(&self, peer: IpAddr, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_gate(cx, |gate| gate.is_some(), peer)
    }

    /// Ready once a connect to `peer` may go.
    pub(crate) fn poll_connect_open(&self, peer: IpAddr, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_gate(cx, |gate| gate == Some(Gate::Held), peer)
    }

    /// The count of what this machine sends to `peer`: a socket adds one for its connect and
    /// one for each write.
    pub(crate) fn sent_counter(&self, peer: IpAddr) -> Arc<AtomicU64> {
        lock(&self.0.sent).entry(peer).or_default().clone()
    }

    /// The count of the bytes this machine's sockets write.
    pub(crate) fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.0.bytes.clone()
    }

    /// The bytes this machine's sockets wrote so far.
    pub fn bytes_sent(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// How many writes and connects this machine has sent towards `peer` so far.
    pub fn sent_to(&self, peer: IpAddr) -> u64 {
        let sent = lock(&self.0.sent);
        sent.get(&peer)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    fn poll_gate(
        &self,
        cx: &mut Context<'_>,
        closed: impl Fn(Option<Gate>) -> bool,
        peer: IpAddr,
    ) -> Poll<()> {
        if !self.0.gated.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let gates = lock(&self.0.gates);
        if !closed(gates.get(&peer).copied()) {
            return Poll::Ready(());
        }
        lock(&self.0.at_gates).push(cx.waker().clone());
        Poll::Pending
    }
}

/// Makes a machine current, and puts back the one before when dropped (also on a panic).
struct Scope {
    previous: Option<Machine>,
}

impl Scope {
    fn enter(machine: Machine) -> Scope {
        let previous = CURRENT.with(|current| current.replace(Some(machine)));
        Scope { previous }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Machine::run`].
    pub struct Running<F> {
        machine: Machine,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Running<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.machine.is_paused() {
            lock(&this.machine.0.parked).push(cx.waker().clone());
            // A resume between the check and the push must not be missed.
            if this.machine.is_paused() {
                return Poll::Pending;
            }
        }
        if !this.machine.count_poll() {
            // Frozen: never woken, never polled again.
            return Poll::Pending;
        }
        let _scope = Scope::enter(this.machine.clone());
        this.future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_that_spins_past_its_poll_budget_is_frozen_and_says_so() {
        let machine = Machine::default();
        machine.limit_polls(PollBudget::new(10, 0));
        let inner = Arc::new(AtomicU64::new(0));
        let counted = inner.clone();
        // A task that wakes itself at once, forever: a livelock.
        let spin = std::future::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        });
        let mut running = Box::pin(machine.run(spin));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5_000 {
            assert!(running.as_mut().poll(&mut cx).is_pending());
        }
        let overrun = machine.overrun().expect("over its budget");
        assert_eq!(
            (overrun.polls, overrun.limit),
            (POLLS_CHECKED_EVERY + 1, 10)
        );
        let ran = inner.load(Ordering::Relaxed);
        assert_eq!(ran, POLLS_CHECKED_EVERY, "not polled again once frozen");
        assert!(
            Machine::default().overrun().is_none(),
            "no budget, no overrun"
        );
    }

    #[test]
    fn a_clock_jumps_once_and_runs_at_its_rate_from_then_on() {
        let machine = Machine::default();
        let t0 = Instant::now();
        assert_eq!(machine.local(t0), t0, "true time until told otherwise");
        machine.adjust_clock(t0, 2_000, Some(2.0));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(machine.local(t1), t0 + Duration::from_secs(4));
        assert_eq!(machine.offset_ms(t1), 3_000);
        machine.adjust_clock(t1, -500, None);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(machine.local(t2), t0 + Duration::from_millis(5_500));
        assert_eq!(machine.rate(), 2.0, "a jump keeps the rate");
    }

    #[test]
    fn a_deadline_in_the_nodes_time_falls_when_its_clock_reaches_it() {
        let machine = Machine::default();
        let t0 = Instant::now();
        machine.adjust_clock(t0, 0, Some(0.5));
        let deadline = t0 + Duration::from_secs(1);
        let fires = machine.true_deadline(t0, deadline);
        assert!(fires >= t0 + Duration::from_secs(2));
        assert!(machine.local(fires) >= deadline);
        let past = machine.true_deadline(fires, t0);
        assert!(
            past <= fires + Duration::from_micros(1),
            "a past deadline is due now"
        );
    }

    #[test]
    fn pause_and_resume_say_whether_they_changed_anything() {
        let machine = Machine::default();
        assert!(!machine.resume(), "nothing to resume");
        assert!(machine.pause());
        assert!(!machine.pause(), "paused already");
        assert!(machine.resume());
    }
}
