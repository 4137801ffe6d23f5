//! Time for the shell. `std::time::Instant` is what the cores take; inside madsim it reads the
//! simulated clock, and inside turmoil [`now`] reads the simulation's, so the same calls serve
//! every build.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[cfg(all(not(madsim), not(feature = "turmoil")))]
pub fn now() -> Instant {
    Instant::now()
}

/// Inside turmoil every host runs its own paused tokio clock, whose base is the wall-clock
/// moment its runtime was built (again at each restart): two hosts' instants do not compare,
/// and the lease store's expiries would not survive a restart. The simulation's elapsed time is
/// the one clock all hosts share, so `now` is a fixed origin plus that. Outside a simulation it
/// is the real clock.
#[cfg(all(not(madsim), feature = "turmoil"))]
pub fn now() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    match turmoil::sim_elapsed() {
        Some(elapsed) => *ORIGIN.get_or_init(Instant::now) + elapsed,
        None => Instant::now(),
    }
}

/// The simulated clock, read directly: `Instant::now()` gets the same value through madsim's
/// `clock_gettime`, at several times the cost, and the shell reads the clock on every event.
#[cfg(madsim)]
pub fn now() -> Instant {
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

/// The host runtime's instant as far from its now as `at` is from the shared clock's.
#[cfg(all(not(madsim), feature = "turmoil"))]
fn runtime_instant(at: Instant) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.saturating_duration_since(now())
}

/// Milliseconds since the Unix epoch by the same clock as [`now`]: simulated in a simulation.
pub fn unix_ms() -> u64 {
    #[cfg(all(not(madsim), feature = "turmoil"))]
    if let Some(since) = turmoil::since_epoch() {
        return since.as_millis() as u64;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(runtime_instant(deadline)).await,
        None => std::future::pending().await,
    }
}

/// A core's next deadline, armed with the runtime only when it changes.
///
/// A loop that built a new sleep on every turn registered a new timer on every turn: madsim
/// adds one per poll of a pending sleep, and each stale one wakes the task again later. This
/// timer keeps one sleep, resets it when the deadline moves, and polls it only until it has
/// registered for that deadline. Every poll must come from the same task (a `select!` in one
/// loop), since the registered waker is the one the runtime will wake.
pub struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
    /// The runtime will wake this task at `deadline`.
    registered: bool,
}

impl Default for Timer {
    fn default() -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(runtime_instant(now()))),
            deadline: None,
            registered: false,
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
        self.registered = false;
        if let Some(deadline) = deadline {
            self.sleep.as_mut().reset(runtime_instant(deadline));
        }
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
        if timer.registered {
            // Reads the runtime's clock directly: cheaper than `Instant::now()` in madsim.
            return match timer.sleep.is_elapsed() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            };
        }
        timer.registered = true;
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
