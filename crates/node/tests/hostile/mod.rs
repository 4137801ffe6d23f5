//! What the hostile-input tests share: seeded mangling of well-formed inputs, a panic counter,
//! and an agent's defaults.
#![allow(dead_code)]

use fleet_core::agent::AgentConfig;
use fleet_node::registration;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const INPUTS: usize = 100_000;
/// Connections under way at once.
pub const WORKERS: usize = 32;

/// Counts panics on any thread: a panic in a connection's task would end only that task, and
/// no test would see it.
pub fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    panics
}

/// The next of the [`INPUTS`] inputs made from `bases` (with `junk` spliced in here and
/// there), each from its own seeded generator, so the inputs are the same whichever worker
/// makes them (and none is made before it is sent: making them all first would stall the
/// runtime the agent beats on).
pub fn hostile(
    bases: &[Vec<u8>],
    junk: &[&[u8]],
    seed: u64,
    next: &AtomicUsize,
) -> Option<Vec<u8>> {
    let index = next.fetch_add(1, Ordering::Relaxed);
    if index >= INPUTS {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed << 32 | index as u64);
    Some(mangle(
        &bases[rng.gen_range(0..bases.len())],
        junk,
        &mut rng,
    ))
}

/// One hostile input made from `base`: a few of the manglings, stacked.
pub fn mangle(base: &[u8], junk: &[&[u8]], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut input = base.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        let at = rng.gen_range(0..=input.len());
        match rng.gen_range(0..8) {
            0 => input.truncate(at),
            1 if !input.is_empty() => {
                let i = rng.gen_range(0..input.len());
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            2 => {
                let junk = junk[rng.gen_range(0..junk.len())];
                input.splice(at..at, junk.iter().copied());
            }
            3 => {
                let end = rng.gen_range(at..=input.len());
                input.drain(at..end);
            }
            4 => {
                let mut noise = vec![0u8; rng.gen_range(1..64)];
                rng.fill_bytes(&mut noise);
                input.splice(at..at, noise);
            }
            // Oversized, past any limit.
            5 if rng.gen_ratio(1, 64) => input.extend(std::iter::repeat_n(b'a', 300 * 1024)),
            6 => {
                let copy = input[at..].to_vec();
                input.extend(copy);
            }
            _ => {
                let method: &[u8] =
                    [&b"PUT"[..], b"PATCH", b"OPTIONS", b"GET", b"BREW"][rng.gen_range(0..5)];
                if let Some(space) = input.iter().position(|&b| b == b' ') {
                    input.splice(..space, method.iter().copied());
                }
            }
        }
    }
    input
}

/// Everything but the names and timings: defaults.
pub fn agent_config() -> AgentConfig {
    AgentConfig {
        masters: Vec::new(),
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(3),
        backoff: Default::default(),
        register: registration("", "", 0, 0, String::new()),
        commands: Default::default(),
        reauth_delay: Duration::from_secs(1),
        bugs: Default::default(),
    }
}

pub fn io_error(error: fleet_node::codec::CodecError) -> std::io::Error {
    match error {
        fleet_node::codec::CodecError::Io(error) => error,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    }
}
