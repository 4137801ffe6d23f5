//! The deployable control plane: `fleet master` and `fleet agent` run the same cores and shell
//! the simulator runs, over real sockets, with their records on disk and the operators' HTTP
//! admin API on every master. Nothing here depends on the harness.

pub mod admin;
pub mod agent;
pub mod cli;
pub mod exec;
pub mod logs;
pub mod master;
pub mod metrics;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A name for this start of the process, different on every start: a master that lost its
/// records names its commands with it, so it never reuses an id an agent remembers.
pub fn boot_id() -> String {
    format!("{:x}", entropy() & 0xffff_ffff)
}

/// A generator seeded differently on every start (jitter, election timeouts).
pub fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(entropy())
}

/// A seed nobody outside the process can guess (HTTP session tokens): the operating system's
/// randomness, as std draws it for its hash maps' keys.
pub fn secret_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The wall clock's nanoseconds and the process id, mixed.
fn entropy() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let mixed = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finalizer: nearby inputs give unrelated outputs.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio_rt::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio_rt::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
