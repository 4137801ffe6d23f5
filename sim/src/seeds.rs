//! Many seeds from one command: `--seeds 1..32` (inclusive) or `--seeds 1,5,9`, run side by
//! side on every core.

use fleet_node::sync::lock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// At most this many seeds in one `--seeds`.
pub const MAX_SEEDS: u64 = 1_000_000;

/// The seeds a `--seeds` flag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedList(pub Vec<u64>);

/// [`parse_seeds`] for clap.
pub fn seed_list(text: &str) -> Result<SeedList, String> {
    parse_seeds(text).map(SeedList)
}

/// Parses `A..B` (both included) or a comma-separated list.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds takes a range like 1..32 or a list like 1,5,9; got {text:?}");
    if let Some((low, high)) = text.split_once("..") {
        let low: u64 = low.trim().parse().map_err(|_| bad())?;
        let high: u64 = high.trim().parse().map_err(|_| bad())?;
        if low > high {
            return Err(format!("--seeds {text}: the range ends before it starts"));
        }
        if high - low >= MAX_SEEDS {
            return Err(format!("--seeds {text}: at most {MAX_SEEDS} seeds at once"));
        }
        return Ok((low..=high).collect());
    }
    let seeds: Vec<u64> = (text.split(','))
        .map(|seed| seed.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if seeds.is_empty() {
        return Err(bad());
    }
    Ok(seeds)
}

/// `work` on every seed, `jobs` at a time on threads; results in the order of `seeds`.
pub fn parallel<T: Send>(seeds: &[u64], jobs: usize, work: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, seeds.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(index) else { break };
                let result = work(seed);
                lock(&results).push((index, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_both_ends_and_lists_keep_their_order() {
        assert_eq!(parse_seeds("1..4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_seeds("9,2,5"), Ok(vec![9, 2, 5]));
        assert_eq!(parse_seeds("7"), Ok(vec![7]));
        for bad in ["4..1", "a..b", "", "1,,2", "0..18446744073709551615"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parallel_work_comes_back_in_seed_order() {
        let seeds: Vec<u64> = (0..50).collect();
        assert_eq!(
            parallel(&seeds, 4, |seed| seed * 2),
            (0..50).map(|s| s * 2).collect::<Vec<_>>()
        );
    }
}
