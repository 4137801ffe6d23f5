//! Many runs in one process keep memory flat: the runner frees every task a run leaves pending
//! (madsim's runtime alone would keep them, about 1 MB a run here). Its own test binary, so no
//! other test's allocations blur the reading.
#![cfg(all(madsim, target_os = "linux"))]

fn resident_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / 1e6
}

#[test]
fn forty_runs_in_one_process_keep_memory_flat() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/raft-leader-crash.toml"
    );
    let scenario = sim::load(std::path::Path::new(path)).unwrap().scenario;
    for seed in 0..10 {
        sim::run::run(&scenario, seed);
    }
    let before = resident_mb();
    for seed in 10..50 {
        sim::run::run(&scenario, seed);
    }
    let grown = resident_mb() - before;
    assert!(grown < 8.0, "40 runs grew the process by {grown:.1} MB");
}
