//! How the shell starts tasks, picked by build like [`crate::net`]. A task spawned by a task of
//! a [`Machine`] runs on that machine too: its clock, and its pauses.
//!
//! Under turmoil each host is a tokio runtime that turmoil drops to crash the host, and tokio
//! drops a runtime's tasks in an order set by their global task ids: one run in a process that
//! ran others before drops them in another order, and the goodbyes they send draw the
//! network's random latencies in that order. The host's `LocalSet` drops its tasks in the
//! order they were spawned, so there the shell spawns onto it.

use crate::machine::Machine;
use std::future::Future;
use tokio::task::JoinHandle;

/// Spawns `future` on the current machine, if there is one.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Machine::current() {
        Some(machine) => spawn_task(machine.run(future)),
        None => spawn_task(future),
    }
}

#[cfg(any(madsim, not(feature = "turmoil")))]
fn spawn_task<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

#[cfg(all(not(madsim), feature = "turmoil"))]
fn spawn_task<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if crate::net::in_turmoil() {
        tokio::task::spawn_local(future)
    } else {
        tokio::spawn(future)
    }
}
