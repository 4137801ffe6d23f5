//! Time for the shell. `std::time::Instant` is what the cores take; inside madsim it reads the
//! simulated clock, and inside turmoil [`now`] reads the simulation's, so the same calls serve
//! every build. A node reads its own machine's clock ([`crate::machine`]), which a fault may
//! have jumped or made run fast or slow; its timers are aimed by that clock too.

use crate::machine::Machine;
use futures::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The current machine's reading of its clock (true time outside any machine).
pub fn now() -> Instant {
    let now = true_now();
    match Machine::current() {
        Some(machine) => machine.local(now),
        None => now,
    }
}

#[cfg(all(not(madsim), not(feature = "turmoil")))]
pub(crate) fn true_now() -> Instant {
    Instant::now()
}

/// Inside turmoil every host runs its own paused tokio clock, whose base is the wall-clock
/// moment its runtime was built (again at each restart): two hosts' instants do not compare,
/// and the lease store's expiries would not survive a restart. The simulation's elapsed time is
/// the one clock all hosts share, so `now` is a fixed origin plus that. Outside a simulation it
/// is the real clock.
#[cfg(all(not(madsim), feature = "turmoil"))]
pub(crate) fn true_now() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    match turmoil::sim_elapsed() {
        Some(elapsed) => *ORIGIN.get_or_init(Instant::now) + elapsed,
        None => Instant::now(),
    }
}

/// The simulated clock, read directly: `Instant::now()` gets the same value through madsim's
/// `clock_gettime`, at several times the cost, and the shell reads the clock on every event.
#[cfg(madsim)]
pub(crate) fn true_now() -> Instant {
    match tokio::time::TimeHandle::try_current() {
        Some(time) => time.now_instant(),
        None => Instant::now(),
    }
}

#[cfg(madsim)]
fn runtime_instant(at: Instant) -> Instant {
    at
}

#[cfg(all(not(madsim), not(feature = "turmoil")))]
fn runtime_instant(at: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at)
}

/// The host runtime's instant as far from its now as `at` is from the shared clock's (outside
/// a simulation, the real clock's).
#[cfg(all(not(madsim), feature = "turmoil"))]
fn runtime_instant(at: Instant) -> tokio::time::Instant {
    if crate::net::in_turmoil() {
        tokio::time::Instant::now() + at.saturating_duration_since(true_now())
    } else {
        tokio::time::Instant::from_std(at)
    }
}

/// Milliseconds since the Unix epoch by the same clock as [`now`]: simulated in a simulation,
/// and as far off as the machine's clock is.
pub fn unix_ms() -> u64 {
    true_unix_ms().saturating_add_signed(offset_ms())
}

/// How far the current machine's clock is ahead of true time now, in milliseconds (negative:
/// behind; 0 outside any machine). The timeline shows it beside a skewed node's events.
pub fn offset_ms() -> i64 {
    Machine::with_current(|machine| machine.offset_ms(true_now())).unwrap_or(0)
}

fn true_unix_ms() -> u64 {
    #[cfg(all(not(madsim), feature = "turmoil"))]
    if let Some(since) = turmoil::since_epoch() {
        return since.as_millis() as u64;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Sleeps until the machine's clock reads `deadline`, or forever when there is none. Unlike a
/// [`Timer`], it does not aim again if the clock changes while it sleeps.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            let now = true_now();
            let at = match Machine::current() {
                Some(machine) => machine.true_deadline(now, deadline),
                None => deadline,
            };
            tokio::time::sleep_until(runtime_instant(at)).await
        }
        None => std::future::pending().await,
    }
}

/// Waits `duration` by the machine's clock: longer in true time on a slow one.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(true_duration(duration)).await
}

/// `future`, or a timeout after `duration` by the machine's clock.
pub async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(true_duration(duration), future).await
}

/// How long `duration` on the machine's clock takes in true time, from now.
fn true_duration(duration: Duration) -> Duration {
    match Machine::current() {
        Some(machine) => {
            let now = true_now();
            machine
                .true_deadline(now, machine.local(now) + duration)
                .saturating_duration_since(now)
        }
        None => duration,
    }
}

/// A core's next deadline, armed with the runtime only when it changes.
///
/// A loop that built a new sleep on every turn registered a new timer on every turn: madsim
/// adds one per poll of a pending sleep, and each stale one wakes the task again later. This
/// timer keeps one sleep, resets it when the deadline moves, and polls it only until it has
/// registered for that deadline. Every poll must come from the same task (a `select!` in one
/// loop), since the registered waker is the one the runtime will wake.
///
/// Deadlines are in the machine's time, as [`now`] reads it: the timer fires when the
/// machine's clock reaches them, and aims again when that clock jumps or changes rate.
pub struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
    /// The runtime will wake this task at `deadline`.
    registered: bool,
    /// The machine whose clock the deadlines are in (none: true time), and the count of its
    /// clock's changes the sleep was aimed under.
    machine: Option<(Machine, u64)>,
    /// Woken when the machine's clock changes.
    clock_changed: Arc<AtomicWaker>,
}

impl Default for Timer {
    fn default() -> Self {
        let clock_changed = Arc::new(AtomicWaker::new());
        let machine = Machine::current().map(|machine| {
            machine.watch_clock(&clock_changed);
            let changes = machine.clock_changes();
            (machine, changes)
        });
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(runtime_instant(true_now()))),
            deadline: None,
            registered: false,
            machine,
            clock_changed,
        }
    }
}

impl Timer {
    /// Aims the timer at `deadline`; `None` disarms it.
    pub fn set(&mut self, deadline: Option<Instant>) {
        if deadline == self.deadline {
            return;
        }
        self.deadline = deadline;
        self.aim();
    }

    /// Aims the sleep at the true moment the machine's clock reaches the deadline.
    fn aim(&mut self) {
        self.registered = false;
        let Some(deadline) = self.deadline else {
            return;
        };
        let at = match &mut self.machine {
            Some((machine, changes)) => {
                *changes = machine.clock_changes();
                machine.true_deadline(true_now(), deadline)
            }
            None => deadline,
        };
        self.sleep.as_mut().reset(runtime_instant(at));
    }

    /// The machine's clock changed since the sleep was aimed.
    fn clock_changed(&self) -> bool {
        (self.machine.as_ref())
            .is_some_and(|(machine, changes)| machine.clock_changes() != *changes)
    }

    /// Resolves once the deadline has passed (at once if it already has); never while unset.
    pub fn expired(&mut self) -> Expired<'_> {
        Expired { timer: self }
    }
}

/// The future of [`Timer::expired`].
pub struct Expired<'a> {
    timer: &'a mut Timer,
}

impl Future for Expired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let timer = &mut *self.get_mut().timer;
        if timer.deadline.is_none() {
            return Poll::Pending;
        }
        if timer.clock_changed() {
            timer.aim();
        }
        if timer.registered {
            // Reads the runtime's clock directly: cheaper than `Instant::now()` in madsim.
            return match timer.sleep.is_elapsed() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            };
        }
        timer.registered = true;
        if timer.machine.is_some() {
            timer.clock_changed.register(cx.waker());
        }
        timer.sleep.as_mut().poll(cx)
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_timer_fires_at_its_latest_deadline_and_not_while_unset() {
        let mut timer = Timer::default();
        let start = now();
        timer.set(Some(start + Duration::from_secs(60)));
        timer.set(Some(start + Duration::from_millis(20)));
        timer.expired().await;
        let waited = now() - start;
        assert!(waited >= Duration::from_millis(20), "not early: {waited:?}");
        assert!(
            waited < Duration::from_secs(30),
            "the later deadline was replaced"
        );
        timer.set(None);
        let unset = tokio::time::timeout(Duration::from_millis(30), timer.expired()).await;
        assert!(unset.is_err(), "an unset timer never fires");
    }
}
