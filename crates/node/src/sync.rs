//! Locks shared by tasks of one simulated world.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, and goes on if a panic poisoned it: a panic while holding a lock has already
/// failed the run (or the test), and the state behind it is still usable for what follows.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `tokio::select!` with its branches polled in the order written. An unbiased `select!`
/// picks its first branch at random from an RNG the OS seeds, which no simulation can replay,
/// so every select of the shell and the harness goes through this one.
#[macro_export]
macro_rules! select_in_order {
    ($($branches:tt)*) => {
        tokio::select! {
            biased;
            $($branches)*
        }
    };
}
