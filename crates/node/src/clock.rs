//! Time for the shell. `std::time::Instant` is what the cores take; inside madsim it reads the
//! simulated clock, so the same calls serve both builds.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

#[cfg(not(madsim))]
pub fn now() -> Instant {
    Instant::now()
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

#[cfg(not(madsim))]
fn runtime_instant(at: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at)
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
