//! Time for the shell. `std::time::Instant` is what the cores take; inside madsim it reads the
//! simulated clock, so the same calls serve both builds.

use std::time::Instant;

pub fn now() -> Instant {
    Instant::now()
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep(deadline.saturating_duration_since(now())).await,
        None => std::future::pending().await,
    }
}
